"""``overdeq plan``: a tier's predicted run time, before anything runs (overdeq.plan).

Two ways in. ``overdeq plan --jobs JOBS.json --out plan.json`` estimates the jobs the
workflow expanded (rule ``plan`` writes that JSON from the config); ``overdeq plan
--configfile config/paper.yaml`` is a convenience that runs ``snakemake plan --configfile ...
--forcerun plan`` (the package never reads YAML), which prints the same table.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
from pathlib import Path

from .argtypes import add_threads, positive_int
from .config import ConfigError

__all__ = ["configure"]

SHOW_KEYS = ("tier", "precision", "device", "this_device", "h100_estimate", "target", "dominant")


DESCRIPTION = (
    "A tier's predicted run time before anything runs: per experiment and in total, on this "
    "device (GEMM and eigensolver rates measured here, solver iterations from a few steps of "
    "small runs) and on an H100 (an estimate from published throughput, never a measurement). "
    "The jobs come from the workflow: --configfile runs 'snakemake plan', whose rule writes "
    "the jobs' JSON and calls --jobs."
)

EPILOG = """\
examples:
  overdeq plan --configfile config/paper.yaml
  overdeq plan --jobs results/paper/plan_jobs.json --out results/paper/plan.json
  overdeq plan --show results/paper/plan.json
"""


def configure(p: argparse.ArgumentParser) -> None:
    """Give ``p`` (the parser of ``overdeq plan``) its arguments."""
    p.description, p.epilog = DESCRIPTION, EPILOG
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument(
        "--jobs",
        type=Path,
        help="the tier's jobs as JSON (written by the workflow's rule plan)",
    )
    src.add_argument(
        "--configfile",
        type=Path,
        help="a tier's config: runs 'snakemake plan --configfile FILE --forcerun plan'",
    )
    src.add_argument("--show", type=Path, help="print the table of an existing plan.json")
    p.add_argument("--out", type=Path, help="plan.json to write (with --jobs)")
    p.add_argument(
        "--device",
        default="auto",
        help="device to calibrate on: auto (cuda if present, else cpu), cpu, cuda, cuda:N",
    )
    p.add_argument(
        "--size",
        type=positive_int("--size"),
        nargs=3,
        metavar=("N", "M", "STEPS"),
        default=None,
        help="samples, width and steps of the small runs that measure iterations "
        "(default: overdeq.plan.CALIBRATION_SIZE of the device)",
    )
    add_threads(p)
    p.set_defaults(func=_cmd_plan)


def _device(name: str) -> str:
    import torch

    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"--device {name}: no CUDA device here; use --device cpu or auto")
    return name


def _via_snakemake(configfile: Path) -> int:
    # the environment overdeq runs in first (its rules call `overdeq`), then PATH
    here = Path(sys.executable).parent
    exe = shutil.which("snakemake", path=f"{here}{os.pathsep}{os.environ.get('PATH', '')}")
    if exe is None:
        raise ConfigError(
            "--configfile needs snakemake on PATH (the workflow expands the tier's jobs); "
            "activate the environment (source .venv/bin/activate), or pass --jobs with a "
            "jobs JSON written by 'snakemake plan'"
        )
    if not configfile.is_file():
        raise ConfigError(f"--configfile {configfile}: no such file")
    # the target first: --configfile and --forcerun each take every word after them
    cmd = [exe, "plan", "--configfile", str(configfile), "--cores", "all", "--forcerun", "plan"]
    print("running: " + " ".join(cmd[1:]), file=sys.stderr)
    env = {**os.environ, "PATH": f"{Path(exe).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    return subprocess.run(cmd, check=False, env=env).returncode


def _cmd_plan(args: argparse.Namespace) -> int:
    from .io import read_json, write_json
    from .plan import estimate, format_plan

    if args.configfile is not None:
        return _via_snakemake(args.configfile)
    if args.show is not None:
        plan = read_json(args.show, keys=SHOW_KEYS, made_by="rule plan (overdeq plan --out)")
        try:
            print(format_plan(plan), end="")
        except (KeyError, TypeError) as exc:  # an older or edited plan.json
            raise ConfigError(
                f"--show {args.show} is not a plan this overdeq can read (at {exc}); remake "
                "it: snakemake plan --forcerun plan (add --configfile for another tier)"
            ) from None
        return 0
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    jobs = read_json(args.jobs, made_by="rule plan (workflow/rules/plan.smk)")
    plan = estimate(jobs, device=_device(args.device), size=args.size)
    if args.out is not None:
        write_json(args.out, plan)
    print(format_plan(plan), end="")
    return 0
