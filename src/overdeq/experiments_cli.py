"""``overdeq random-deq``: one random-DEQ experiment (E1, E2, E3, E10) as one job.

    overdeq random-deq e1|e2|e3|e10 [--params FILE.json | --params-json STRING]
                       --out rows.csv [--summary summary.csv] [--meta meta.json]
                       [--device cpu|cuda|cuda:N] [--threads N]

The parameters are a JSON object whose keys are those of ``experiments_random.DEFAULTS[e]``
(missing keys take the quick-grid defaults). Every key and value is checked before any
computation; a bad one fails with exit status 2 and a message that names the key and what is
allowed. ``--device`` overrides the ``device`` parameter.

Outputs: ``--out`` the tidy rows (one per measurement); ``--summary`` the small derived table
(E1: log-log slopes; E2: per-cell probabilities with the threshold fit of their (data, n);
E3: per-sigma_w summary; E10 has none, its rows are the table); ``--meta`` the resolved
parameters with provenance (git commit, versions, device, wall time).
"""

from __future__ import annotations

import argparse
import json
import math
import re
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from . import experiments_random as E
from .argtypes import positive_int
from .data import DATASETS
from .random_deq import W_NORMS

__all__ = ["register", "EXPERIMENTS", "check_params", "load_params"]

EXPERIMENTS = ("e1", "e2", "e3", "e10")
DTYPES = ("float64", "float32")
_DEVICE = re.compile(r"^(cpu|cuda|cuda:auto|cuda:[0-9]+)$")
_SIGMA_W_MAX = math.sqrt(2)  # the DEQ kernel exists iff sigma_w^2 < 2


# --- value checks: each returns None when the value is fine, else what is allowed ----------


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_num(v: Any) -> bool:
    return (_is_int(v) or isinstance(v, float)) and math.isfinite(v)


def _int(lo: int) -> Callable[[Any], str | None]:
    def check(v: Any) -> str | None:
        return None if _is_int(v) and v >= lo else f"an integer >= {lo}"

    return check


def _optional_int(lo: int) -> Callable[[Any], str | None]:
    def check(v: Any) -> str | None:
        return None if v is None or (_is_int(v) and v >= lo) else f"null or an integer >= {lo}"

    return check


def _num(
    lo: float,
    hi: float | None = None,
    *,
    lo_open: bool = False,
    hi_open: bool = True,
    hi_label: str | None = None,
) -> Callable[[Any], str | None]:
    lo_txt = f"{'>' if lo_open else '>='} {lo:g}"
    hi_txt = "" if hi is None else f" and {'<' if hi_open else '<='} {hi_label or f'{hi:g}'}"

    def check(v: Any) -> str | None:
        ok = _is_num(v) and (v > lo if lo_open else v >= lo)
        if ok and hi is not None:
            ok = v < hi if hi_open else v <= hi
        return None if ok else f"a finite number {lo_txt}{hi_txt}"

    return check


def _list_of(item: Callable[[Any], str | None]) -> Callable[[Any], str | None]:
    def check(v: Any) -> str | None:
        what = item(None)  # None is never a valid item: this is the description
        if isinstance(v, list) and v and all(item(x) is None for x in v):
            return None
        return f"a non-empty list, each item {what}"

    return check


def _choice(options: tuple[str, ...], *, many: bool) -> Callable[[Any], str | None]:
    def check(v: Any) -> str | None:
        if isinstance(v, str) and v in options:
            return None
        if many and isinstance(v, list) and v and all(x in options for x in v):
            return None
        return f"one of {list(options)}" + (" or a non-empty list of them" if many else "")

    return check


def _seeds(v: Any) -> str | None:
    if _is_int(v) and v >= 1:
        return None
    if isinstance(v, list) and v and all(_is_int(x) and x >= 0 for x in v):
        return None
    return "a count >= 1 (seeds 0..count-1) or a non-empty list of integers >= 0"


def _device(v: Any) -> str | None:
    return (
        None
        if isinstance(v, str) and _DEVICE.match(v)
        else "'cpu', 'cuda', 'cuda:N' or 'cuda:auto'"
    )


_KERNEL_SIGMA_W = _num(0.0, _SIGMA_W_MAX, hi_label="sqrt(2) (where the DEQ kernel exists)")
_COMMON_CHECKS = {
    "sigma_u": _num(0.0, lo_open=True),
    "d": _optional_int(1),
    "data_seed": _int(0),
    "dtype": _choice(DTYPES, many=False),
    "device": _device,
    "budget_bytes": _optional_int(1),
    "data_root": lambda v: None if isinstance(v, str) and v else "a folder name",
}
CHECKS: dict[str, dict[str, Callable[[Any], str | None]]] = {
    "e1": {
        **_COMMON_CHECKS,
        "data": _choice(DATASETS, many=True),
        "n": _int(1),
        "sigma_w": _KERNEL_SIGMA_W,
        "widths": _list_of(_int(1)),
        "seeds": _seeds,
        "untied_widths": _list_of(_int(1)),
        "max_depth": _int(1),
    },
    "e2": {
        **_COMMON_CHECKS,
        "data": _choice(DATASETS, many=True),
        "ns": _list_of(_int(1)),
        "sigma_w": _KERNEL_SIGMA_W,
        "ratios": _list_of(_num(0.0, lo_open=True)),
        "seeds": _seeds,
        "fraction": _num(0.0, 1.0, lo_open=True, hi_open=False),
        "probability": _num(0.0, 1.0, lo_open=True, hi_open=False),
    },
    "e3": {
        **_COMMON_CHECKS,
        "data": _choice(DATASETS, many=False),
        "n": _int(1),
        "width": _int(1),
        "seeds": _seeds,
        "sigma_ws": _list_of(_num(0.0, lo_open=True)),
        "tol": _num(0.0, lo_open=True),
        "max_iter": _int(1),
        "w_norm": _choice(W_NORMS, many=False),
    },
    "e10": {
        **_COMMON_CHECKS,
        "data": _choice(DATASETS, many=True),
        "n": _int(1),
        "sigma_a": _num(0.0, lo_open=True),
        "sigma_ws": _list_of(_KERNEL_SIGMA_W),
    },
}


def check_params(experiment: str, params: Mapping[str, Any]) -> dict[str, Any]:
    """The parameters if every key is known and every value allowed, else a ValueError."""
    if experiment not in CHECKS:
        raise ValueError(f"unknown experiment {experiment!r}; valid: {list(EXPERIMENTS)}")
    if not isinstance(params, Mapping):
        raise ValueError(
            f"{experiment}: parameters must be a JSON object, got {type(params).__name__}"
        )
    checks = CHECKS[experiment]
    unknown = sorted(set(params) - set(checks))
    if unknown:
        raise ValueError(
            f"{experiment}: unknown parameter(s) {unknown}; valid parameters: {sorted(checks)}"
        )
    for key, value in params.items():
        allowed = checks[key](value)
        if allowed is not None:
            raise ValueError(
                f"{experiment}: parameter {key!r} must be {allowed}, got {json.dumps(value)}"
            )
    return dict(params)


def load_params(path: Path | None, text: str | None) -> dict[str, Any]:
    """The JSON object of ``--params FILE`` or ``--params-json STRING`` ({} when neither)."""
    if path is not None:
        source, text = str(path), path.read_text()
    elif text is not None:
        source = "--params-json"
    else:
        return {}
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"{source} is not valid JSON: {exc}") from None


# --- the job -----------------------------------------------------------------------------


def _e2_summary(rows: list[dict[str, Any]], probability: float) -> list[dict[str, Any]]:
    """Per-cell probabilities, each with the threshold fit of its (data, n)."""
    cells = E.summarize_e2(rows)
    fits = {(f["data"], f["n"]): f for f in E.fit_e2_threshold(cells, probability)}
    keep = ("ratio_star", "m_star", "exponent", "fit_points")
    return [
        {
            **c,
            "threshold_probability": probability,
            **{k: fits[(c["data"], c["n"])][k] for k in keep},
        }
        for c in cells
    ]


def _summary(
    experiment: str, rows: list[dict[str, Any]], params: Mapping[str, Any]
) -> list[dict[str, Any]]:
    if experiment == "e1":
        return E.summarize_e1(rows)
    if experiment == "e2":
        return _e2_summary(rows, params.get("probability", E.DEFAULTS["e2"]["probability"]))
    return E.summarize_e3(rows)


def _cmd_random_deq(args: argparse.Namespace) -> int:
    import torch

    from .devices import resolve_device
    from .io import write_csv, write_json
    from .provenance import provenance

    exp = args.experiment
    params = check_params(exp, load_params(args.params, args.params_json))
    if args.summary is not None and exp == "e10":
        raise ValueError(
            "--summary: e10 has no summary table (its rows are the table); drop --summary"
        )
    if args.device is not None:
        params["device"] = args.device
    if args.data_root is not None:
        params["data_root"] = args.data_root
    device = params.get("device", "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"--device {device}: no CUDA device is available; use --device cpu")
    params["device"] = resolve_device(device)  # cuda:auto claims a free GPU for this process
    if args.threads:
        torch.set_num_threads(args.threads)

    start = time.perf_counter()
    rows = getattr(E, f"run_{exp}")(params)
    wall = time.perf_counter() - start
    write_csv(args.out, rows)
    if args.summary is not None:
        write_csv(args.summary, _summary(exp, rows, params))
    if args.meta is not None:
        resolved = {**E.DEFAULTS[exp], **params}
        write_json(
            args.meta,
            {
                "experiment": exp,
                "params": resolved,
                "rows": len(rows),
                **provenance(
                    config=resolved,
                    device=device,
                    precision=resolved["dtype"],
                    seeds={"data_seed": resolved["data_seed"]},
                    wall_time_s=wall,
                ),
            },
        )
    print(f"random-deq {exp}: {len(rows)} rows in {wall:.1f} s -> {args.out}", file=sys.stderr)
    return 0


def _device_flag(text: str) -> str:
    if _device(text) is not None:
        raise argparse.ArgumentTypeError(
            f"--device must be 'cpu', 'cuda' or 'cuda:N', got {text!r}"
        )
    return text


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``overdeq random-deq {e1,e2,e3,e10}`` to the top-level subcommands."""
    p = sub.add_parser(
        "random-deq",
        help="random-DEQ experiments E1, E2, E3, E10 (one job)",
        description=__doc__.splitlines()[0],
    )
    p.add_argument(
        "experiment",
        choices=list(EXPERIMENTS),
        help="e1 kernel limit, e2 initial condition, e3 well-posedness, e10 kernels",
    )
    src = p.add_mutually_exclusive_group()
    src.add_argument(
        "--params",
        type=Path,
        default=None,
        metavar="FILE.json",
        help="parameters as a JSON file (default: the quick grid)",
    )
    src.add_argument(
        "--params-json", default=None, metavar="STRING", help="parameters as a JSON string"
    )
    p.add_argument("--out", type=Path, required=True, help="rows to write (.csv)")
    p.add_argument("--summary", type=Path, default=None, help="derived table (.csv)")
    p.add_argument(
        "--meta", type=Path, default=None, help="resolved parameters and provenance (.json)"
    )
    p.add_argument(
        "--device",
        type=_device_flag,
        default=None,
        help="cpu, cuda or cuda:N (overrides the 'device' parameter)",
    )
    p.add_argument(
        "--data-root",
        default=None,
        help="folder holding raw/mnist/ and raw/cifar-10/ (overrides the params)",
    )
    p.add_argument(
        "--threads",
        type=positive_int("--threads"),
        default=None,
        help="CPU threads for torch (default: torch's choice)",
    )
    p.set_defaults(func=_cmd_random_deq)
