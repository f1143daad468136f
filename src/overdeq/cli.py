"""Command-line interface: overdeq <command> [flags].

Every knob is one flag; bad values fail before any computation with a message that names the
flag, the value and what is allowed (exit status 2). Results go to --out.

Start-up is kept light: only the command named on the command line has its flags built (and
their dependencies, torch among them, imported); ``overdeq --help`` and ``overdeq --version``
import neither torch nor numpy.
"""

from __future__ import annotations

import argparse
import importlib
import inspect
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from . import version
from .argtypes import HelpFormatter, add_threads, nonnegative_int, positive_float, positive_int

__all__ = ["main", "build_parser", "COMMANDS"]

DESCRIPTION = (
    "Over-parameterised deep equilibrium models (Ling et al., AISTATS 2023): train them, run "
    "the random-DEQ experiments, prepare data, aggregate and check results. Every knob is one "
    "flag; a bad value fails before any computation, naming the flag (exit status 2)."
)

EPILOG = """\
examples:
  overdeq train --data identity --n 20 --width 500 --steps 200 --out runs/demo
  overdeq train --mode legacy --data digits --n 100 --width 2000 --out runs/legacy
  overdeq data prepare --data mnist --n 1000 --data-seed 0 --out data/mnist1000.npz
  overdeq random-deq e1 --out e1.csv --summary e1_summary.csv
  overdeq verify --show results/quick/verify.json

'overdeq COMMAND --help' lists a command's flags, each with its default.
"""

TRAIN_EPILOG = """\
examples:
  # the paper's setting on 20 rows of the identity; rerunning it resumes or does nothing
  overdeq train --data identity --n 20 --width 500 --steps 200 --out runs/demo
  # the released code's quirks all at once, then one of them undone
  overdeq train --mode legacy --n 20 --width 500 --out runs/legacy
  overdeq train --mode legacy --gradient implicit --n 20 --width 500 --out runs/legacy-exact
  # a prepared data file (overdeq data prepare), on a free GPU, labelled in summary.json
  overdeq train --data-file data/mnist1000.npz --n 1000 --width 19000 --device cuda:auto \\
      --tag setting=paper --out runs/mnist

Knob flags not given keep the mode's value: the dataclass default (paper mode) or the
released code's (legacy mode); each flag's help shows both where they differ.
"""


# ---------------------------------------------------------------------------------------
# train: every knob's default comes from the run configuration make_run_config builds


def _knob_value(run: Any, knob: str) -> Any:
    """The value of make_run_config's keyword ``knob`` in the run configuration ``run``."""
    from .config import MODEL_KNOBS, TRAIN_KNOBS

    if knob in ("mode", "allow_expansive"):
        return getattr(run, knob)
    if knob in ("seed", "data_seed"):
        return run.seeds[knob]
    if knob in MODEL_KNOBS:
        return getattr(run.model, knob)
    if knob in TRAIN_KNOBS:
        return getattr(run.train, knob)
    solvers = {"forward": run.train.forward, "backward": run.train.backward}
    which, _, rest = knob.partition("_")
    if which in solvers and rest:  # forward_tol, backward_max_iter, ...
        solvers, knob = {which: solvers[which]}, rest
    field = "name" if knob == "solver" else knob
    values = {w: getattr(cfg, field) for w, cfg in solvers.items()}
    if len(set(values.values())) == 1:
        return next(iter(values.values()))
    return ", ".join(f"{v} ({w})" for w, v in values.items())


class _KnobDefaults:
    """Each knob's value in the run configuration of each mode when no flag is given."""

    def __init__(self) -> None:
        from .config import MODES, make_run_config
        from .data import DataSpec

        self.mode = inspect.signature(make_run_config).parameters["mode"].default
        data = DataSpec("identity", n=1)
        self.runs = {m: make_run_config(data=data, width=1, mode=m) for m in MODES}

    def help(self, knob: str, what: str) -> str:
        """``what`` followed by "(default: X)" and, where a mode differs, its value."""
        from .argtypes import show_default

        base = _knob_value(self.runs[self.mode], knob)
        text = f"{what} (default: {show_default(base)}"
        if knob != "mode":
            for mode, run in self.runs.items():
                value = _knob_value(run, knob)
                if mode != self.mode and value != base:
                    text += f"; {mode} mode: {show_default(value)}"
        return text + ")"


_INIT_STDS = (("sigma_w", "W"), ("sigma_u", "U"), ("sigma_a", "a"))


def _add_knob(group, name: str, kind, help: str) -> None:
    """The flag ``--<knob>`` (dashes for underscores), default None: a flag not given leaves
    the knob to its owner. ``kind``: a parser factory taking the flag's name
    (``positive_int``, ...), ``int`` or ``str``, a tuple of choices, or ``bool`` for a
    ``--x/--no-x`` switch."""
    flag = "--" + name.replace("_", "-")
    if kind is bool:
        how = {"action": argparse.BooleanOptionalAction}
    elif isinstance(kind, (tuple, list, dict)):
        how = {"choices": list(kind)}
    elif kind in (int, str):
        how = {"type": kind}
    else:
        how = {"type": kind(flag)}
    group.add_argument(flag, default=None, help=help, **how)


def _add_train_args(p: argparse.ArgumentParser) -> None:
    """The flags of ``overdeq train``. A knob's flag is ``--<knob>`` (dashes for underscores)
    with the default None: a flag not given leaves the knob to the mode preset and to the
    dataclass that owns its default (make_run_config); its help shows that default."""
    from .config import GRADIENTS, LOSSES, MODES, PRECISIONS
    from .data import DATASETS, DataSpec
    from .data.cli import add_selection_args
    from .devices import claim_gpu
    from .solvers import SOLVERS

    knob = _KnobDefaults().help

    g = p.add_argument_group("data")
    g.add_argument(
        "--data",
        default=None,
        choices=list(DATASETS),
        help="data set (identity: the rows of the identity matrix, as released) "
        "(default: identity)",
    )
    g.add_argument(
        "--data-file",
        type=Path,
        default=None,
        help="a prepared .npz (from 'overdeq data prepare'), in place of --data and its "
        "options (default: none, --data is loaded)",
    )
    g.add_argument("--n", type=positive_int("--n"), default=100, help="number of samples")
    add_selection_args(g)
    g.add_argument(
        "--data-root",
        default=None,
        help=f"folder holding raw/ downloads (default: {DataSpec.root})",
    )
    groups = {
        "data": g,
        "model": p.add_argument_group("model"),
        "mode": p.add_argument_group("mode and the released code's quirks (each flag flips one)"),
        "optimisation": p.add_argument_group("optimisation"),
        "monitoring": p.add_argument_group("monitoring, output, hardware"),
    }
    groups["model"].add_argument(
        "--width", type=positive_int("--width"), default=1000, help="width m"
    )
    groups["lr"] = groups["optimisation"].add_mutually_exclusive_group()
    # (group, knob, kind, what): kind is a parser factory taking the flag (positive_int, ...),
    # int or str, a tuple of choices, or bool for a --x/--no-x switch
    knobs = [
        ("data", "data_seed", int, "seed of inputs and labels"),
        *(("model", name, positive_float, f"{w} ~ N(0, {name}^2)") for name, w in _INIT_STDS),
        ("model", "allow_expansive", bool, "paper mode: run even if 2*sigma_w >= 1 (no "
         "contraction)"),
        ("model", "seed", int, "seed of W, U, a and the biases"),
        ("mode", "mode", MODES, "paper: the paper's model and training; legacy: the released "
         "code's"),
        ("mode", "biases", bool, "nn.Linear biases on W, U and the readout"),
        ("mode", "width_scale", positive_int, "use 1/sqrt(WIDTH_SCALE) instead of "
         "1/sqrt(width), the released bug"),
        ("mode", "loss", LOSSES, "half_sse: 1/2 sum of squares (paper); sse: sum of squares "
         "(released)"),
        ("mode", "gradient", GRADIENTS, "implicit: the exact implicit gradient; released: the "
         "authors' hook"),
        ("mode", "legacy_readouts", bool, "also log the released code's unordered-eig readouts"),
        ("lr", "lr", positive_float, "fixed step size; without it, calibrated from --lr-scale"),
        ("lr", "lr_scale", positive_float, "calibrated step = LR_SCALE / lambda_max(Theta_0)"),
        ("optimisation", "steps", nonnegative_int, "gradient-descent steps"),
        ("optimisation", "solver", SOLVERS, "fixed-point solver, forward and adjoint"),
        ("optimisation", "tol", positive_float, "solver tolerance, forward and adjoint"),
        ("optimisation", "max_iter", positive_int, "solver iteration cap, forward and adjoint"),
        ("optimisation", "warm_start", bool, "start each solve from the last step's solution"),
        ("optimisation", "patience", positive_int, "consecutive steps with an unconverged solve "
         "before 'diverged'"),
        ("optimisation", "gradient_error", positive_float, "paper mode: solve the adjoint only "
         "as tightly as a certified relative gradient error <= this needs (< 0.236 keeps "
         "the linear rate; summary.json: gradient_error)"),
        ("optimisation", "floor_stop", bool, "stop once the loss reaches the round-off floor of "
         "the precision times the initial loss (summary.json: stopped_at_floor)"),
        ("monitoring", "log_every", positive_int, "log every k-th step"),
        ("monitoring", "audit_every", nonnegative_int, "exact ||W||_2 every k-th log (0: first "
         "and last)"),
        ("monitoring", "readout_every", positive_int, "--legacy-readouts at every k-th log (and "
         "first, last)"),
        ("monitoring", "power_iters", positive_int, "power iterations per logged ||W||_2"),
        ("monitoring", "checkpoint_every", positive_int, "checkpoint every k-th step"),
        ("monitoring", "precision", PRECISIONS, "parameters' dtype and matmul precision"),
        ("monitoring", "device", str, "cpu, cuda, cuda:N, or cuda:auto (claim a GPU no other "
         "overdeq process holds; see overdeq.devices)"),
    ]  # fmt: skip
    for group, name, kind, what in knobs:
        _add_knob(groups[group], name, kind, knob(name, what))
    g = groups["monitoring"]
    g.add_argument(
        "--gpu-wait",
        type=positive_float("--gpu-wait"),
        default=None,
        help="cuda:auto: seconds to wait for a free GPU before giving up (default: "
        f"{inspect.signature(claim_gpu).parameters['timeout'].default:g})",
    )
    g.add_argument(
        "--memory-budget-gb",
        type=positive_float("--memory-budget-gb"),
        default=None,
        help="refuse a run whose estimated memory exceeds this many GB (10^9 bytes) "
        "(default: what the device has free)",
    )
    add_threads(g)
    g.add_argument("--out", type=Path, required=True, help="run directory")
    g.add_argument(
        "--overwrite",
        action="store_true",
        help="start over where --out holds a run of another configuration or a damaged "
        "checkpoint (its run files are removed first); never takes over a folder in use",
    )
    g.add_argument(
        "--quiet",
        action="store_true",
        help="no progress output (a bar on a terminal; in a log, a line per tenth of the run "
        "and at least one a minute)",
    )
    g.add_argument(
        "--tag",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="label stored in summary.json (e.g. setting=calibrated; not hashed); repeatable",
    )


def _add_train(p: argparse.ArgumentParser) -> None:
    p.description = (
        "Full-batch gradient descent on a DEQ. Writes history.csv (one row per logged step), "
        "summary.json (status, headline numbers, provenance), spectrum.npz and checkpoint.pt "
        "to --out. Rerunning the same configuration into the same --out resumes from the "
        "checkpoint, or does nothing when the run is finished."
    )
    p.epilog = TRAIN_EPILOG
    _add_train_args(p)
    p.set_defaults(func=_cmd_train)


def _add_aggregate(p: argparse.ArgumentParser) -> None:
    p.description = "Collect training run directories into tidy CSV tables."
    p.add_argument("runs", nargs="+", type=Path, help="run directories (or their summary.json)")
    p.add_argument("--out-runs", type=Path, required=True, help="one row per run")
    p.add_argument("--out-history", type=Path, required=True, help="one row per logged step")
    p.set_defaults(func=_cmd_aggregate)


def _add_gradient_error(p: argparse.ArgumentParser) -> None:
    from .ablations import TOLS, gradient_error_rows

    p.description = (
        "E7: the error of the released solver tolerance in the gradient at initialisation, "
        "one CSV row per tolerance."
    )
    p.add_argument("--data-file", type=Path, required=True, help="prepared data (.npz)")
    p.add_argument("--width", type=positive_int("--width"), required=True, help="width m")
    p.add_argument(
        "--seed",
        type=int,
        default=inspect.signature(gradient_error_rows).parameters["seed"].default,
        help="seed of W, U, a and the biases",
    )
    p.add_argument(
        "--tols",
        type=positive_float("--tols"),
        nargs="+",
        default=list(TOLS),
        help="solver tolerances to compare",
    )
    add_threads(p)
    p.add_argument("--out", type=Path, required=True, help="CSV to write")
    p.set_defaults(func=_cmd_gradient_error)


def _add_verify(p: argparse.ArgumentParser) -> None:
    p.description = (
        "Check the paper's claims against the results and print one PASS/FAIL line per check "
        "and a verdict per claim; or, with --show, print the table of an existing verify.json."
    )
    needed = "(default: none; needed unless --show)"
    p.add_argument(
        "--claims",
        type=Path,
        help="the claims as JSON (the workflow writes results/<tier>/claims.json from "
        f"config/claims.yaml) {needed}",
    )
    p.add_argument("--results", type=Path, help=f"results/<tier> folder to check {needed}")
    p.add_argument("--tier", help=f"tier name (thresholds may differ per tier) {needed}")
    p.add_argument("--out", type=Path, help="verify.json to write (default: none, print only)")
    p.add_argument(
        "--show", type=Path, help="print the table of an existing verify.json (default: none)"
    )
    p.add_argument("--strict", action="store_true", help="exit 1 if any claim fails")
    p.set_defaults(func=_cmd_verify)


def _add_latex_values(p: argparse.ArgumentParser) -> None:
    p.description = "Merge the scripts' value files (JSON) into one file of LaTeX macros."
    p.add_argument("files", nargs="+", type=Path, help="JSON files of macro name -> LaTeX text")
    p.add_argument("--tier", required=True, help="tier name, available as \\tier")
    p.add_argument("--out", type=Path, required=True, help="values.tex to write")
    p.set_defaults(func=_cmd_latex_values)


# name -> (one-line help, what adds the command's flags and sets ``func``: a function here
# or "module:function" elsewhere). Only the command being run is built (see main).
COMMANDS: dict[str, tuple[str, Callable[[argparse.ArgumentParser], None] | str]] = {
    "train": ("full-batch GD on a DEQ; writes history.csv, summary.json", _add_train),
    "aggregate": ("collect run directories into tidy CSV tables", _add_aggregate),
    "gradient-error": (
        "E7: gradient error of the released solver tolerance at init",
        _add_gradient_error,
    ),
    "verify": ("check the paper's claims against the results", _add_verify),
    "latex-values": ("merge the scripts' value files into LaTeX macros", _add_latex_values),
    "data": ("fetch/verify raw data, or prepare a data set (.npz)", "overdeq.data.cli:configure"),
    "random-deq": (
        "random-DEQ experiments E1, E2, E3, E10 (one job)",
        "overdeq.experiments_cli:configure",
    ),
    "plan": (
        "predicted run time of a tier, here and on an H100 (estimate)",
        "overdeq.plan_cli:configure",
    ),
}


def _configurer(name: str) -> Callable[[argparse.ArgumentParser], None]:
    target = COMMANDS[name][1]
    if callable(target):
        return target
    module, _, attr = target.partition(":")
    return getattr(importlib.import_module(module), attr)


def build_parser(commands: tuple[str, ...] | None = None) -> argparse.ArgumentParser:
    """The ``overdeq`` parser with the flags of ``commands`` (None: of every command).

    Commands not built are still listed (name and help), so the top-level help and the
    "invalid choice" message are the same either way.
    """
    parser = argparse.ArgumentParser(
        prog="overdeq", description=DESCRIPTION, epilog=EPILOG, formatter_class=HelpFormatter
    )
    parser.add_argument(
        "--version", action="version", version=f"overdeq {version()}", help="print the version"
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (text, _) in COMMANDS.items():
        p = sub.add_parser(name, help=text, description=text, formatter_class=HelpFormatter)
        if commands is None or name in commands:
            _configurer(name)(p)
    return parser


def _command_named(argv: list[str]) -> str | None:
    """The command in ``argv``: the first word that is not an option (the top-level options,
    --help and --version, take no value)."""
    return next((a for a in argv if not a.startswith("-")), None)


def _run_options(args: argparse.Namespace) -> dict[str, Any]:
    """The make_run_config keywords of the flags given (a flag's dest is the knob's name)."""
    from .config import RUN_OPTIONS

    return {k: getattr(args, k) for k in RUN_OPTIONS if getattr(args, k, None) is not None}


def _given(args: argparse.Namespace) -> dict[str, Any]:
    """The train flags given on the command line that ``useless_options`` asks about."""
    from .data import DataSpec

    given = _run_options(args)
    for name in ("data", "data_root", "gpu_wait", "d"):
        if getattr(args, name) is not None:
            given[name] = getattr(args, name)
    if list(args.classes) != list(DataSpec.classes):
        given["classes"] = args.classes
    if args.labels != DataSpec.labels:
        given["labels"] = args.labels
    return given


def _cmd_train(args: argparse.Namespace) -> int:
    import torch

    from . import preflight
    from .config import ConfigError, make_run_config
    from .data import DATASETS, Dataset, DataSpec, load_dataset
    from .devices import resolve_device
    from .train import check_device, train

    classes, labels = tuple(args.classes), args.labels
    data = args.data or "identity"
    if args.data_file is not None:
        dataset = Dataset.load_npz(args.data_file)
        spec_kwargs = dict(
            name=dataset.name if dataset.name in DATASETS else "identity", n=dataset.n, d=dataset.d
        )
        # record what the file holds, not the flags' defaults
        file_spec = dataset.meta.get("spec", {})
        classes = tuple(file_spec.get("classes", classes))
        labels = file_spec.get("labels", labels)
        if args.n != dataset.n:
            raise ConfigError(
                f"--n {args.n} does not match {args.data_file} ({dataset.n} "
                "samples); pass --n to match or prepare another file"
            )
    else:
        dataset = None
        spec_kwargs = dict(name=data, n=args.n, d=args.d)
    root = args.data_root if args.data_root is not None else DataSpec.root
    spec = DataSpec(**spec_kwargs, classes=classes, labels=labels, root=root)
    options = _run_options(args)
    run = make_run_config(data=spec, width=args.width, **options)  # checks every knob
    # before any work: options that do nothing, the run folder, the memory, the tags
    preflight.refuse_useless(
        preflight.useless_options(
            _given(args), run, data=data, data_file=args.data_file is not None
        )
    )
    tags = preflight.tags(args.tag)
    preflight.check_out(args.out)
    d = preflight.input_dim_bound(spec.name, spec.n, spec.d)
    if run.train.device != "cuda:auto":
        check_device(run.train.device)  # before asking the device how much memory it has
    preflight.check_memory(run, spec.n, d, args.memory_budget_gb)
    with preflight.run_lock(args.out):  # until the run ends; a second run here fails at once
        # the GPU claimed is the device the run (and its provenance) records
        wait = {} if args.gpu_wait is None else {"timeout": args.gpu_wait}
        device = resolve_device(run.train.device, **wait)
        if device != run.train.device:
            run = make_run_config(data=spec, width=args.width, **{**options, "device": device})
            preflight.check_memory(run, spec.n, d, args.memory_budget_gb)
        if args.threads:
            torch.set_num_threads(args.threads)
        if dataset is None:
            dataset = load_dataset(run.data)  # validates n, classes, files before any training
        if dataset is not None and args.data_file is not None:
            dataset = Dataset(
                X=dataset.X,
                y=dataset.y,
                name=dataset.name,
                meta={**dataset.meta, "file": str(args.data_file)},
            )
        result = train(
            run,
            args.out,
            dataset=dataset,
            overwrite=args.overwrite,
            progress=not args.quiet,
            tags=tags,
        )
    s = result.summary
    if result.skipped:
        print(_finished_message(args.out, s), file=sys.stderr)
    elif not args.quiet:
        keys = ("status", "final_loss", "lambda_0", "min_lambda_min", "max_w_norm", "rate", "lr")
        print(json.dumps({k: s.get(k) for k in keys}, default=str), file=sys.stderr)
        print(f"overdeq train: results in {_results(args.out)}", file=sys.stderr)
    if s["status"] == "diverged":
        print(f"run diverged: {s.get('reason')}", file=sys.stderr)
    return 0


def _results(out: Path) -> str:
    return f"{out}/ (summary.json, history.csv)"


def _finished_message(out: Path, summary: dict[str, Any]) -> str:
    """What a rerun of a finished run says: that it is finished, how, and where it lies."""
    status = summary.get("status")
    how = f"{status} at step {summary.get('steps_done')} of {summary.get('steps')}"
    if summary.get("reason"):
        how += f": {summary['reason']}"
    elif summary.get("final_loss") is not None:
        how += f", final loss {summary['final_loss']:.4g}"
    return (
        f"overdeq train: {out} already holds this run, {how}; nothing to do. Results in "
        f"{_results(out)}. To run it again, delete {out} or choose another --out."
    )


def _cmd_aggregate(args: argparse.Namespace) -> int:
    from .aggregate import aggregate_runs
    from .config import ConfigError

    dirs = [p.parent if p.name == "summary.json" else p for p in args.runs]
    missing = [str(d) for d in dirs if not (d / "summary.json").exists()]
    if missing:
        raise ConfigError(f"no summary.json in {missing}; train those runs first")
    aggregate_runs(dirs, args.out_runs, args.out_history)  # checks every file it reads
    return 0


def _cmd_gradient_error(args: argparse.Namespace) -> int:
    import torch

    from .ablations import gradient_error_rows
    from .data import Dataset
    from .io import write_csv

    if args.threads:
        torch.set_num_threads(args.threads)
    rows = gradient_error_rows(
        Dataset.load_npz(args.data_file), width=args.width, seed=args.seed, tols=tuple(args.tols)
    )
    write_csv(args.out, rows)
    return 0


def _cmd_verify(args: argparse.Namespace) -> int:
    from .config import ConfigError
    from .io import ResultFileError, read_json, rebuild_hint, write_json
    from .verify import CheckResult, Report, format_table, parse_claims, run_checks

    if args.show is not None:
        maker = "rule verify_claims (overdeq verify --out)"
        data = read_json(args.show, keys=("tier", "claims", "statements", "checks"), made_by=maker)
        try:
            report = Report(
                tier=data["tier"],
                claims=dict(data["claims"]),
                statements=dict(data["statements"]),
                checks=[CheckResult(**c) for c in data["checks"]],
            )
        except (TypeError, ValueError) as exc:  # a check entry with missing or unknown keys
            raise ResultFileError(
                f"{args.show} does not hold a verify report ({exc}). It is made by {maker}; "
                f"{rebuild_hint(args.show)}"
            ) from None
    else:
        if args.claims is None or args.results is None or args.tier is None:
            raise ConfigError("verify needs --claims, --results and --tier (or --show FILE)")
        try:
            data = read_json(args.claims, made_by="rule claims_json, from config/claims.yaml")
        except ResultFileError as exc:
            raise ConfigError(f"--claims {exc}") from None
        claims = parse_claims(data, source=str(args.claims))
        report = run_checks(claims, args.results, args.tier)
        if args.out is not None:
            write_json(args.out, report.to_dict())
    print(format_table(report), end="")
    failed = [c for c, v in report.claims.items() if v == "FAIL"]
    return 1 if (args.strict and failed) else 0


def _cmd_latex_values(args: argparse.Namespace) -> int:
    from .io import atomic_write_text
    from .values import read_values, values_to_latex

    groups = {path.stem: read_values(path) for path in args.files}
    groups["workflow"] = {"tier": args.tier}
    atomic_write_text(args.out, values_to_latex(groups))
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    command = _command_named(argv)
    parser = build_parser((command,) if command in COMMANDS else ())
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except (ValueError, FileNotFoundError) as exc:  # config.ConfigError is a ValueError
        parser.exit(2, f"overdeq {args.command}: error: {exc}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
