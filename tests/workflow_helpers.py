"""Helpers of the workflow tests: a scratch copy of the repository, and an environment in
which the rules find this environment's `overdeq` and `snakemake`."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def snapshot(root: Path) -> dict[str, str]:
    """Every file under ``root`` -> the SHA-256 of its bytes."""
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def workflow_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """os.environ with this environment's bin/ first on PATH (rules call `overdeq`)."""
    path = f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"
    return {**os.environ, "PATH": path, **(extra or {})}


def run_snakemake(*args: str, cwd: Path = REPO, timeout: int = 900) -> subprocess.CompletedProcess:
    """This environment's snakemake with ``args`` in ``cwd``, output captured."""
    return subprocess.run(
        [str(BIN / "snakemake"), *args],
        cwd=cwd,
        env=workflow_env(),
        text=True,
        capture_output=True,
        timeout=timeout,
    )


def scratch_repo(dst: Path, config: Path) -> Path:
    """The repository's files (tracked, and new ones git does not ignore) copied to ``dst``,
    with ``config`` as config/config.yaml."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=REPO,
        capture_output=True,
        check=True,
    ).stdout.decode()
    for name in filter(None, listed.split("\0")):
        src = REPO / name
        if src.is_file():
            (dst / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dst / name)
    shutil.copy2(config, dst / "config" / "config.yaml")
    return dst
