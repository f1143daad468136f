"""Fixed-point solvers for batched equilibria z = f(z).

Every solver takes a map ``f`` acting on a batch of states (n, m) -- one row per sample --
and returns a frozen :class:`SolverResult`. Solvers are selected by name through
:data:`SOLVERS` (``get_solver("picard")``), so a string from the config or the CLI picks one.

Convergence is judged on relative residuals ``||f(z) - z|| / (eps + ||f(z)||)``, either per
sample (the largest over the batch must meet ``tol``) or globally over the whole batch (the
released code's criterion). To avoid a host synchronisation every iteration, residuals are
kept on the device and only inspected at scheduled checks; after the first check the next
one is scheduled where the observed geometric rate predicts convergence.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

__all__ = ["SolverResult", "SolverConfig", "SOLVERS", "get_solver", "picard", "anderson"]

Map = Callable[[Tensor], Tensor]
_EPS = 1e-12  # keeps relative residuals finite when f(z) = 0 (a fully inactive sample)


@dataclass(frozen=True)
class SolverResult:
    """What a solve returns: the solution and an honest account of how it got there."""

    solution: Tensor  # (n, m) the last iterate f(z_k)
    converged: bool  # residual criterion met within max_iter
    iterations: int  # number of f evaluations
    residual: float  # final criterion value (max per-sample or global relative residual)
    residuals: Tensor  # (iterations,) criterion value after each iteration, on the host
    per_sample: Tensor  # (n,) final per-sample relative residuals, on the host


@dataclass(frozen=True)
class SolverConfig:
    """Options shared by all solvers; ``name`` selects one from :data:`SOLVERS`."""

    name: str = "picard"
    tol: float = 1e-6
    max_iter: int = 200
    criterion: str = "per_sample"  # "per_sample" (max over rows) or "global" (whole batch)
    global_eps: float = 1e-5  # the released code's denominator offset for "global"
    history: int = 5  # Anderson memory
    ridge: float = 1e-4  # Anderson regulariser
    ridge_mode: str = "scaled"  # "scaled": ridge * mean diag of the Gram; "absolute": ridge
    beta: float = 1.0  # Anderson mixing
    first_check: int = 2  # iterations before the first convergence check

    def __post_init__(self) -> None:
        if self.name not in SOLVERS:
            raise ValueError(f"unknown solver {self.name!r}; valid solvers: {sorted(SOLVERS)}")
        if self.criterion not in ("per_sample", "global"):
            raise ValueError(f"criterion must be 'per_sample' or 'global', got {self.criterion!r}")
        if self.ridge_mode not in ("scaled", "absolute"):
            raise ValueError(f"ridge_mode must be 'scaled' or 'absolute', got {self.ridge_mode!r}")
        if not self.tol > 0:
            raise ValueError(f"tol must be > 0, got {self.tol}")
        if self.max_iter < 1:
            raise ValueError(f"max_iter must be >= 1, got {self.max_iter}")
        if self.history < 2:
            raise ValueError(
                f"history must be >= 2, got {self.history}: Anderson mixes the last `history` "
                "iterates and needs at least two (history 1 would be plain Picard iteration; "
                "use the picard solver for that)"
            )


def _residuals(fz: Tensor, z: Tensor, cfg: SolverConfig) -> tuple[Tensor, Tensor]:
    """(criterion value as a 0-d device tensor, per-sample relative residuals (n,))."""
    diff = (fz - z).flatten(1)
    fzf = fz.flatten(1)
    per_sample = diff.norm(dim=1) / (fzf.norm(dim=1) + _EPS)
    if cfg.criterion == "global":
        crit = diff.norm() / (cfg.global_eps + fzf.norm())
    else:
        crit = per_sample.max()
    return crit, per_sample


class _Schedule:
    """Decides when to look at the residuals (each look is one host synchronisation)."""

    def __init__(self, cfg: SolverConfig, device: torch.device) -> None:
        self.cfg = cfg
        self.sync_free = device.type != "cpu"
        self.next_check = min(cfg.first_check, cfg.max_iter) if self.sync_free else 1

    def due(self, k: int) -> bool:
        return k >= self.next_check or k >= self.cfg.max_iter

    def plan(self, k: int, trace: list[Tensor]) -> None:
        """After a check at iteration k that did not converge, schedule the next one."""
        if not self.sync_free:
            self.next_check = k + 1
            return
        steps = 1
        if len(trace) >= 2:
            r1, r0 = float(trace[-1]), float(trace[-2])
            if 0.0 < r1 < r0:
                rate = r1 / r0
                steps = math.ceil(math.log(self.cfg.tol / r1) / math.log(rate))
        self.next_check = min(k + max(1, min(steps, 16)), self.cfg.max_iter)


def _finish(z: Tensor, trace: list[Tensor], per_sample: Tensor, cfg: SolverConfig) -> SolverResult:
    residuals = torch.stack(trace).double().cpu() if trace else torch.zeros(0, dtype=torch.float64)
    final = float(residuals[-1]) if len(residuals) else math.inf
    return SolverResult(
        solution=z,
        converged=bool(final < cfg.tol),
        iterations=len(trace),
        residual=final,
        residuals=residuals,
        per_sample=per_sample.double().cpu(),
    )


def picard(f: Map, z0: Tensor, cfg: SolverConfig) -> SolverResult:
    """Plain fixed-point iteration z <- f(z); converges at the contraction factor of f."""
    schedule = _Schedule(cfg, z0.device)
    z, trace = z0, []
    per_sample = torch.full((z0.shape[0],), math.inf)
    for k in range(1, cfg.max_iter + 1):
        fz = f(z)
        crit, per_sample = _residuals(fz, z, cfg)
        trace.append(crit)
        z = fz
        if schedule.due(k):
            if float(crit) < cfg.tol:
                break
            schedule.plan(k, trace)
    return _finish(z, trace, per_sample, cfg)


def anderson(f: Map, z0: Tensor, cfg: SolverConfig) -> SolverResult:
    """Anderson acceleration (type II), batched over samples.

    For each sample it mixes the last ``history`` iterates with weights alpha that minimise
    ||sum_j alpha_j g_j|| subject to sum_j alpha_j = 1 (g_j = f(x_j) - x_j), with a ridge on the
    Gram matrix. ``ridge_mode="scaled"`` multiplies the ridge by the mean diagonal of that
    Gram (scale-free); ``"absolute"`` adds ``ridge`` as is (the released code's 1e-4).
    Walker & Ni, SIAM J. Numer. Anal. 49 (2011).
    """
    n = z0.shape[0]
    shape = z0.shape
    dim = z0[0].numel()
    hist = cfg.history
    xs = z0.new_zeros(n, hist, dim)
    fs = z0.new_zeros(n, hist, dim)
    x0 = z0.reshape(n, dim)
    f0 = f(z0).reshape(n, dim)
    xs[:, 0], fs[:, 0] = x0, f0
    crit, per_sample = _residuals(f0, x0, cfg)
    trace = [crit]
    z = f0.reshape(shape)
    if cfg.max_iter == 1 or (not _Schedule(cfg, z0.device).sync_free and float(crit) < cfg.tol):
        return _finish(z, trace, per_sample, cfg)
    xs[:, 1] = f0
    fs[:, 1] = f(f0.reshape(shape)).reshape(n, dim)
    crit, per_sample = _residuals(fs[:, 1], xs[:, 1], cfg)
    trace.append(crit)
    z = fs[:, 1].reshape(shape)
    schedule = _Schedule(cfg, z0.device)
    schedule.next_check = max(schedule.next_check, 2)
    if schedule.due(2):
        if float(crit) < cfg.tol:
            return _finish(z, trace, per_sample, cfg)
        schedule.plan(2, trace)

    bordered = z0.new_zeros(n, hist + 1, hist + 1)
    bordered[:, 0, 1:] = 1
    bordered[:, 1:, 0] = 1
    rhs = z0.new_zeros(n, hist + 1, 1)
    rhs[:, 0] = 1
    eye = torch.eye(hist, dtype=z0.dtype, device=z0.device)
    for k in range(2, cfg.max_iter):
        size = min(k, hist)
        g = fs[:, :size] - xs[:, :size]  # (n, size, dim) residual history
        gram = torch.bmm(g, g.transpose(1, 2))  # (n, size, size)
        if cfg.ridge_mode == "scaled":
            scale = gram.diagonal(dim1=1, dim2=2).mean(dim=1).clamp_min(_EPS)[:, None, None]
        else:
            scale = 1.0
        bordered[:, 1 : size + 1, 1 : size + 1] = gram + cfg.ridge * scale * eye[:size, :size]
        alpha = torch.linalg.solve(bordered[:, : size + 1, : size + 1], rhs[:, : size + 1])[
            :, 1 : size + 1, 0
        ]  # (n, size)
        mixed = cfg.beta * (alpha[:, None] @ fs[:, :size])[:, 0]
        if cfg.beta != 1.0:
            mixed = mixed + (1 - cfg.beta) * (alpha[:, None] @ xs[:, :size])[:, 0]
        slot = k % hist
        xs[:, slot] = mixed
        fs[:, slot] = f(mixed.reshape(shape)).reshape(n, dim)
        crit, per_sample = _residuals(fs[:, slot], xs[:, slot], cfg)
        trace.append(crit)
        z = fs[:, slot].reshape(shape)
        if schedule.due(k + 1):
            if float(crit) < cfg.tol:
                break
            schedule.plan(k + 1, trace)
    return _finish(z, trace, per_sample, cfg)


SOLVERS: dict[str, Callable[[Map, Tensor, SolverConfig], SolverResult]] = {
    "picard": picard,
    "anderson": anderson,
}


def get_solver(name: str) -> Callable[[Map, Tensor, SolverConfig], SolverResult]:
    """Look a solver up by name; an unknown name lists the valid ones."""
    try:
        return SOLVERS[name]
    except KeyError:
        raise ValueError(f"unknown solver {name!r}; valid solvers: {sorted(SOLVERS)}") from None


def solve(f: Map, z0: Tensor, cfg: SolverConfig) -> SolverResult:
    """Run the solver that ``cfg.name`` selects."""
    return get_solver(cfg.name)(f, z0, cfg)
