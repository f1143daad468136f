"""Shared small test problems (float64 unless stated)."""

from __future__ import annotations

import math

import torch

from overdeq.model import DEQ, DEQConfig


def unit_rows(n: int, d: int, seed: int = 0, dtype=torch.float64) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    X = torch.randn(n, d, generator=g, dtype=torch.float64)
    return (X / X.norm(dim=1, keepdim=True)).to(dtype)


def small_deq(
    n: int = 6,
    d: int = 5,
    m: int = 40,
    *,
    biases: bool = False,
    seed: int = 0,
    sigma_w: float = 0.4,
    dtype=torch.float64,
) -> tuple[DEQ, torch.Tensor, torch.Tensor]:
    """A DEQ, unit-norm inputs X (n, d) and targets y ~ U(0, 1)."""
    cfg = DEQConfig(d=d, width=m, sigma_w=sigma_w, biases=biases)
    model = DEQ(
        cfg, seeds={"W": seed + 1, "U": seed + 2, "a": seed + 3, "bias": seed + 4}, dtype=dtype
    )
    X = unit_rows(n, d, seed + 5, dtype)
    y = torch.rand(n, generator=torch.Generator().manual_seed(seed + 6), dtype=torch.float64)
    return model, X, y.to(dtype)


def contractive_map(n: int, m: int, factor: float, seed: int = 0):
    """z -> factor * tanh(z A / ||A||) + b: a contraction with Lipschitz constant <= factor."""
    g = torch.Generator().manual_seed(seed)
    A = torch.randn(m, m, generator=g, dtype=torch.float64)
    A = A / torch.linalg.matrix_norm(A, ord=2)
    b = torch.randn(n, m, generator=g, dtype=torch.float64)
    return lambda Z: factor * torch.tanh(Z @ A) + b


def linear_map(n: int, m: int, factor: float, seed: int = 0):
    """z -> z M + c with ||M||_2 = factor; the exact fixed point is c (I - M)^-1."""
    g = torch.Generator().manual_seed(seed)
    M = torch.randn(m, m, generator=g, dtype=torch.float64)
    M = factor * M / torch.linalg.matrix_norm(M, ord=2)
    c = torch.randn(n, m, generator=g, dtype=torch.float64)
    exact = torch.linalg.solve((torch.eye(m, dtype=torch.float64) - M).T, c.T).T
    return (lambda Z: Z @ M + c), exact


SQRT2 = math.sqrt(2.0)
