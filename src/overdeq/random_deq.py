"""Finite-width random DEQs and weight-untied networks: the Monte Carlo side of kernels.py.

    DEQ:     z* = s relu(W z* + U x),              s = 1/sqrt(m), W ~ N(0, sigma_w^2)
    untied:  z^l = s relu(W_l z^(l-1) + U x),     z^0 = 0, independent W_2..W_L, shared U
    Gram:    Z Z^T (n, n) -> kernels.deq_conjugate_kernel / untied_conjugate_kernel as m -> inf

(Layer 1 of the untied network sees z^0 = 0, so W_1 never matters and is not drawn.) Every
random object has its own generator seeded by ``seeding.derive_seed(seed, name)`` ("W",
"U", "a", "W2", "W3", ...), so the same seed gives the same U in the DEQ and in the untied
network, and changing the width or the depth never reshuffles anything else.

Memory: seeds are processed one after another and each m x m weight is released before the
next is drawn, so at most one m x m weight (plus its float64 draw, see model.DEQ) is alive.
``budget_bytes`` checks that this working set fits before anything is drawn. A solve that
does not converge is reported in the result (``converged`` False, ``gram`` None), never used.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from .implicit import adjoint, equilibrium
from .model import DEQ, DEQConfig
from .monitor import PowerNorm, exact_spectral_norm, tangent_gram
from .seeding import derive_seed, model_seeds
from .solvers import SolverConfig, SolverResult

__all__ = [
    "W_NORMS",
    "DEQSample",
    "UntiedSample",
    "TangentSample",
    "MAX_ITER",
    "default_solver",
    "working_set_bytes",
    "random_deq_grams",
    "untied_grams",
    "random_tangent_grams",
]

W_NORMS = ("none", "exact", "power")  # how to measure ||W / sqrt(m)||_2


@dataclass(frozen=True)
class DEQSample:
    """One random DEQ: the Gram of its equilibrium features and how the solve went."""

    seed: int
    width: int
    sigma_w: float
    gram: Tensor | None  # (n, n) float64 Z* Z*^T on the host; None if the solve failed
    converged: bool
    iterations: int
    residual: float  # final max per-sample relative residual
    feature_norm: float  # max_i ||z_i|| of the last iterate (blows up when divergent)
    w_norm: float  # ||W / sqrt(m)||_2, NaN when not measured


@dataclass(frozen=True)
class UntiedSample:
    """One random weight-untied network: the Gram of z^l at every depth l = 1..L."""

    seed: int
    width: int
    sigma_w: float
    grams: Tensor  # (L, n, n) float64 on the host; grams[l - 1] is depth l


@dataclass(frozen=True)
class TangentSample:
    """One random DEQ's empirical tangent-kernel Gram (monitor.tangent_gram)."""

    seed: int
    width: int
    sigma_w: float
    gram: Tensor | None  # (n, n) float64 J J^T; None if a solve failed
    converged: bool  # forward and adjoint solves both converged
    forward_iterations: int
    adjoint_iterations: int


MAX_ITER = 1000  # Picard iterations before a random DEQ's solve counts as not converged


def default_solver(
    dtype: torch.dtype = torch.float64, *, tol: float | None = None, max_iter: int = MAX_ITER
) -> SolverConfig:
    """Picard at ``tol``; None: a tolerance the precision can reach, 1e-10 (float64) or 1e-5."""
    if tol is None:
        tol = 1e-10 if dtype == torch.float64 else 1e-5
    return SolverConfig(name="picard", tol=tol, max_iter=max_iter)


def working_set_bytes(n: int, d: int, width: int, dtype: torch.dtype = torch.float64) -> int:
    """Peak bytes of one random DEQ: the float64 draw of W plus its cast, U, and a few (n, m)."""
    item = torch.empty((), dtype=dtype).element_size()
    weight = width * width * (8 + (item if dtype != torch.float64 else 0))
    return weight + width * d * (8 + item) + 6 * n * width * item + 4 * n * n * 8


def _check_budget(n: int, d: int, width: int, dtype: torch.dtype, budget: int | None) -> None:
    if budget is None:
        return
    need = working_set_bytes(n, d, width, dtype)
    if need > budget:
        raise MemoryError(
            f"one random DEQ of width m={width} (n={n}, d={d}, {dtype}) needs about "
            f"{need / 2**30:.2f} GiB but budget_bytes allows {budget / 2**30:.2f} GiB; lower the "
            "width, use float32, or raise the budget"
        )


def _x(X: Tensor | np.ndarray, dtype: torch.dtype, device: torch.device | str) -> Tensor:
    X = torch.as_tensor(X)
    if X.ndim != 2:
        raise ValueError(f"X must be (n, d), got shape {tuple(X.shape)}")
    return X.to(dtype=dtype, device=device)


def _model(
    X: Tensor,
    width: int,
    seed: int,
    sigma_w: float,
    sigma_u: float,
    sigma_a: float,
    dtype: torch.dtype,
    device: torch.device | str,
) -> DEQ:
    cfg = DEQConfig(d=X.shape[1], width=width, sigma_w=sigma_w, sigma_u=sigma_u, sigma_a=sigma_a)
    return DEQ(cfg, seeds=model_seeds(seed), dtype=dtype, device=device)


def _w_norm(model: DEQ, how: str, seed: int) -> float:
    if how == "none":
        return math.nan
    W = model.W.detach()
    if how == "exact":
        return exact_spectral_norm(W) * model.scale
    return PowerNorm(W.shape[0], seed=derive_seed(seed, "power"), burn_in=200)(W) * model.scale


def _gram(Z: Tensor) -> Tensor:
    Zd = Z.detach().to(torch.float64)
    return (Zd @ Zd.T).cpu()  # (n, n)


def random_deq_grams(
    X: Tensor | np.ndarray,
    *,
    width: int,
    seeds: Iterable[int],
    sigma_w: float = DEQConfig.sigma_w,
    sigma_u: float = DEQConfig.sigma_u,
    solver: SolverConfig | None = None,
    w_norm: str = "none",
    dtype: torch.dtype = torch.float64,
    device: torch.device | str = "cpu",
    budget_bytes: int | None = None,
) -> list[DEQSample]:
    """Equilibrium-feature Grams Z* Z*^T of random DEQs, one seed at a time.

    X (n, d) -> one :class:`DEQSample` per seed, in order. ``w_norm``: "exact" (dense
    float64 SVD, fine up to m of a few thousand on a CPU), "power" (PowerNorm, a lower bound
    after 200 iterations), or "none".
    """
    if w_norm not in W_NORMS:
        raise ValueError(f"unknown w_norm {w_norm!r}; valid: {list(W_NORMS)}")
    Xt = _x(X, dtype, device)
    _check_budget(Xt.shape[0], Xt.shape[1], width, dtype, budget_bytes)
    solver = solver or default_solver(dtype)
    out = []
    for seed in seeds:
        model = _model(Xt, width, seed, sigma_w, sigma_u, DEQConfig.sigma_a, dtype, device)
        Z, _, res = equilibrium(model, Xt, solver)
        out.append(DEQSample(
            seed=seed, width=width, sigma_w=sigma_w,
            gram=_gram(Z) if res.converged else None,
            converged=res.converged, iterations=res.iterations, residual=res.residual,
            feature_norm=float(Z.detach().double().norm(dim=1).max()),
            w_norm=_w_norm(model, w_norm, seed),
        ))  # fmt: skip
        del model, Z, res  # release W before the next seed draws its own
    return out


def untied_grams(
    X: Tensor | np.ndarray,
    *,
    width: int,
    depth: int,
    seeds: Iterable[int],
    sigma_w: float = DEQConfig.sigma_w,
    sigma_u: float = DEQConfig.sigma_u,
    dtype: torch.dtype = torch.float64,
    device: torch.device | str = "cpu",
    budget_bytes: int | None = None,
) -> list[UntiedSample]:
    """Grams of random weight-untied networks at every depth 1..depth, one pass per seed.

    z^0 = 0, z^l = s relu(W_l z^(l-1) + U x); each W_l is drawn (float64, CPU, its own
    generator ``derive_seed(seed, f"W{l}")``), used once and released. U is the DEQ's U for
    the same seed. X (n, d) -> one :class:`UntiedSample` (grams (depth, n, n)) per seed.
    """
    if depth < 1:
        raise ValueError(f"depth must be >= 1, got {depth}")
    Xt = _x(X, dtype, device)
    n, d = Xt.shape
    _check_budget(n, d, width, dtype, budget_bytes)
    s = 1.0 / math.sqrt(width)
    out = []
    for seed in seeds:
        gU = torch.Generator().manual_seed(model_seeds(seed)["U"])
        U = (torch.randn(width, d, generator=gU, dtype=torch.float64) * sigma_u).to(Xt)
        inj = Xt @ U.T  # (n, m)
        del U
        grams = torch.empty(depth, n, n, dtype=torch.float64)
        Z = s * torch.relu(inj)  # depth 1: z^0 = 0
        grams[0] = _gram(Z)
        for layer in range(2, depth + 1):
            gW = torch.Generator().manual_seed(derive_seed(seed, f"W{layer}"))
            W = (torch.randn(width, width, generator=gW, dtype=torch.float64) * sigma_w).to(Xt)
            Z = s * torch.relu(Z @ W.T + inj)
            del W
            grams[layer - 1] = _gram(Z)
        out.append(UntiedSample(seed=seed, width=width, sigma_w=sigma_w, grams=grams))
        del Z, inj
    return out


def random_tangent_grams(
    X: Tensor | np.ndarray,
    *,
    width: int,
    seeds: Iterable[int],
    sigma_w: float = DEQConfig.sigma_w,
    sigma_u: float = DEQConfig.sigma_u,
    sigma_a: float = DEQConfig.sigma_a,
    solver: SolverConfig | None = None,
    dtype: torch.dtype = torch.float64,
    device: torch.device | str = "cpu",
    budget_bytes: int | None = None,
) -> list[TangentSample]:
    """Empirical tangent-kernel Grams J J^T of random DEQs via monitor.tangent_gram.

    One forward and one adjoint solve per seed; only (n, m) and (n, n) matrices are formed,
    never a per-parameter Jacobian. X (n, d) -> one :class:`TangentSample` per seed.
    """
    Xt = _x(X, dtype, device)
    _check_budget(Xt.shape[0], Xt.shape[1], width, dtype, budget_bytes)
    solver = solver or default_solver(dtype)
    out = []
    for seed in seeds:
        model = _model(Xt, width, seed, sigma_w, sigma_u, sigma_a, dtype, device)
        Z, mask, fwd = equilibrium(model, Xt, solver)
        bwd: SolverResult | None = None
        gram = None
        if fwd.converged:
            V, bwd = adjoint(model, mask, solver)
            if bwd.converged:
                gram = tangent_gram(model, Xt, Z=Z, mask=mask, V=V).cpu()
        out.append(TangentSample(
            seed=seed, width=width, sigma_w=sigma_w, gram=gram,
            converged=gram is not None, forward_iterations=fwd.iterations,
            adjoint_iterations=bwd.iterations if bwd is not None else 0,
        ))  # fmt: skip
        del model, Z, mask
    return out
