"""House style is checked, not hoped for: ruff (lint and format) and snakefmt are clean."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def _tool(name: str) -> str:
    path = BIN / name
    if path.exists():
        return str(path)
    found = shutil.which(name)
    if found is None:
        pytest.fail(f"{name} is not installed: run tools/setup.sh (it is in the dev extras)")
    return found


@pytest.mark.parametrize(
    "argv",
    [
        ["ruff", "check", "."],
        ["ruff", "format", "--check", "."],
        ["snakefmt", "--check", "Snakefile", "workflow/"],
    ],
    ids=["ruff-check", "ruff-format", "snakefmt"],
)
def test_tree_is_clean(argv):
    out = subprocess.run(
        [_tool(argv[0]), *argv[1:]], cwd=REPO, text=True, capture_output=True, timeout=120
    )
    assert out.returncode == 0, (
        f"`{' '.join(argv)}` is not clean; run it without --check to fix:\n"
        f"{(out.stdout + out.stderr)[-3000:]}"
    )
