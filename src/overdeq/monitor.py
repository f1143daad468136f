"""Quantities the theory says to watch during training, computed the honest way.

- lambda_min(Z Z^T): float64 ``eigvalsh`` of the (n, n) Gram -- the smallest eigenvalue, never
  an index into an unordered list (the released code's readout, kept in ``legacy_readouts``).
- ||W/sqrt(m)||_2: a warm-started power iteration on W^T W every logged step (a few
  matrix-vector products) plus an exact float64 audit now and then; never a dense
  decomposition of an m x m matrix per step.
- The empirical tangent-kernel Gram Theta = J J^T from the closed form

      Theta = Z Z^T + (A A^T) * (Z Z^T + X X^T)  [+ 2 A A^T + 1 with biases],  A = s V * D,

  with V the readout adjoint (implicit.adjoint). Only (n, n) and (n, m) matrices are formed,
  never the (n, #params) Jacobian. Its infinite-width limit is kernels.deq_tangent_kernel.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from .implicit import adjoint, equilibrium
from .model import DEQ
from .solvers import SolverConfig

__all__ = [
    "gram_lambda_min",
    "PowerNorm",
    "exact_spectral_norm",
    "legacy_readouts",
    "tangent_gram",
    "relative_movement",
]


def gram_lambda_min(Z: Tensor) -> float:
    """Smallest eigenvalue of Z Z^T in float64: Z (n, m) -> float."""
    Zd = Z.detach().double()
    return float(torch.linalg.eigvalsh(Zd @ Zd.T)[0])


class PowerNorm:
    """Warm-started power iteration for ||W||_2; the vector persists between calls.

    Each call does ``iters`` products with W^T W, starting from the last vector. For a
    slowly drifting W this tracks the top singular value closely; it is a lower bound that
    the exact audit (``exact_spectral_norm``) checks from time to time.
    """

    def __init__(self, m: int, *, seed: int = 0, iters: int = 3, burn_in: int = 100) -> None:
        g = torch.Generator().manual_seed(seed)
        v = torch.randn(m, generator=g, dtype=torch.float64)
        self.v = v / v.norm()
        self.iters = iters
        self.burn_in = burn_in  # iterations of the first call, from the random start
        self.calls = 0

    def __call__(self, W: Tensor) -> float:
        with torch.no_grad():
            v = self.v.to(device=W.device, dtype=W.dtype)
            sigma = torch.zeros((), device=W.device, dtype=W.dtype)
            for _ in range(self.iters if self.calls else max(self.iters, self.burn_in)):
                w = W @ v
                sigma = w.norm()
                v = W.T @ w
                v = v / v.norm().clamp_min(torch.finfo(W.dtype).tiny)
            self.v = v.detach()
            self.calls += 1
            return float(sigma)

    def state_dict(self) -> dict:
        return {"v": self.v.cpu(), "iters": self.iters, "calls": self.calls}

    def load_state_dict(self, state: dict) -> None:
        self.v, self.iters, self.calls = state["v"], state["iters"], state["calls"]


def exact_spectral_norm(W: Tensor) -> float:
    """||W||_2 in float64, as sqrt(lambda_max(W^T W)) by a dense symmetric eigensolver.

    A dense decomposition (O(m^3)): for audits now and then, not for every step at large m.
    The symmetric eigenvalues of the Gram are about twice as fast as an SVD and exact to
    float64 round-off for the largest singular value.
    """
    Wd = W.detach().double()
    return float(torch.linalg.eigvalsh(Wd.T @ Wd)[-1].clamp_min(0).sqrt())


def legacy_readouts(Z: Tensor, W: Tensor, m: int, max_dense: int = 4096) -> dict[str, float]:
    """What the released code logged as lambda_min and singular_max.

    It took the *last* eigenvalue of Z Z^T and the *first* of (W/sqrt m)^T (W/sqrt m) as
    returned by the general (non-symmetric) eig routine, whose order is unspecified. The
    (m, m) eig is what made the released epochs slow; above ``max_dense`` it is skipped
    (NaN), since only the Gram readout enters the comparisons.
    """
    Zd = Z.detach().double()
    lam = torch.linalg.eigvals(Zd @ Zd.T)
    out = {"lambda_min_legacy": float(lam[-1].real), "w_norm_legacy": math.nan}
    if m <= max_dense:
        Wd = W.detach().double() / math.sqrt(m)
        sing = torch.linalg.eigvals(Wd.T @ Wd)
        out["w_norm_legacy"] = math.sqrt(max(float(sing[0].real), 0.0))
    return out


def tangent_gram(
    model: DEQ,
    X: Tensor,
    *,
    cfg: SolverConfig | None = None,
    Z: Tensor | None = None,
    mask: Tensor | None = None,
    V: Tensor | None = None,
) -> Tensor:
    """Empirical tangent-kernel Gram J J^T (n, n) in float64, J = d f / d(all parameters).

    Z, mask, V may be passed in when already known (e.g. from the last training step);
    otherwise one forward and one adjoint solve with ``cfg`` compute them.
    """
    if cfg is None and (Z is None or mask is None or V is None):
        raise ValueError("tangent_gram needs cfg (a SolverConfig) unless Z, mask and V are given")
    if Z is None or mask is None:
        Z, mask, res = equilibrium(model, X, cfg)
        if not res.converged:
            raise RuntimeError(f"forward solve did not converge (residual {res.residual:.2e})")
    if V is None:
        V, res = adjoint(model, mask, cfg)
        if not res.converged:
            raise RuntimeError(f"adjoint solve did not converge (residual {res.residual:.2e})")
    Zd, Xd = Z.double(), X.double()
    A = model.scale * V.double() * mask  # (n, m)
    AA = A @ A.T
    ZZ = Zd @ Zd.T
    theta = ZZ + AA * (ZZ + Xd @ Xd.T)
    if model.b_w is not None:
        theta = theta + 2 * AA + 1
    return theta


def _frobenius(x: Tensor) -> float:
    """||x||_F with the rows' norms in x's precision and their sum in float64: within about
    1e-7 relative of a float64 norm, without a float64 copy of an (m, m) block (whose page
    faults alone cost a CPU more than the sums)."""
    rows = torch.linalg.vector_norm(x, dim=-1) if x.dim() else x.abs()
    return float(torch.linalg.vector_norm(rows.double()))


def _distance(a: Tensor, b: Tensor, rows: int = 1024) -> float:
    """||a - b||_F as :func:`_frobenius` has it, a block of rows at a time (no (m, m)
    difference: a fresh tensor of that size costs a CPU page faults at every log)."""
    if a.dim() < 2:
        return _frobenius(a - b)
    norms = [torch.linalg.vector_norm(a[i : i + rows] - b[i : i + rows], dim=-1)
             for i in range(0, a.shape[0], rows)]  # fmt: skip
    return float(torch.linalg.vector_norm(torch.cat(norms).double()))


def relative_movement(params: dict[str, Tensor], init: dict[str, Tensor]) -> dict[str, float]:
    """||theta - theta_0||_F / ||theta_0||_F per block (the lazy-training diagnostic)."""
    out = {}
    for name, p in params.items():
        p0 = init[name]
        denom = _frobenius(p0) or 1.0
        out[f"move_{name}"] = _distance(p.detach(), p0) / denom
    return out
