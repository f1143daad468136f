"""The walls between the package's layers hold (import-linter contracts in pyproject.toml,
described in docs/architecture.md); every import counts, function-local ones included."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
LINT_IMPORTS = Path(sys.executable).parent / "lint-imports"


def test_import_contracts_hold():
    assert LINT_IMPORTS.is_file(), "lint-imports is missing: pip install -e '.[dev]'"
    out = subprocess.run(
        [str(LINT_IMPORTS), "--no-cache"], cwd=REPO, capture_output=True, text=True, timeout=120
    )
    text = out.stdout + out.stderr
    pyproject = (REPO / "pyproject.toml").read_text()
    n = len(re.findall(r"^\[\[tool\.importlinter\.contracts\]\]$", pyproject, re.M))
    assert n >= 5
    assert out.returncode == 0, text[-4000:]
    assert re.search(rf"Contracts: {n} kept, 0 broken", text), text[-2000:]
