"""Finite-width sampling (overdeq.random_deq): seeding, honest convergence reports, memory
checks, and agreement with direct computations on an explicitly built model."""

from __future__ import annotations

import math

import pytest
import torch

from overdeq.kernels import untied_conjugate_kernels
from overdeq.model import DEQ, DEQConfig
from overdeq.monitor import exact_spectral_norm, tangent_gram
from overdeq.random_deq import (
    random_deq_grams,
    random_tangent_grams,
    untied_grams,
    working_set_bytes,
)
from overdeq.seeding import model_seeds
from overdeq.solvers import SolverConfig

from problems import unit_rows

F64 = torch.float64


def test_deq_gram_is_the_gram_of_the_unrolled_fixed_point():
    X, m = unit_rows(6, 4), 300
    (sample,) = random_deq_grams(X, width=m, seeds=[5], w_norm="exact")
    model = DEQ(DEQConfig(d=4, width=m), seeds=model_seeds(5), dtype=F64)
    Z = torch.zeros(6, m, dtype=F64)
    with torch.no_grad():
        inj = model.input_injection(X)
        for _ in range(200):  # contraction factor ~0.8: 200 steps is far below 1e-12
            Z = model.layer(Z, inj)
    assert sample.converged and sample.iterations < 100
    assert torch.allclose(sample.gram, Z @ Z.T, rtol=0, atol=1e-9)
    assert sample.w_norm == pytest.approx(exact_spectral_norm(model.W) / math.sqrt(m), rel=1e-12)
    assert sample.feature_norm == pytest.approx(float(Z.norm(dim=1).max()), rel=1e-8)


def test_seeds_reproduce_and_differ():
    X = unit_rows(5, 3)
    a, b = random_deq_grams(X, width=200, seeds=[1, 2])
    (a2,) = random_deq_grams(X, width=200, seeds=[1])
    assert torch.equal(a.gram, a2.gram)
    assert not torch.allclose(a.gram, b.gram)


def test_unconverged_solves_are_reported_not_used():
    X = unit_rows(5, 3)
    solver = SolverConfig(tol=1e-10, max_iter=30)
    (s,) = random_deq_grams(X, width=400, seeds=[0], sigma_w=1.5, solver=solver)
    assert not s.converged and s.gram is None and s.iterations == 30
    assert s.residual > 1e-10
    (t,) = random_tangent_grams(X, width=400, seeds=[0], sigma_w=1.5, solver=solver)
    assert not t.converged and t.gram is None and t.adjoint_iterations == 0


def test_spectral_norm_estimates_agree_near_two_sigma_w():
    X = unit_rows(4, 3)
    (exact,) = random_deq_grams(X, width=800, seeds=[3], sigma_w=0.3, w_norm="exact")
    (power,) = random_deq_grams(X, width=800, seeds=[3], sigma_w=0.3, w_norm="power")
    assert power.w_norm <= exact.w_norm * (1 + 1e-12)  # power iteration is a lower bound
    assert power.w_norm == pytest.approx(exact.w_norm, rel=0.03)
    assert exact.w_norm == pytest.approx(2 * 0.3, rel=0.05)  # Bai-Yin edge
    with pytest.raises(ValueError, match="valid"):
        random_deq_grams(X, width=10, seeds=[0], w_norm="svd")


def test_untied_grams_share_u_with_the_deq_and_follow_the_depth_kernels():
    X, m, seeds = unit_rows(8, 5), 2000, range(3)
    samples = untied_grams(X, width=m, depth=4, seeds=seeds, sigma_w=1.0)
    assert [s.grams.shape for s in samples] == [(4, 8, 8)] * 3
    # depth 1 is s relu(U x) with the DEQ's U for the same seed
    model = DEQ(DEQConfig(d=5, width=m), seeds=model_seeds(0), dtype=F64)
    with torch.no_grad():
        Z1 = torch.relu(X @ model.U.T) / math.sqrt(m)
    assert torch.allclose(samples[0].grams[0], Z1 @ Z1.T, rtol=1e-12, atol=1e-14)
    # every depth against its own kernel (depths differ by > 0.1 at sigma_w = 1)
    Kl = untied_conjugate_kernels(X, 4, sigma_w=1.0)
    mean = torch.stack([s.grams for s in samples]).mean(0)  # (4, n, n)
    for layer in range(4):
        err = float((mean[layer] - Kl[layer]).norm() / Kl[layer].norm())
        assert err < 0.06, f"depth {layer + 1}: relative error {err:.3f}"
    assert float((Kl[3] - Kl[0]).norm() / Kl[3].norm()) > 0.3


def test_tangent_grams_equal_monitor_tangent_gram():
    X, m = unit_rows(5, 4), 300
    (s,) = random_tangent_grams(X, width=m, seeds=[7], sigma_w=0.4, sigma_a=2.0)
    model = DEQ(DEQConfig(d=4, width=m, sigma_a=2.0), seeds=model_seeds(7), dtype=F64)
    direct = tangent_gram(model, X, cfg=SolverConfig(tol=1e-12, max_iter=500))
    assert s.converged and torch.allclose(s.gram, direct, rtol=1e-8, atol=0)


def test_budget_refuses_a_width_that_does_not_fit():
    X = unit_rows(4, 3)
    need = working_set_bytes(4, 3, 1000)
    assert need > 1000 * 1000 * 8  # at least the float64 weight
    with pytest.raises(MemoryError, match="budget_bytes"):
        random_deq_grams(X, width=1000, seeds=[0], budget_bytes=need // 2)
    with pytest.raises(MemoryError, match="budget_bytes"):
        untied_grams(X, width=1000, depth=2, seeds=[0], budget_bytes=need // 2)
    assert random_deq_grams(X, width=50, seeds=[0], budget_bytes=need)[0].converged


def test_float32_sampling_is_close_to_float64():
    X = unit_rows(6, 4)
    (a,) = random_deq_grams(X, width=500, seeds=[0])
    (b,) = random_deq_grams(X, width=500, seeds=[0], dtype=torch.float32)
    assert b.converged and b.gram.dtype == F64
    assert torch.allclose(a.gram, b.gram, rtol=0, atol=1e-5)
