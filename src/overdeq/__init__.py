"""overdeq: over-parameterised deep equilibrium models, as in Ling et al. (AISTATS 2023).

The names below are imported on first use (PEP 562), so ``import overdeq`` -- and with it
every light submodule, ``overdeq.values`` or the command line's ``--help`` and ``--version``
-- does not import torch until a name that needs it is used.
"""

from __future__ import annotations

import importlib
import sys
import types
from typing import Any

# public name -> the submodule that defines it
_EXPORTS: dict[str, str] = {
    "DEQ": "model",
    "DEQConfig": "model",
    "DataSpec": "data",
    "Dataset": "data",
    "load_dataset": "data",
    "SOLVERS": "solvers",
    "SolverConfig": "solvers",
    "SolverResult": "solvers",
    "get_solver": "solvers",
    "solve": "solvers",
    "WarmStart": "implicit",
    "SolveStats": "implicit",
    "equilibrium": "implicit",
    "adjoint": "implicit",
    "deq_output": "implicit",
    "released_output": "implicit",
    "PowerNorm": "monitor",
    "gram_lambda_min": "monitor",
    "tangent_gram": "monitor",
    "deq_conjugate_kernel": "kernels",
    "untied_conjugate_kernel": "kernels",
    "deq_tangent_kernel": "kernels",
    "lambda_star": "kernels",
    "RunConfig": "config",
    "TrainConfig": "config",
    "make_run_config": "config",
    "train": "train",
    "fit_rate": "theory",
}

__all__ = list(_EXPORTS)


def version() -> str:
    """The installed package's version (its metadata, from pyproject.toml)."""
    from importlib import metadata  # here: importing it costs more than the package itself

    try:
        return metadata.version("overdeq")
    except metadata.PackageNotFoundError:
        return "unknown (overdeq is not installed; pip install -e . sets its metadata)"


def __getattr__(name: str) -> Any:
    if name == "__version__":
        return version()
    if name not in _EXPORTS:
        raise AttributeError(f"module 'overdeq' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
    globals()[name] = value  # later look-ups skip __getattr__
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__, "__version__"})


class _Package(types.ModuleType):
    """The package module, keeping ``overdeq.train`` the function ``train``.

    Importing the submodule ``overdeq.train`` binds it to the package attribute of the same
    name; with eager imports that happened before ``from .train import train`` rebound it,
    with lazy ones it would happen after and shadow the function. The submodule stays in
    ``sys.modules`` (``from overdeq.train import ...`` works as before).
    """

    def __setattr__(self, name: str, value: Any) -> None:
        if isinstance(value, types.ModuleType) and _EXPORTS.get(name) == name:
            return
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package
