"""Infinite-width kernels (overdeq.kernels), each checked by an independent route:
Monte Carlo over Gaussians, exact special cases, scalar fixed points, and random DEQs at
moderate width (tolerances are about twice the observed seed-to-seed spread)."""

from __future__ import annotations

import math

import pytest
import torch

from overdeq.kernels import (
    deq_conjugate_kernel,
    deq_diagonal,
    deq_tangent_kernel,
    kappa0,
    kappa1,
    lambda_min,
    lambda_star,
    untied_conjugate_kernel,
    untied_conjugate_kernels,
)
from overdeq.model import DEQ, DEQConfig, bias_variance
from overdeq.monitor import tangent_gram
from overdeq.random_deq import random_deq_grams, random_tangent_grams
from overdeq.seeding import model_seeds
from overdeq.solvers import SolverConfig

from problems import unit_rows

F64 = torch.float64


def rel_fro(A: torch.Tensor, B: torch.Tensor) -> float:
    return float((A - B).norm() / B.norm())


# --- arc-cosine kernels -------------------------------------------------------------------


@pytest.mark.parametrize("cos", [-0.9, -0.3, 0.0, 0.5, 0.95])
def test_arc_cosine_kernels_match_gaussian_monte_carlo(cos):
    L11, L22 = 2.0, 0.5
    L12 = cos * math.sqrt(L11 * L22)
    Lam = torch.tensor([[L11, L12], [L12, L22]], dtype=F64)
    g = torch.Generator().manual_seed(1)
    uv = torch.randn(1_000_000, 2, generator=g, dtype=F64) @ torch.linalg.cholesky(Lam).T
    prod = torch.relu(uv[:, 0]) * torch.relu(uv[:, 1])
    step = ((uv[:, 0] > 0) & (uv[:, 1] > 0)).to(F64)
    for est, mc in ((kappa1(Lam), prod), (kappa0(Lam), step)):
        se = float(mc.std()) / 1000.0  # standard error of the mean of 10^6 draws
        assert abs(float(est[0, 1]) - float(mc.mean())) < 5 * se + 1e-12
        assert torch.equal(est, est.T)


def test_arc_cosine_special_cases_are_exact():
    # orthogonal: theta = pi/2; antiparallel: theta = pi; diagonal: theta = 0
    Lam = torch.tensor([[4.0, 0.0, -2.0], [0.0, 1.0, 0.0], [-2.0, 0.0, 1.0]], dtype=F64)
    k1, k0 = kappa1(Lam), kappa0(Lam)
    assert torch.equal(k1.diagonal(), Lam.diagonal() / 2)
    assert torch.equal(k0.diagonal(), torch.full((3,), 0.5, dtype=F64))
    assert k1[0, 1] == pytest.approx(2.0 / (2 * math.pi), rel=1e-15)
    assert k0[0, 1] == pytest.approx(0.25, rel=1e-15)
    assert abs(float(k1[0, 2])) < 1e-15 and abs(float(k0[0, 2])) < 1e-15


def test_arc_cosine_clamps_rounding_past_parallel():
    # |L12| slightly above sqrt(L11 L22) by rounding must not produce NaN
    Lam = torch.tensor([[1.0, 1.0 + 4e-16], [1.0 + 4e-16, 1.0]], dtype=F64)
    assert torch.isfinite(kappa1(Lam)).all() and torch.isfinite(kappa0(Lam)).all()
    assert float(kappa1(Lam)[0, 1]) == pytest.approx(0.5, abs=1e-12)
    assert float(kappa0(Lam)[0, 1]) == pytest.approx(0.5, abs=1e-7)
    assert float(kappa0(-Lam.abs() + 2 * torch.eye(2, dtype=F64))[0, 1]) == pytest.approx(
        0, abs=1e-7
    )


# --- DEQ conjugate kernel -------------------------------------------------------------------


@pytest.mark.parametrize("sigma_w,sigma_b", [(0.4, 0.0), (0.9, 0.0), (1.3, 0.5)])
def test_deq_kernel_is_a_fixed_point_with_closed_form_diagonal(sigma_w, sigma_b):
    X = unit_rows(12, 5) * torch.linspace(0.5, 2.0, 12, dtype=F64)[:, None]  # mixed norms
    K = deq_conjugate_kernel(X, sigma_w=sigma_w, sigma_u=1.3, sigma_b=sigma_b)
    Lam = sigma_w**2 * K + 1.3**2 * X @ X.T + sigma_b**2
    # the full map (its diagonal from kappa1 itself, not the closed form) leaves K unchanged
    assert float((kappa1(Lam) - K).abs().max()) < 1e-11 * float(K.abs().max())
    expected = (1.3**2 * (X * X).sum(1) + sigma_b**2) / (2 - sigma_w**2)
    assert torch.allclose(K.diagonal(), expected, rtol=1e-14, atol=0)
    assert torch.allclose(
        deq_diagonal(X, sigma_w=sigma_w, sigma_u=1.3, sigma_b=sigma_b), expected, rtol=1e-15, atol=0
    )


def test_deq_kernel_for_orthonormal_inputs_solves_the_scalar_equation():
    # rows of the identity: K = (k - c) I + c 11^T, with k = 1/(2 - s^2) and c the fixed point
    # of c = kappa1 for two inputs at variance s^2 k + 1 and covariance s^2 c (plain math).
    sigma_w, n = 0.8, 7
    k = 1 / (2 - sigma_w**2)
    L = sigma_w**2 * k + 1
    c = 0.0
    for _ in range(200):
        cos = sigma_w**2 * c / L
        theta = math.acos(cos)
        c = L / (2 * math.pi) * (math.sin(theta) + (math.pi - theta) * cos)
    K = deq_conjugate_kernel(torch.eye(n, dtype=F64), sigma_w=sigma_w)
    off = K[~torch.eye(n, dtype=torch.bool)]
    assert torch.allclose(off, torch.full_like(off, c), rtol=1e-12, atol=0)
    assert lambda_min(K) == pytest.approx(k - c, rel=1e-12)


def test_deq_kernel_is_symmetric_and_positive_definite_for_distinct_inputs():
    X = unit_rows(40, 6, seed=3)
    K = deq_conjugate_kernel(X)
    assert torch.equal(K, K.T)
    assert lambda_min(K) > 1e-4
    # a repeated input makes it singular: the check above is not vacuous
    Xdup = torch.cat([X, X[:1]])
    assert abs(lambda_min(deq_conjugate_kernel(Xdup))) < 1e-12


def test_sigma_w_squared_at_least_two_has_no_kernel():
    X = unit_rows(4, 3)
    for sigma_w in (math.sqrt(2), 1.5):
        with pytest.raises(ValueError, match=r"sigma_w\^2 .* >= 2.*sqrt\(2\)"):
            deq_conjugate_kernel(X, sigma_w=sigma_w)
        with pytest.raises(ValueError, match="no finite fixed point"):
            deq_tangent_kernel(X, sigma_w=sigma_w)
        with pytest.raises(ValueError, match="no finite fixed point"):
            lambda_star(X, sigma_w=sigma_w)
    # finite depth is fine, and its diagonal grows without bound like (sigma_w^2/2)^l
    Kl = untied_conjugate_kernels(X, 40, sigma_w=1.5)
    assert torch.isfinite(Kl).all() and float(Kl[-1, 0, 0]) > 10


def test_kernel_iteration_reports_non_convergence():
    with pytest.raises(RuntimeError, match="did not converge in 3 iterations"):
        deq_conjugate_kernel(unit_rows(5, 3), sigma_w=1.3, max_iter=3)


def test_bad_input_shape_is_explained():
    with pytest.raises(ValueError, match=r"matrix \(n, d\)"):
        deq_conjugate_kernel(torch.ones(5, dtype=F64))


# --- untied networks ------------------------------------------------------------------------


def test_untied_depth_one_is_the_arc_cosine_kernel_of_the_inputs():
    # orthonormal inputs: diagonal sigma_u^2/2, off-diagonal sigma_u^2/(2 pi)
    K1 = untied_conjugate_kernel(torch.eye(4, dtype=F64), 1, sigma_u=2.0)
    expected = torch.full((4, 4), 4.0 / (2 * math.pi), dtype=F64)
    expected.fill_diagonal_(2.0)
    assert torch.allclose(K1, expected, rtol=1e-14, atol=0)


@pytest.mark.parametrize("sigma_w", [0.4, 0.9, 1.3])
def test_untied_kernels_approach_the_deq_kernel_geometrically(sigma_w):
    X = unit_rows(10, 4, seed=2)
    K = deq_conjugate_kernel(X, sigma_w=sigma_w)
    Kl = untied_conjugate_kernels(X, 60, sigma_w=sigma_w)
    errs = [float((k - K).abs().max()) for k in Kl]
    q = sigma_w**2 / 2
    # above K's own accuracy (1e-12), each layer shrinks the error by at least sigma_w^2 / 2
    usable = [i for i in range(len(errs) - 1) if errs[i + 1] > 1e-8]
    assert len(usable) >= 5
    for i in usable:
        assert errs[i + 1] <= q * errs[i] * (1 + 1e-3)
    assert errs[-1] < 1e-9 * float(K.abs().max()) or sigma_w == 1.3


# --- finite width (Monte Carlo) ---------------------------------------------------------------


@pytest.mark.parametrize("sigma_w", [0.4, 0.9])
def test_conjugate_kernel_matches_random_deqs_at_moderate_width(sigma_w):
    X = unit_rows(10, 6)
    K = deq_conjugate_kernel(X, sigma_w=sigma_w)
    samples = random_deq_grams(X, width=2000, seeds=range(4), sigma_w=sigma_w)
    assert all(s.converged for s in samples)
    G = torch.stack([s.gram for s in samples]).mean(0)
    assert rel_fro(G, K) < 0.06  # observed 0.02-0.03; depth-1 kernel is 0.09 / 0.46 away
    lams = torch.tensor([lambda_min(s.gram) for s in samples])
    lam_star = lambda_min(K)
    assert abs(float(lams.mean()) / lam_star - 1) < 0.05
    assert float((lams / lam_star - 1).abs().max()) < 0.2


def test_finite_width_error_decays_like_inverse_square_root_of_width():
    X = unit_rows(20, 8, seed=4)
    K = deq_conjugate_kernel(X)
    widths = [125, 250, 500, 1000, 2000]
    errs = []
    for m in widths:
        grams = [s.gram for s in random_deq_grams(X, width=m, seeds=range(3))]
        errs.append(sum(float((G - K).norm()) for G in grams) / len(grams))
    lx, ly = torch.log(torch.tensor(widths, dtype=F64)), torch.log(torch.tensor(errs))
    slope = float(((lx - lx.mean()) * (ly - ly.mean())).sum() / ((lx - lx.mean()) ** 2).sum())
    assert -0.75 <= slope <= -0.3, f"slope {slope:.3f}, errors {errs}"


def test_tangent_kernel_matches_the_empirical_one_at_moderate_width():
    # sigma_w = 0.9 makes the 1/(1 - sigma_w^2 Sdot) factor large (up to 1.68): dropping it
    # moves Theta by more than 0.2 in relative Frobenius norm
    X, sigma_w = unit_rows(10, 6), 0.9
    T = deq_tangent_kernel(X, sigma_w=sigma_w)
    samples = random_tangent_grams(X, width=2000, seeds=range(6), sigma_w=sigma_w)
    assert all(s.converged for s in samples)
    Tm = torch.stack([s.gram for s in samples]).mean(0)
    assert rel_fro(Tm, T) < 0.08  # observed 0.03-0.05
    assert abs(lambda_min(Tm) / lambda_min(T) - 1) < 0.1


def test_tangent_kernel_with_trained_gaussian_biases():
    X, sigma_w, sigma_b, m = unit_rows(10, 6), 0.9, 0.5, 2000
    T = deq_tangent_kernel(X, sigma_w=sigma_w, sigma_b=sigma_b, biases=True)
    grams = []
    for seed in range(4):
        model = DEQ(
            DEQConfig(d=6, width=m, sigma_w=sigma_w, biases=True),
            seeds=model_seeds(seed),
            dtype=F64,
        )
        g = torch.Generator().manual_seed(1000 + seed)
        with torch.no_grad():  # Gaussian biases with Var(b_w + b_u) = sigma_b^2
            model.b_w.copy_(torch.randn(m, generator=g, dtype=F64) * sigma_b / math.sqrt(2))
            model.b_u.copy_(torch.randn(m, generator=g, dtype=F64) * sigma_b / math.sqrt(2))
        grams.append(tangent_gram(model, X, cfg=SolverConfig(tol=1e-10, max_iter=1000)))
    Tm = torch.stack(grams).mean(0)
    assert rel_fro(Tm, T) < 0.06  # observed 0.026; ignoring sigma_b in Lambda gives 0.10
    assert rel_fro(Tm, deq_tangent_kernel(X, sigma_w=sigma_w, sigma_b=0.0, biases=True)) > 0.06


def test_bias_variance_is_that_of_the_drawn_biases():
    d, m = 3, 4000
    model = DEQ(DEQConfig(d=d, width=m, biases=True), dtype=F64)
    drawn = float((model.b_w + model.b_u).detach().var())
    assert drawn == pytest.approx(bias_variance(d, m), rel=0.06)
    assert bias_variance(d) == pytest.approx(1 / (3 * d))  # the infinite-width limit


def test_tangent_kernel_defaults_to_the_biases_the_model_draws():
    """biases=True without sigma_b takes Var(b_w + b_u) of DEQ(biases=True): at small d the
    uniform b_u ~ U(-1/sqrt(d), 1/sqrt(d)) is a large part of the pre-activation."""
    X, d, m = unit_rows(8, 2, seed=3), 2, 1000
    cfg = SolverConfig(tol=1e-10, max_iter=1000)
    grams = [
        tangent_gram(
            DEQ(DEQConfig(d=d, width=m, biases=True), seeds=model_seeds(s), dtype=F64), X, cfg=cfg
        )
        for s in range(6)
    ]
    Tm = torch.stack(grams).mean(0)
    now = rel_fro(Tm, deq_tangent_kernel(X, biases=True))
    before = rel_fro(Tm, deq_tangent_kernel(X, biases=True, sigma_b=0.0))
    assert now < 0.03  # observed 0.010-0.019 over five input draws
    assert before > 0.04 and before > 2 * now  # observed 0.049-0.059
    assert deq_tangent_kernel(X, biases=True).equal(
        deq_tangent_kernel(X, biases=True, sigma_b=math.sqrt(bias_variance(d)))
    )
    assert deq_tangent_kernel(X).equal(deq_tangent_kernel(X, sigma_b=0.0))  # no biases: 0


def test_tangent_kernel_dominates_the_conjugate_kernel():
    # Theta - K = P * (K + XX^T) is a Schur product of PSD matrices (P = sum of Hadamard
    # powers of Sdot), so lambda_min(Theta) >= lambda_min(K)
    X = unit_rows(30, 5, seed=7)
    for sigma_w in (0.2, 0.8, 1.3):
        lk = lambda_star(X, sigma_w=sigma_w)
        lt = lambda_star(X, sigma_w=sigma_w, kernel="tangent")
        assert lt >= lk > 0
        assert lk == pytest.approx(
            float(torch.linalg.eigvalsh(deq_conjugate_kernel(X, sigma_w=sigma_w))[0]), rel=1e-12
        )
    with pytest.raises(ValueError, match="valid kernels"):
        lambda_star(X, kernel="ntk")
