"""Synthetic inputs: rows of the identity (the released random experiment) and Gaussian
unit vectors; targets y ~ U(0, 1)."""

from __future__ import annotations

import numpy as np

from .core import Dataset, DataSpec, make_labels, normalize_rows

__all__ = ["load_identity", "load_gaussian"]


def load_identity(spec: DataSpec) -> Dataset:
    """X = the first n rows of the d x d identity (d defaults to n): orthonormal inputs."""
    d = spec.d if spec.d is not None else spec.n
    if spec.n > d:
        raise ValueError(
            f"identity data has at most d={d} distinct rows, but n={spec.n}; "
            f"raise --d to at least {spec.n} or lower --n"
        )
    X = np.eye(d, dtype=np.float64)[: spec.n]
    y = make_labels(spec.n, spec.labels, seed=spec.label_seed)
    return Dataset(X=X, y=y, name="identity", meta={"d": d})


def load_gaussian(spec: DataSpec) -> Dataset:
    """Rows x_i = g_i / ||g_i||, g_i ~ N(0, I_d): uniform on the unit sphere."""
    if spec.d is None:
        raise ValueError("gaussian data needs an input dimension: pass --d (e.g. --d 64)")
    if spec.d < 1:
        raise ValueError(f"--d must be >= 1, got {spec.d}")
    g = np.random.default_rng(spec.seed).standard_normal((spec.n, spec.d))
    X = normalize_rows(g)
    y = make_labels(spec.n, spec.labels, seed=spec.label_seed)
    return Dataset(X=X, y=y, name="gaussian", meta={"d": spec.d})
