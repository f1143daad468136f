"""Test options: slow, SLURM and GPU tests are opt-in.

pytest                               fast unit tests (about a minute on 2 cores)
pytest --run-slow                    + real workflow runs (minutes)
pytest --run-slurm                   + the single-node SLURM test (root, Debian)
pytest --run-gpu                     + tests that need CUDA
"""

from __future__ import annotations

import pytest

_OPT_IN = {"slow": "--run-slow", "slurm": "--run-slurm", "gpu": "--run-gpu"}


def pytest_addoption(parser: pytest.Parser) -> None:
    for marker, flag in _OPT_IN.items():
        parser.addoption(flag, action="store_true", default=False, help=f"run {marker} tests")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for marker, flag in _OPT_IN.items():
        if config.getoption(flag):
            continue
        skip = pytest.mark.skip(reason=f"{marker} test: pass {flag} to run it")
        for item in items:
            if marker in item.keywords:
                item.add_marker(skip)
