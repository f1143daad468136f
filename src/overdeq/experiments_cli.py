"""``overdeq random-deq``: one random-DEQ experiment (E1, E2, E3, E10) as one job.

    overdeq random-deq e1|e2|e3|e10 [--params FILE.json | --params-json STRING]
                       --out rows.csv [--summary summary.csv] [--meta meta.json]
                       [--device cpu|cuda|cuda:N] [--threads N]

The parameters are a JSON object whose keys are the fields of the experiment's parameter
dataclass (``experiments_random.E1Params``, ...; a key not given keeps its default). The
dataclass checks every key and value before any computation; a bad one fails with exit
status 2 and a message that names the key and what is allowed. ``--device`` and
``--data-root`` override the parameters of those names.

Outputs: ``--out`` the tidy rows (one per measurement); ``--summary`` the small derived table
(E1: log-log slopes; E2: per-cell probabilities with the threshold fit of their (data, n);
E3: per-sigma_w summary; E10 has none, its rows are the table); ``--meta`` the resolved
parameters with provenance (git commit, versions, device, wall time).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from . import checks
from .argtypes import add_threads
from .experiments_random import EXPERIMENTS

__all__ = ["configure", "load_params"]


def load_params(path: Path | None, text: str | None) -> Any:
    """The JSON value of ``--params FILE`` or ``--params-json STRING`` ({} when neither)."""
    if path is not None:
        source = f"--params {path}"
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:  # missing, a folder, unreadable, binary
            why = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
            raise ValueError(f"{source}: cannot read it ({why}); give a JSON file") from None
    elif text is not None:
        source = "--params-json"
    else:
        return {}
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"{source} is not valid JSON: {exc}") from None


def _cmd_random_deq(args: argparse.Namespace) -> int:
    import torch

    from .devices import resolve_device
    from .io import write_csv, write_json
    from .provenance import provenance

    name = args.experiment
    experiment = EXPERIMENTS[name]
    params = experiment.params.from_mapping(load_params(args.params, args.params_json))
    if args.summary is not None and experiment.summarize is None:
        raise ValueError(
            f"--summary: {name} has no summary table (its rows are the table); drop --summary"
        )
    flags = {"device": args.device, "data_root": args.data_root}
    params = replace(params, **{k: v for k, v in flags.items() if v is not None})
    device = params.device
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"--device {device}: no CUDA device is available; use --device cpu")
    # cuda:auto claims a free GPU for this process
    params = replace(params, device=resolve_device(device))
    if args.threads:
        torch.set_num_threads(args.threads)

    start = time.perf_counter()
    rows = experiment.run(params)
    wall = time.perf_counter() - start
    write_csv(args.out, rows)
    if args.summary is not None:
        write_csv(args.summary, experiment.summarize(rows, params))
    if args.meta is not None:
        resolved = params.to_dict()
        write_json(
            args.meta,
            {
                "experiment": name,
                "params": resolved,
                "rows": len(rows),
                **provenance(
                    config=resolved,
                    device=device,
                    precision=params.dtype,
                    seeds={"data_seed": params.data_seed},
                    wall_time_s=wall,
                ),
            },
        )
    print(f"random-deq {name}: {len(rows)} rows in {wall:.1f} s -> {args.out}", file=sys.stderr)
    return 0


def _device_flag(text: str) -> str:
    if checks.device(text) is not None:
        raise argparse.ArgumentTypeError(
            f"--device must be 'cpu', 'cuda' or 'cuda:N', got {text!r}"
        )
    return text


DESCRIPTION = (
    "One random-DEQ experiment (E1, E2, E3, E10) as one job. The parameters are a JSON object "
    "whose keys are the fields of the experiment's parameter dataclass "
    "(overdeq.experiments_random.E1Params, ...); a key not given keeps its default, and every "
    "key and value is checked before any computation."
)

EPILOG = """\
examples:
  overdeq random-deq e1 --out e1.csv --summary e1_summary.csv
  overdeq random-deq e2 --params-json '{"ns": [15], "ratios": [1, 4], "seeds": 4}' --out e2.csv
  overdeq random-deq e10 --params params.json --out e10.csv --meta e10.json --device cuda
"""


def configure(p: argparse.ArgumentParser) -> None:
    """Give ``p`` (the parser of ``overdeq random-deq``) its arguments."""
    p.description, p.epilog = DESCRIPTION, EPILOG
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
        "--params-json",
        default=None,
        metavar="STRING",
        help="parameters as a JSON string (default: the quick grid)",
    )
    p.add_argument("--out", type=Path, required=True, help="rows to write (.csv)")
    p.add_argument(
        "--summary", type=Path, default=None, help="derived table (.csv) (default: none)"
    )
    p.add_argument(
        "--meta",
        type=Path,
        default=None,
        help="resolved parameters and provenance (.json) (default: none)",
    )
    p.add_argument(
        "--device",
        type=_device_flag,
        default=None,
        help="cpu, cuda or cuda:N (default: none, the 'device' parameter)",
    )
    p.add_argument(
        "--data-root",
        default=None,
        help="folder holding raw/mnist/ and raw/cifar-10/ (default: none, the 'data_root' "
        "parameter)",
    )
    add_threads(p)
    p.set_defaults(func=_cmd_random_deq)
