"""Command-line interface: ``overdeq <command> [flags]``.

Every knob is one flag; bad values fail before any computation with a message that names the
flag, the value and what is allowed (exit status 2). Results go to ``--out``.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

from .argtypes import nonnegative_int, positive_float, positive_int
from .data import DATASETS, LABEL_KINDS, Dataset, DataSpec, load_dataset
from .devices import resolve_device
from .solvers import SOLVERS
from .train import GRADIENTS, LOSSES, MODES, PRECISIONS, ConfigError, make_run_config, train

__all__ = ["main", "build_parser"]


def _add_train_args(p: argparse.ArgumentParser) -> None:
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
    g.add_argument(
        "--d",
        type=positive_int("--d"),
        default=None,
        help="input dimension for synthetic data (identity: default n)",
    )
    g.add_argument("--classes", type=int, nargs="+", default=[0, 1])
    g.add_argument(
        "--labels",
        choices=list(LABEL_KINDS),
        default="uniform",
        help="uniform: y ~ U(0,1) as in the paper; pm1: +-1 by class",
    )
    g.add_argument("--data-root", default="data", help="folder holding raw/ downloads")
    g.add_argument("--data-seed", type=int, default=0, help="seed of inputs and labels")

    g = p.add_argument_group("model")
    g.add_argument("--width", type=positive_int("--width"), default=1000, help="width m")
    g.add_argument("--sigma-w", type=positive_float("--sigma-w"), default=0.4)
    g.add_argument("--sigma-u", type=positive_float("--sigma-u"), default=1.0)
    g.add_argument("--sigma-a", type=positive_float("--sigma-a"), default=1.0)
    g.add_argument(
        "--allow-expansive",
        action="store_true",
        help="paper mode: run even if 2*sigma_w >= 1 (no contraction at init)",
    )
    g.add_argument("--seed", type=int, default=0, help="seed of W, U, a (and biases)")

    g = p.add_argument_group("mode and the released code's quirks (each flag flips one)")
    g.add_argument("--mode", choices=list(MODES), default="paper")
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
        action="store_true",
        help="also log the released code's unordered-eig readouts",
    )

    g = p.add_argument_group("optimisation")
    lr = g.add_mutually_exclusive_group()
    lr.add_argument("--lr", type=positive_float("--lr"), default=None, help="fixed step size")
    lr.add_argument(
        "--lr-scale",
        type=positive_float("--lr-scale"),
        default=None,
        help="step = LR_SCALE / lambda_max(Theta_0) (default 0.5)",
    )
    g.add_argument("--steps", type=int, default=1000)
    g.add_argument(
        "--solver",
        choices=list(SOLVERS),
        default=None,
        help="fixed-point solver for forward and adjoint",
    )
    g.add_argument("--tol", type=positive_float("--tol"), default=None)
    g.add_argument("--max-iter", type=positive_int("--max-iter"), default=None)
    g.add_argument("--warm-start", action=argparse.BooleanOptionalAction, default=None)
    g.add_argument("--patience", type=positive_int("--patience"), default=None)

    g = p.add_argument_group("monitoring, output, hardware")
    g.add_argument("--log-every", type=positive_int("--log-every"), default=10)
    g.add_argument(
        "--audit-every",
        type=nonnegative_int("--audit-every"),
        default=0,
        help="exact ||W||_2 every k-th log (0: first and last only)",
    )
    g.add_argument("--checkpoint-every", type=positive_int("--checkpoint-every"), default=200)
    g.add_argument("--precision", choices=list(PRECISIONS), default="float32")
    g.add_argument(
        "--device",
        default="cpu",
        help="cpu, cuda, cuda:N, or cuda:auto (claim a GPU no other overdeq "
        "process holds; see overdeq.devices)",
    )
    g.add_argument(
        "--gpu-wait",
        type=positive_float("--gpu-wait"),
        default=3600.0,
        help="cuda:auto: seconds to wait for a free GPU before giving up",
    )
    g.add_argument(
        "--threads",
        type=positive_int("--threads"),
        default=None,
        help="CPU threads for torch (default: torch's choice)",
    )
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
_SUBCOMMAND_MODULES: tuple[str, ...] = ("overdeq.data.cli", "overdeq.experiments_cli")


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
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--tols",
        type=positive_float("--tols"),
        nargs="+",
        default=[1e-1, 1e-2, 1e-3, 1e-4, 1e-6, 1e-8],
    )
    p.add_argument("--threads", type=positive_int("--threads"), default=None)
    p.add_argument("--out", type=Path, required=True, help="CSV to write")
    p.set_defaults(func=_cmd_gradient_error)
    p = sub.add_parser("verify", help="check the paper's claims against the results")
    p.add_argument("--claims", type=Path, default=Path("config/claims.yaml"))
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


def _train_overrides(args: argparse.Namespace) -> dict[str, Any]:
    """Only the flags the user gave, so mode presets fill in the rest."""
    over: dict[str, Any] = {}
    for key in (
        "biases",
        "width_scale",
        "loss",
        "gradient",
        "lr",
        "lr_scale",
        "warm_start",
        "patience",
    ):
        value = getattr(args, key)
        if value is not None:
            over[key] = value
    over.update(
        steps=args.steps,
        log_every=args.log_every,
        audit_every=args.audit_every,
        checkpoint_every=args.checkpoint_every,
        precision=args.precision,
        device=args.device,
        legacy_readouts=args.legacy_readouts,
    )
    return over


def _solver_overrides(args: argparse.Namespace) -> dict[str, Any]:
    keys = {"solver": "name", "tol": "tol", "max_iter": "max_iter"}
    return {field: getattr(args, k) for k, field in keys.items() if getattr(args, k) is not None}


def _cmd_train(args: argparse.Namespace) -> int:
    import torch

    if args.steps < 0:
        raise ConfigError(f"--steps must be >= 0, got {args.steps}")
    # before any work; the GPU claimed is the device the run (and its provenance) records
    args.device = resolve_device(args.device, timeout=args.gpu_wait)
    if args.threads:
        torch.set_num_threads(args.threads)
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
    run = make_run_config(
        mode=args.mode,
        data=spec,
        width=args.width,
        seed=args.seed,
        data_seed=args.data_seed,
        sigma_w=args.sigma_w,
        sigma_u=args.sigma_u,
        sigma_a=args.sigma_a,
        allow_expansive=args.allow_expansive,
        **_train_overrides(args),
    )
    solver_over = _solver_overrides(args)
    if solver_over:
        t = run.train
        run = replace(
            run,
            train=replace(
                t,
                forward=replace(t.forward, **solver_over),
                backward=replace(t.backward, **solver_over),
            ),
        )
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
    missing = [str(d) for d in dirs if not (d / "summary.json").is_file()]
    if missing:
        raise ConfigError(f"no summary.json in {missing}; train those runs first")
    aggregate_runs(dirs, args.out_runs, args.out_history)
    return 0


def _cmd_gradient_error(args: argparse.Namespace) -> int:
    import torch

    from .ablations import gradient_error_rows
    from .io import write_csv

    if args.threads:
        torch.set_num_threads(args.threads)
    rows = gradient_error_rows(
        Dataset.load_npz(args.data_file), width=args.width, seed=args.seed, tols=tuple(args.tols)
    )
    write_csv(args.out, rows)
    return 0


def _cmd_verify(args: argparse.Namespace) -> int:
    from .io import read_json, write_json
    from .verify import CheckResult, Report, format_table, load_claims, run_checks

    if args.show is not None:
        data = read_json(args.show)
        report = Report(
            tier=data["tier"],
            claims=data["claims"],
            statements=data["statements"],
            checks=[CheckResult(**c) for c in data["checks"]],
        )
    else:
        if args.results is None or args.tier is None:
            raise ConfigError("verify needs --results and --tier (or --show FILE)")
        report = run_checks(load_claims(args.claims), args.results, args.tier)
        if args.out is not None:
            write_json(args.out, report.to_dict())
    print(format_table(report), end="")
    failed = [c for c, v in report.claims.items() if v == "FAIL"]
    return 1 if (args.strict and failed) else 0


def _cmd_latex_values(args: argparse.Namespace) -> int:
    from .io import atomic_write_text
    from .values import read_values, values_to_latex

    groups = {p.stem: read_values(p) for p in args.files}
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
