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

import numpy as np

__all__ = ["predicted_losses", "rate_bounds"]


def predicted_losses(evals: np.ndarray, coeffs: np.ndarray, lr: float, steps: np.ndarray,
                     loss_factor: float = 1.0) -> np.ndarray:
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


def rate_bounds(lr: float, theta_min: float, lambda_0: float,
                loss_factor: float = 1.0) -> dict[str, float]:
    """Per-step loss factors of the slowest tangent-kernel mode and of lambda_0 alone."""
    step = loss_factor * lr
    return {"rate_bound_theta": (1.0 - step * theta_min) ** 2,
            "rate_bound_lambda0": (1.0 - step * lambda_0) ** 2}
