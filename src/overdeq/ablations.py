"""E7 ablation job: the gradient error of the released solver tolerance.

At initialisation, in float64, compare the gradient of the training loss computed

- exactly: the implicit adjoint with Picard at tolerance 1e-12 (the reference), with
- the released algorithm (Anderson, global relative residual, extra layer application,
  hook-based backward) at a ladder of tolerances, and
- our exact method (warm-start-free Picard, per-sample residual) at the same tolerances,

block by block (W, U, a and the biases) as ||g - g*|| / ||g*||. The released code trains
with tolerance 1e-2; this job says what that costs in gradient accuracy.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import torch

from .config import LEGACY_SOLVER
from .data import Dataset
from .implicit import SolveStats, deq_output, released_output
from .model import DEQ, DEQConfig
from .seeding import model_seeds
from .solvers import SolverConfig

__all__ = ["gradient_error_rows", "TOLS", "REFERENCE_SOLVER"]

TOLS = (1e-1, 1e-2, 1e-3, 1e-4, 1e-6, 1e-8)  # the ladder of solver tolerances compared
REFERENCE_SOLVER = SolverConfig(name="picard", tol=1e-12, max_iter=5000)  # the exact gradient


def _grads(model: DEQ) -> dict[str, torch.Tensor]:
    return {k: p.grad.detach().clone() for k, p in model.named_parameters()}


def gradient_method_output(model, X, method: str, tol: float, stats: SolveStats):
    """The outputs whose backward gives E7's gradient of ``method`` at solver tolerance
    ``tol``: ``released`` (the released Anderson solver and hook, as released but for the
    tolerance) or ``exact`` (Picard and the exact adjoint)."""
    if method == "released":
        solver = replace(LEGACY_SOLVER, tol=tol, max_iter=500)
        return released_output(model, X, forward=solver, backward=solver, stats=stats)
    solver = SolverConfig(name="picard", tol=tol, max_iter=5000)
    return deq_output(model, X, forward=solver, backward=solver, stats=stats)


def gradient_error_rows(
    dataset: Dataset,
    *,
    width: int,
    seed: int = 0,
    sigma_w: float = DEQConfig.sigma_w,
    tols: tuple[float, ...] = TOLS,
    biases: bool = True,
) -> list[dict[str, Any]]:
    """Rows (method, tol, block, rel_error, fwd_iters, bwd_iters) at the initial weights."""
    X, y = dataset.tensors(torch.float64)
    cfg = DEQConfig(d=dataset.d, width=width, sigma_w=sigma_w, biases=biases)
    model = DEQ(cfg, seeds=model_seeds(seed), dtype=torch.float64)

    def loss_of(out: torch.Tensor) -> torch.Tensor:
        return ((out - y) ** 2).sum()  # the released sum-of-squares loss

    model.zero_grad()
    loss_of(deq_output(model, X, forward=REFERENCE_SOLVER, backward=REFERENCE_SOLVER)).backward()
    reference = _grads(model)

    rows = []
    for tol in tols:
        for method in ("released", "exact"):
            stats = SolveStats()
            model.zero_grad()
            loss_of(gradient_method_output(model, X, method, tol, stats)).backward()
            grads = _grads(model)
            total_err = sum(float((grads[k] - reference[k]).norm() ** 2) for k in grads) ** 0.5
            total_ref = sum(float(reference[k].norm() ** 2) for k in grads) ** 0.5
            blocks = {
                k: float((grads[k] - reference[k]).norm() / reference[k].norm()) for k in grads
            }
            blocks["all"] = total_err / total_ref
            for block, err in blocks.items():
                rows.append(
                    {
                        "method": method,
                        "tol": tol,
                        "block": block,
                        "rel_error": err,
                        "fwd_iters": stats.forward.iterations,
                        "bwd_iters": stats.backward.iterations,
                        "width": width,
                        "n": dataset.n,
                        "dataset": dataset.name,
                        "seed": seed,
                    }
                )
    return rows
