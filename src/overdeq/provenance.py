"""Provenance recorded with every result: where, with what, and how long."""

from __future__ import annotations

import hashlib
import json
import os
import platform
import resource
import subprocess
import sys
from dataclasses import asdict, is_dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

import torch

__all__ = [
    "config_hash",
    "git_state",
    "package_versions",
    "device_name",
    "peak_memory_mb",
    "provenance",
]

_PACKAGES = (
    "overdeq",
    "torch",
    "numpy",
    "scipy",
    "matplotlib",
    "seaborn",
    "snakemake",
    "jupytext",
    "scikit-learn",
)


def _canonical(obj: Any) -> Any:
    if is_dataclass(obj) and not isinstance(obj, type):
        return _canonical(asdict(obj))
    if isinstance(obj, dict):
        return {str(k): _canonical(v) for k, v in sorted(obj.items())}
    if isinstance(obj, (list, tuple)):
        return [_canonical(v) for v in obj]
    return obj


def config_hash(config: Any) -> str:
    """sha256 (first 16 hex digits) of the canonical JSON of a config (dataclass or dict)."""
    text = json.dumps(_canonical(config), sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def git_state(start: str | os.PathLike | None = None) -> dict[str, Any]:
    """Commit and dirty flag of the repository holding ``start`` (default: this package)."""
    where = Path(start) if start else Path(__file__).resolve().parent

    def git(*args: str) -> str:
        return subprocess.run(
            ["git", *args], cwd=where, capture_output=True, text=True, timeout=10, check=True
        ).stdout.strip()

    try:
        commit = git("rev-parse", "HEAD")
        dirty = git("status", "--porcelain", "--untracked-files=no") != ""
        return {"commit": commit, "dirty": dirty}
    except (OSError, subprocess.SubprocessError):
        return {"commit": None, "dirty": None}


def package_versions() -> dict[str, str | None]:
    out: dict[str, str | None] = {"python": platform.python_version()}
    for name in _PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def device_name(device: torch.device | str) -> str:
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return f"cpu: {line.split(':', 1)[1].strip()}"
    except OSError:
        pass
    return f"cpu: {platform.processor() or platform.machine()}"


def peak_memory_mb(device: torch.device | str) -> float:
    """Peak GPU memory allocated by torch on CUDA; peak resident set size of the process on CPU."""
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


def provenance(
    *,
    config: Any,
    device: torch.device | str,
    precision: str,
    seeds: dict[str, int],
    wall_time_s: float,
) -> dict[str, Any]:
    return {
        "git": git_state(),
        "config_hash": config_hash(config),
        "versions": package_versions(),
        "device": device_name(device),
        "precision": precision,
        "threads": torch.get_num_threads(),
        "seeds": dict(seeds),
        "wall_time_s": wall_time_s,
        "peak_memory_mb": peak_memory_mb(device),
        "host": platform.node(),
        "argv": sys.argv,
    }
