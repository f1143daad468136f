"""Infinite-width kernels of random DEQs and weight-untied networks (float64 throughout).

Arc-cosine kernels of a Gram matrix Lambda (Cho & Saul, NeurIPS 2009), pairwise with the
pair's diagonal entries and cos(theta) = L12 / sqrt(L11 L22):

    kappa1(Lambda) = sqrt(L11 L22) / (2 pi) (sin theta + (pi - theta) cos theta) = E[phi(u) phi(v)]
    kappa0(Lambda) = (pi - theta) / (2 pi)                                    = E[phi'(u) phi'(v)]

for (u, v) ~ N(0, Lambda), phi = ReLU. The DEQ conjugate kernel K = lim_{m->inf} Z Z^T is the
fixed point of

    Lambda = sigma_w^2 K + sigma_u^2 X X^T + sigma_b^2,    K = kappa1(Lambda),

whose diagonal is K_ii = (sigma_u^2 ||x_i||^2 + sigma_b^2) / (2 - sigma_w^2); it exists iff
sigma_w^2 < 2. A weight-untied network of depth l (z^0 = 0) has the l-th iterate from K = 0.

The DEQ tangent kernel (gradients w.r.t. W, U, a), with Sdot = kappa0(Lambda*):

    P = sigma_a^2 Sdot / (1 - sigma_w^2 Sdot),   Theta = K + P * (K + X X^T) [+ 2 P + 1].

Derivation: f = a^T z*, dz* = (I - s D W)^-1 s D (dW z* + dU x), so df/dW = A z*^T and
df/dU = A x^T with A = s (v * D), v^T = a^T (I - s D W)^-1; hence the finite-width Gram
Z Z^T + (A A^T) * (Z Z^T + X X^T) of monitor.tangent_gram. Writing Q_ij = v_i . v_j / m,
v = a + s W^T (D v) gives Q = sigma_a^2 + sigma_w^2 Q * Sdot (gradient independence), so
A A^T -> Q * Sdot = P. Biases b_w, b_u each add A A^T and b_a adds 1. Shapes: X (n, d),
kernels (n, n). Checked against Monte Carlo in tests/test_kernels.py.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import Tensor

from .model import DEQConfig, bias_variance

__all__ = [
    "kappa1",
    "kappa0",
    "deq_conjugate_kernel",
    "deq_diagonal",
    "untied_conjugate_kernels",
    "untied_conjugate_kernel",
    "deq_tangent_kernel",
    "lambda_min",
    "lambda_star",
    "KERNELS",
]

KERNELS = ("conjugate", "tangent")
SIGMA_W2_MAX = 2.0  # the DEQ kernel exists iff sigma_w^2 < 2


def _as_x(X: Tensor | np.ndarray) -> Tensor:
    """Inputs as a float64 tensor (n, d); anything else is an error that says what is wrong."""
    X = torch.as_tensor(X)
    if X.ndim != 2:
        raise ValueError(
            f"X must be a matrix (n, d) with one sample per row, got shape {tuple(X.shape)}"
        )
    if not torch.isfinite(X).all():
        raise ValueError("X contains NaN or infinite entries")
    return X.to(torch.float64)


def _check_sigma(**sigmas: float) -> None:
    for name, value in sigmas.items():
        if not (value >= 0 and math.isfinite(value)):
            raise ValueError(f"{name} must be a finite number >= 0, got {value}")


def _check_deq_sigma_w(sigma_w: float) -> None:
    if sigma_w**2 >= SIGMA_W2_MAX:
        raise ValueError(
            f"sigma_w = {sigma_w} gives sigma_w^2 = {sigma_w**2:.4g} >= 2: the DEQ kernel has no "
            "finite fixed point, since its diagonal K_ii = (sigma_u^2 ||x_i||^2 + sigma_b^2) / "
            "(2 - sigma_w^2) diverges (each iteration multiplies it by sigma_w^2 / 2 >= 1). "
            f"Use 0 <= sigma_w < sqrt(2) = {math.sqrt(2):.6f}; weight-untied networks of finite "
            "depth (untied_conjugate_kernel) have a kernel for any sigma_w."
        )


def _cosines(Lam: Tensor) -> tuple[Tensor, Tensor]:
    """(sqrt(L_ii L_jj), cos theta_ij clamped to [-1, 1], exactly 1 on the diagonal)."""
    diag = Lam.diagonal().clamp_min(0)
    norm = torch.sqrt(diag[:, None] * diag[None, :])  # (n, n)
    safe = norm > 0
    cos = torch.where(safe, Lam / torch.where(safe, norm, torch.ones_like(norm)), 0.0)
    cos = cos.clamp(-1.0, 1.0)
    cos.diagonal().fill_(1.0)
    return norm, cos


def kappa1(Lam: Tensor) -> Tensor:
    """Arc-cosine kernel of degree 1, E[relu(u) relu(v)], (u, v) ~ N(0, Lambda): (n, n) -> (n, n).

    kappa1 = sqrt(L11 L22) / (2 pi) (sin theta + (pi - theta) cos theta); the diagonal is
    exactly L_ii / 2. Rows with L_ii = 0 (a unit that never fires) give 0.
    """
    norm, cos = _cosines(Lam)
    theta = torch.arccos(cos)
    sin = torch.sqrt((1.0 - cos * cos).clamp_min(0.0))
    out = norm / (2 * math.pi) * (sin + (math.pi - theta) * cos)
    out.diagonal().copy_(Lam.diagonal().clamp_min(0) / 2)
    return out


def kappa0(Lam: Tensor) -> Tensor:
    """Arc-cosine kernel of degree 0, E[1[u > 0] 1[v > 0]] = (pi - theta) / (2 pi): (n, n) -> (n, n).

    Exactly 1/2 on the diagonal; 0 where L_ii or L_jj is 0 (relu'(0) = 0, as in torch).
    """
    norm, cos = _cosines(Lam)
    out = (math.pi - torch.arccos(cos)) / (2 * math.pi)
    out = torch.where(norm > 0, out, 0.0)
    out.diagonal().copy_(torch.where(Lam.diagonal() > 0, 0.5, 0.0))
    return out


def _injection(X: Tensor, sigma_u: float, sigma_b: float) -> Tensor:
    """sigma_u^2 X X^T + sigma_b^2: (n, d) -> (n, n)."""
    return sigma_u**2 * (X @ X.T) + sigma_b**2


def deq_diagonal(
    X: Tensor | np.ndarray,
    *,
    sigma_w: float = DEQConfig.sigma_w,
    sigma_u: float = DEQConfig.sigma_u,
    sigma_b: float = 0.0,
) -> Tensor:
    """Closed-form diagonal of the DEQ kernel, K_ii = (sigma_u^2 ||x_i||^2 + sigma_b^2) / (2 - sigma_w^2).

    From K_ii = Lambda_ii / 2 and Lambda_ii = sigma_w^2 K_ii + sigma_u^2 ||x_i||^2 + sigma_b^2.
    X (n, d) -> (n,).
    """
    X = _as_x(X)
    _check_sigma(sigma_w=sigma_w, sigma_u=sigma_u, sigma_b=sigma_b)
    _check_deq_sigma_w(sigma_w)
    return (sigma_u**2 * (X * X).sum(1) + sigma_b**2) / (2.0 - sigma_w**2)


def deq_conjugate_kernel(
    X: Tensor | np.ndarray,
    *,
    sigma_w: float = DEQConfig.sigma_w,
    sigma_u: float = DEQConfig.sigma_u,
    sigma_b: float = 0.0,
    tol: float = 1e-12,
    max_iter: int = 10_000,
) -> Tensor:
    """DEQ conjugate kernel K = lim Z Z^T: fixed point of K = kappa1(sigma_w^2 K + sigma_u^2 XX^T + sigma_b^2).

    Iterated from K = 0 with the diagonal held at its closed form (deq_diagonal), so every
    Lambda has the fixed point's diagonal and the cosines are well defined from the first
    step. The map contracts off the diagonal with factor q = sigma_w^2 / 2 (|d kappa1 / d
    L12| = kappa0 <= 1/2); iteration stops when the a-posteriori error bound
    q / (1 - q) * max|K_k+1 - K_k| is below tol * max_i K_ii. X (n, d) -> K (n, n) float64.
    """
    X = _as_x(X)
    diag = deq_diagonal(X, sigma_w=sigma_w, sigma_u=sigma_u, sigma_b=sigma_b)  # (n,)
    if not tol > 0:
        raise ValueError(f"tol must be > 0, got {tol}")
    if max_iter < 1:
        raise ValueError(f"max_iter must be >= 1, got {max_iter}")
    C = _injection(X, sigma_u, sigma_b)  # (n, n)
    q = sigma_w**2 / 2
    scale = float(diag.max()) if diag.numel() else 0.0
    K = torch.diag(diag)
    step = math.inf
    for _ in range(max_iter):
        K_new = kappa1(sigma_w**2 * K + C)
        K_new.diagonal().copy_(diag)
        step = float((K_new - K).abs().max()) if K.numel() else 0.0
        K = K_new
        if q / (1 - q) * step <= tol * max(scale, 1e-300):
            return (K + K.T) / 2
    raise RuntimeError(
        f"DEQ kernel iteration did not converge in {max_iter} iterations (last change {step:.3e}, "
        f"contraction factor sigma_w^2/2 = {q:.4f}); raise max_iter (about "
        f"{math.ceil(math.log(tol * (1 - q)) / math.log(max(q, 1e-300)))} are needed from K = 0) "
        "or loosen tol"
    )


def untied_conjugate_kernels(
    X: Tensor | np.ndarray,
    depth: int,
    *,
    sigma_w: float = DEQConfig.sigma_w,
    sigma_u: float = DEQConfig.sigma_u,
    sigma_b: float = 0.0,
) -> Tensor:
    """Kernels of weight-untied networks at every depth 1..depth: (depth, n, n) float64.

    K^0 = 0, K^l = kappa1(sigma_w^2 K^(l-1) + sigma_u^2 X X^T + sigma_b^2) (z^0 = 0, so depth 1
    is kappa1(sigma_u^2 XX^T + sigma_b^2)). Any sigma_w is allowed at finite depth.
    """
    X = _as_x(X)
    _check_sigma(sigma_w=sigma_w, sigma_u=sigma_u, sigma_b=sigma_b)
    if depth < 1:
        raise ValueError(f"depth must be >= 1, got {depth}")
    C = _injection(X, sigma_u, sigma_b)
    out = torch.empty(depth, *C.shape, dtype=torch.float64, device=C.device)
    K = torch.zeros_like(C)
    for layer in range(depth):
        K = kappa1(sigma_w**2 * K + C)
        out[layer] = K
    return out


def untied_conjugate_kernel(X: Tensor | np.ndarray, depth: int, **sigmas: float) -> Tensor:
    """Kernel of a weight-untied network of depth l: the l-th iterate from K = 0, (n, n).

    ``sigmas``: sigma_w, sigma_u, sigma_b as for :func:`untied_conjugate_kernels`.
    """
    return untied_conjugate_kernels(X, depth, **sigmas)[-1]


def deq_tangent_kernel(
    X: Tensor | np.ndarray,
    *,
    sigma_w: float = DEQConfig.sigma_w,
    sigma_u: float = DEQConfig.sigma_u,
    sigma_a: float = DEQConfig.sigma_a,
    sigma_b: float | None = None,
    biases: bool = False,
    K: Tensor | None = None,
) -> Tensor:
    """DEQ tangent kernel Theta = K + P * (K + XX^T) [+ 2P + 1], P = sigma_a^2 Sdot / (1 - sigma_w^2 Sdot).

    Sdot = kappa0(Lambda*) at the fixed point Lambda* = sigma_w^2 K + sigma_u^2 XX^T + sigma_b^2.
    ``biases=True`` adds the trained biases b_w, b_u (2P) and b_a (1); their variance enters
    Lambda through sigma_b (the closed form assumes Gaussian biases). ``sigma_b=None`` takes
    the model's: 0 without biases, and with them the variance of ``DEQ(biases=True)``'s
    uniform biases at infinite width, sigma_b^2 = 1/(3d) (model.bias_variance). ``K`` may be
    passed if already computed (for the same sigma_b). X (n, d) -> Theta (n, n) float64; lim
    of monitor.tangent_gram.
    """
    X = _as_x(X)
    sigma_b = _model_sigma_b(X, biases) if sigma_b is None else sigma_b
    _check_sigma(sigma_a=sigma_a)
    if K is None:
        K = deq_conjugate_kernel(X, sigma_w=sigma_w, sigma_u=sigma_u, sigma_b=sigma_b)
    else:
        _check_deq_sigma_w(sigma_w)
        K = K.to(torch.float64)
        if K.shape != (X.shape[0], X.shape[0]):
            raise ValueError(
                f"K must be ({X.shape[0]}, {X.shape[0]}) for X {tuple(X.shape)}, "
                f"got {tuple(K.shape)}"
            )
    XX = X @ X.T
    Sdot = kappa0(sigma_w**2 * K + sigma_u**2 * XX + sigma_b**2)  # (n, n), <= 1/2
    P = sigma_a**2 * Sdot / (1.0 - sigma_w**2 * Sdot)
    theta = K + P * (K + XX)
    if biases:
        theta = theta + 2 * P + 1
    return (theta + theta.T) / 2


def _model_sigma_b(X: Tensor, biases: bool) -> float:
    """sigma_b of ``DEQ(biases=biases)`` at infinite width for inputs X (n, d)."""
    return math.sqrt(bias_variance(X.shape[1])) if biases else 0.0


def lambda_min(G: Tensor) -> float:
    """Smallest eigenvalue of a symmetric matrix (float64 eigvalsh): (n, n) -> float."""
    Gd = G.detach().to(torch.float64)
    return float(torch.linalg.eigvalsh((Gd + Gd.T) / 2)[0])


def lambda_star(
    X: Tensor | np.ndarray,
    *,
    kernel: str = "conjugate",
    sigma_w: float = DEQConfig.sigma_w,
    sigma_u: float = DEQConfig.sigma_u,
    sigma_a: float = DEQConfig.sigma_a,
    sigma_b: float | None = None,
    biases: bool = False,
) -> float:
    """lambda_* = lambda_min(K) (``kernel="conjugate"``) or lambda_min(Theta) (``"tangent"``).

    The theory's target for lambda_0 = lambda_min(Z(0) Z(0)^T). ``sigma_b=None``: the
    model's, as in :func:`deq_tangent_kernel`. X (n, d) -> float.
    """
    if kernel not in KERNELS:
        raise ValueError(f"unknown kernel {kernel!r}; valid kernels: {list(KERNELS)}")
    sigma_b = _model_sigma_b(_as_x(X), biases) if sigma_b is None else sigma_b
    K = deq_conjugate_kernel(X, sigma_w=sigma_w, sigma_u=sigma_u, sigma_b=sigma_b)
    if kernel == "conjugate":
        return lambda_min(K)
    return lambda_min(
        deq_tangent_kernel(
            X,
            sigma_w=sigma_w,
            sigma_u=sigma_u,
            sigma_a=sigma_a,
            sigma_b=sigma_b,
            biases=biases,
            K=K,
        )
    )
