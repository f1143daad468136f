"""Predictions of the linearised (tangent-kernel) dynamics, to compare training against.

Around init, gradient descent on L = 1/2 ||r||^2 moves the residual as
r(t+1) = (I - eta Theta_0) r(t), so with Theta_0 = sum_k lambda_k q_k q_k^T and c_k = q_k^T r_0

    L(t) = 1/2 sum_k (1 - eta lambda_k)^(2t) c_k^2                                (E6)

(for the released sum-of-squares loss the step acts as 2 eta). Its slowest factor
(1 - eta lambda_min(Theta_0))^2 bounds the linear rate, and since Theta_0 >= Z Z^T (a Schur
product of PSD matrices is PSD) the paper's condition lambda_0 > 0 implies it is below 1:
(1 - eta lambda_0)^2 is the rate guaranteed by lambda_0 alone.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import numpy as np

__all__ = ["predicted_losses", "rate_bounds", "fit_rate", "FLOORS", "loglog_slope"]


def predicted_losses(
    evals: np.ndarray, coeffs: np.ndarray, lr: float, steps: np.ndarray, loss_factor: float = 1.0
) -> np.ndarray:
    """L(t) of the linearised dynamics at the given steps; loss_factor 2 for the sum loss.

    evals, coeffs: (n,) eigenvalues of Theta_0 and r_0 in its eigenbasis; steps (k,).
    Returns (k,) losses in the same convention as the training loss (1/2 sum or sum).
    """
    factors = 1.0 - loss_factor * lr * np.asarray(evals, float)  # (n,)
    t = np.asarray(steps, float)[:, None]
    with np.errstate(over="ignore", under="ignore"):
        per_mode = np.abs(factors)[None, :] ** (2 * t) * np.asarray(coeffs, float)[None, :] ** 2
    scale = 0.5 if loss_factor == 1.0 else 1.0
    return scale * per_mode.sum(axis=1)


def rate_bounds(
    lr: float, theta_min: float, lambda_0: float, loss_factor: float = 1.0
) -> dict[str, float]:
    """Per-step loss factors of the slowest tangent-kernel mode and of lambda_0 alone."""
    step = loss_factor * lr
    return {
        "rate_bound_theta": (1.0 - step * theta_min) ** 2,
        "rate_bound_lambda0": (1.0 - step * lambda_0) ** 2,
    }


# Below this fraction of the initial loss, round-off flattens the curve (float32 equilibria
# are accurate to ~1e-7, so the loss floors near 1e-12 of its initial value). "mixed" solves
# to the fp32 test and returns fp32 answers (overdeq.mixed), so its floor is float32's.
FLOORS = {"float64": 1e-20, "float32": 1e-9, "tf32": 1e-5, "mixed": 1e-9}


def fit_rate(
    steps: np.ndarray, losses: np.ndarray, floor: float = 1e-9
) -> tuple[float, float, int]:
    """Per-step linear convergence factor of the loss over its geometric phase.

    The phase starts once the loss is below half its initial value (past the transient of
    the fast modes) and ends where it reaches ``floor`` times the initial value (round-off;
    see FLOORS). Returns (rate, R^2 of the log-linear fit, number of points); NaN if fewer
    than 3 points.
    """
    steps, losses = np.asarray(steps, float), np.asarray(losses, float)
    ok = np.isfinite(losses) & (losses > 0)
    steps, losses = steps[ok], losses[ok]
    if len(losses) < 3:
        return math.nan, math.nan, len(losses)
    phase = (losses <= 0.5 * losses[0]) & (losses >= floor * losses[0])
    if phase.sum() < 3:
        phase = losses >= floor * losses[0]
    if phase.sum() < 3:
        return math.nan, math.nan, int(phase.sum())
    t, logl = steps[phase], np.log(losses[phase])
    slope, intercept = np.polyfit(t, logl, 1)
    pred = slope * t + intercept
    ss_tot = float(((logl - logl.mean()) ** 2).sum())
    r2 = 1.0 - float(((logl - pred) ** 2).sum()) / ss_tot if ss_tot > 0 else 1.0
    return float(math.exp(slope)), r2, int(phase.sum())


def loglog_slope(x: Iterable[float], y: Iterable[float]) -> tuple[float, float]:
    """Least-squares (slope, intercept) of log y against log x, for a power law y ~ x^slope.

    Pairs with a non-positive or non-finite member are left out; NaN with fewer than two
    pairs left or when they all share one x.
    """
    x, y = np.asarray(x, float), np.asarray(y, float)
    ok = np.isfinite(x) & np.isfinite(y) & (x > 0) & (y > 0)
    if ok.sum() < 2 or np.ptp(x[ok]) == 0:
        return math.nan, math.nan
    slope, intercept = np.polyfit(np.log(x[ok]), np.log(y[ok]), 1)
    return float(slope), float(intercept)
