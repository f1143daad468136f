"""Command-line interface: ``overdeq <command> [flags]``.

Every knob is one flag; bad values fail before any computation with a message that names the
flag, the value and what is allowed (exit status 2). Results go to ``--out``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from .argtypes import add_threads, nonnegative_int, positive_float, positive_int
from .config import (
    GRADIENTS,
    LOSSES,
    MODES,
    PRECISIONS,
    RUN_OPTIONS,
    ConfigError,
    TrainConfig,
    make_run_config,
)
from .data import DATASETS, Dataset, DataSpec, load_dataset
from .data.cli import add_selection_args
from .devices import resolve_device
from .model import DEQConfig
from .solvers import SOLVERS, SolverConfig
from .train import train

__all__ = ["main", "build_parser"]


def _default(cls: type, name: str) -> str:
    """``(default: X)`` with X the default of the dataclass field that owns the knob."""
    return f"(default: {cls.__dataclass_fields__[name].default})"


def _add_train_args(p: argparse.ArgumentParser) -> None:
    """The flags of ``overdeq train``. A knob's flag is ``--<knob>`` (dashes for underscores)
    with the default None: a flag not given leaves the knob to the mode preset and to the
    dataclass that owns its default (make_run_config)."""
    g = p.add_argument_group("data")
    g.add_argument(
        "--data",
        default="identity",
        choices=list(DATASETS),
        help="data set (default: identity = rows of the identity, as released)",
    )
    g.add_argument(
        "--data-file",
        type=Path,
        default=None,
        help="a prepared .npz (from 'overdeq data prepare'); overrides --data",
    )
    g.add_argument("--n", type=positive_int("--n"), default=100, help="number of samples")
    add_selection_args(g)
    g.add_argument("--data-root", default=DataSpec.root, help="folder holding raw/ downloads")
    g.add_argument("--data-seed", type=int, default=None, help="seed of inputs and labels (0)")

    g = p.add_argument_group("model")
    g.add_argument("--width", type=positive_int("--width"), default=1000, help="width m")
    for name, what in (("sigma_w", "W"), ("sigma_u", "U"), ("sigma_a", "a")):
        flag = "--" + name.replace("_", "-")
        g.add_argument(
            flag,
            type=positive_float(flag),
            default=None,
            help=f"{what} ~ N(0, {name}^2) {_default(DEQConfig, name)}",
        )
    g.add_argument(
        "--allow-expansive",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="paper mode: run even if 2*sigma_w >= 1 (no contraction at init)",
    )
    g.add_argument("--seed", type=int, default=None, help="seed of W, U, a and biases (0)")

    g = p.add_argument_group("mode and the released code's quirks (each flag flips one)")
    g.add_argument("--mode", choices=list(MODES), default=None, help="(default: paper)")
    g.add_argument("--biases", action=argparse.BooleanOptionalAction, default=None)
    g.add_argument(
        "--width-scale",
        type=positive_int("--width-scale"),
        default=None,
        help="use 1/sqrt(WIDTH_SCALE) instead of 1/sqrt(width) (the released bug)",
    )
    g.add_argument("--loss", choices=list(LOSSES), default=None)
    g.add_argument("--gradient", choices=list(GRADIENTS), default=None)
    g.add_argument(
        "--legacy-readouts",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="also log the released code's unordered-eig readouts",
    )

    g = p.add_argument_group("optimisation")
    lr = g.add_mutually_exclusive_group()
    lr.add_argument("--lr", type=positive_float("--lr"), default=None, help="fixed step size")
    lr.add_argument(
        "--lr-scale",
        type=positive_float("--lr-scale"),
        default=None,
        help=f"step = LR_SCALE / lambda_max(Theta_0) {_default(TrainConfig, 'lr_scale')}",
    )
    g.add_argument("--steps", type=int, default=None, help=_default(TrainConfig, "steps"))
    g.add_argument(
        "--solver",
        choices=list(SOLVERS),
        default=None,
        help="fixed-point solver for forward and adjoint (default: the mode's)",
    )
    g.add_argument(
        "--tol",
        type=positive_float("--tol"),
        default=None,
        help=f"solver tolerance, forward and adjoint {_default(SolverConfig, 'tol')} in paper mode",
    )
    g.add_argument("--max-iter", type=positive_int("--max-iter"), default=None)
    g.add_argument("--warm-start", action=argparse.BooleanOptionalAction, default=None)
    g.add_argument("--patience", type=positive_int("--patience"), default=None)

    g = p.add_argument_group("monitoring, output, hardware")
    for knob, kind, what in (
        ("log_every", positive_int, "log every k-th step"),
        ("audit_every", nonnegative_int, "exact ||W||_2 every k-th log (0: first and last)"),
        ("power_iters", positive_int, "power iterations per logged ||W||_2"),
        ("checkpoint_every", positive_int, "checkpoint every k-th step"),
    ):
        flag = "--" + knob.replace("_", "-")
        g.add_argument(
            flag, type=kind(flag), default=None, help=f"{what} {_default(TrainConfig, knob)}"
        )
    g.add_argument(
        "--precision",
        choices=list(PRECISIONS),
        default=None,
        help=_default(TrainConfig, "precision"),
    )
    g.add_argument(
        "--device",
        default=None,
        help="cpu, cuda, cuda:N, or cuda:auto (claim a GPU no other overdeq "
        f"process holds; see overdeq.devices) {_default(TrainConfig, 'device')}",
    )
    g.add_argument(
        "--gpu-wait",
        type=positive_float("--gpu-wait"),
        default=3600.0,
        help="cuda:auto: seconds to wait for a free GPU before giving up",
    )
    add_threads(g)
    g.add_argument("--out", type=Path, required=True, help="run directory")
    g.add_argument(
        "--overwrite",
        action="store_true",
        help="replace a run of a different configuration found in --out",
    )
    g.add_argument("--quiet", action="store_true", help="no progress output")
    g.add_argument(
        "--tag",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="label stored in summary.json (e.g. setting=calibrated); not hashed",
    )


# Modules that add subcommands: each has register(subparsers) -> None and sets ``func``.
_SUBCOMMAND_MODULES: tuple[str, ...] = (
    "overdeq.data.cli",
    "overdeq.experiments_cli",
    "overdeq.plan_cli",
)


def build_parser() -> argparse.ArgumentParser:
    import importlib

    parser = argparse.ArgumentParser(prog="overdeq", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("train", help="full-batch GD on a DEQ; writes history.csv, summary.json")
    _add_train_args(p)
    p.set_defaults(func=_cmd_train)
    p = sub.add_parser("aggregate", help="collect run directories into tidy CSV tables")
    p.add_argument("runs", nargs="+", type=Path, help="run directories (or their summary.json)")
    p.add_argument("--out-runs", type=Path, required=True, help="one row per run")
    p.add_argument("--out-history", type=Path, required=True, help="one row per logged step")
    p.set_defaults(func=_cmd_aggregate)
    p = sub.add_parser(
        "gradient-error", help="E7: gradient error of the released solver tolerance at init"
    )
    p.add_argument("--data-file", type=Path, required=True, help="prepared data (.npz)")
    p.add_argument("--width", type=positive_int("--width"), required=True)
    p.add_argument("--seed", type=int, default=0, help="seed of W, U, a and biases")
    p.add_argument(
        "--tols",
        type=positive_float("--tols"),
        nargs="+",
        default=None,
        help="solver tolerances to compare (default: overdeq.ablations.TOLS)",
    )
    add_threads(p)
    p.add_argument("--out", type=Path, required=True, help="CSV to write")
    p.set_defaults(func=_cmd_gradient_error)
    p = sub.add_parser("verify", help="check the paper's claims against the results")
    p.add_argument(
        "--claims",
        type=Path,
        help="the claims as JSON (the workflow writes results/<tier>/claims.json from "
        "config/claims.yaml)",
    )
    p.add_argument("--results", type=Path, help="results/<tier> folder to check")
    p.add_argument("--tier", help="tier name (thresholds may differ per tier)")
    p.add_argument("--out", type=Path, help="verify.json to write")
    p.add_argument("--show", type=Path, help="print the table of an existing verify.json")
    p.add_argument("--strict", action="store_true", help="exit 1 if any claim fails")
    p.set_defaults(func=_cmd_verify)
    p = sub.add_parser("latex-values", help="merge the scripts' value files into LaTeX macros")
    p.add_argument("files", nargs="+", type=Path, help="JSON files of macro name -> LaTeX text")
    p.add_argument("--tier", required=True, help="tier name, available as \\tier")
    p.add_argument("--out", type=Path, required=True, help="values.tex to write")
    p.set_defaults(func=_cmd_latex_values)
    for name in _SUBCOMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return parser


def _run_options(args: argparse.Namespace) -> dict[str, Any]:
    """The make_run_config keywords of the flags given (a flag's dest is the knob's name)."""
    return {k: getattr(args, k) for k in RUN_OPTIONS if getattr(args, k, None) is not None}


def _cmd_train(args: argparse.Namespace) -> int:
    import torch

    classes, labels = tuple(args.classes), args.labels
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
        spec_kwargs = dict(name=args.data, n=args.n, d=args.d)
    spec = DataSpec(**spec_kwargs, classes=classes, labels=labels, root=args.data_root)
    options = _run_options(args)
    run = make_run_config(data=spec, width=args.width, **options)  # checks every knob
    # before any training; the GPU claimed is the device the run (and its provenance) records
    device = resolve_device(run.train.device, timeout=args.gpu_wait)
    if device != run.train.device:
        run = make_run_config(data=spec, width=args.width, **{**options, "device": device})
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
    tags = {}
    for item in args.tag:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"--tag expects KEY=VALUE, got {item!r}")
        tags[key] = value
    result = train(
        run, args.out, dataset=dataset, overwrite=args.overwrite, progress=not args.quiet, tags=tags
    )
    s = result.summary
    if result.skipped:
        print(f"{args.out}: already complete ({s['status']}), nothing to do", file=sys.stderr)
    elif not args.quiet:
        keys = ("status", "final_loss", "lambda_0", "min_lambda_min", "max_w_norm", "rate", "lr")
        print(json.dumps({k: s.get(k) for k in keys}, default=str), file=sys.stderr)
    if s["status"] == "diverged":
        print(f"run diverged: {s.get('reason')}", file=sys.stderr)
    return 0


def _cmd_aggregate(args: argparse.Namespace) -> int:
    from .aggregate import aggregate_runs

    dirs = [p.parent if p.name == "summary.json" else p for p in args.runs]
    missing = [str(d) for d in dirs if not (d / "summary.json").exists()]
    if missing:
        raise ConfigError(f"no summary.json in {missing}; train those runs first")
    aggregate_runs(dirs, args.out_runs, args.out_history)  # checks every file it reads
    return 0


def _cmd_gradient_error(args: argparse.Namespace) -> int:
    import torch

    from .ablations import gradient_error_rows
    from .io import write_csv

    if args.threads:
        torch.set_num_threads(args.threads)
    tols = {} if args.tols is None else {"tols": tuple(args.tols)}
    rows = gradient_error_rows(
        Dataset.load_npz(args.data_file), width=args.width, seed=args.seed, **tols
    )
    write_csv(args.out, rows)
    return 0


def _cmd_verify(args: argparse.Namespace) -> int:
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
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except (ConfigError, ValueError, FileNotFoundError) as exc:
        parser.exit(2, f"overdeq {args.command}: error: {exc}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
