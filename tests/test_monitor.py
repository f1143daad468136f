import math

import numpy as np
import pytest
import torch

from overdeq.implicit import deq_output
from overdeq.monitor import (
    PowerNorm,
    exact_spectral_norm,
    gram_lambda_min,
    legacy_readouts,
    relative_movement,
    tangent_gram,
)
from overdeq.solvers import SolverConfig

from problems import small_deq

TIGHT = SolverConfig(tol=1e-13, max_iter=2000)


def test_lambda_min_is_the_smallest_eigenvalue():
    g = torch.Generator().manual_seed(0)
    Z = torch.randn(7, 30, generator=g, dtype=torch.float32)
    ref = np.linalg.eigvalsh((Z.double() @ Z.double().T).numpy()).min()
    assert gram_lambda_min(Z) == pytest.approx(ref, rel=1e-10)


def test_power_norm_tracks_the_exact_norm():
    g = torch.Generator().manual_seed(1)
    W = torch.randn(80, 80, generator=g, dtype=torch.float64)
    exact = exact_spectral_norm(W)
    assert exact == pytest.approx(float(np.linalg.norm(W.numpy(), 2)), rel=1e-12)
    power = PowerNorm(80, iters=3, burn_in=300)
    first = power(W)
    assert first <= exact * (1 + 1e-12)
    assert first == pytest.approx(exact, rel=1e-3)
    # warm start: a small perturbation is tracked with a few iterations per call
    W2 = W + 1e-3 * torch.randn(80, 80, generator=g, dtype=torch.float64)
    for _ in range(20):
        est = power(W2)
    assert est == pytest.approx(exact_spectral_norm(W2), rel=1e-3)


def test_legacy_readout_is_not_the_minimum_in_general():
    # the released code's "lambda_min" is whatever eig returns last: check it on a Gram whose
    # eig order is not sorted ascending, and that ours is the true minimum
    g = torch.Generator().manual_seed(2)
    found_wrong = False
    for _ in range(10):
        Z = torch.randn(12, 40, generator=g, dtype=torch.float64)
        W = torch.randn(40, 40, generator=g, dtype=torch.float64)
        legacy = legacy_readouts(Z, W, 40)
        true = gram_lambda_min(Z)
        eigs = np.linalg.eigvalsh((Z @ Z.T).numpy())
        assert legacy["lambda_min_legacy"] == pytest.approx(
            eigs[np.argmin(np.abs(eigs - legacy["lambda_min_legacy"]))], rel=1e-8
        )
        found_wrong |= legacy["lambda_min_legacy"] > true * 1.5
    assert found_wrong


def explicit_ntk(model, X):
    """J J^T from autograd, one output at a time (independent route, small sizes only)."""
    rows = []
    for i in range(X.shape[0]):
        model.zero_grad()
        out = deq_output(model, X[i : i + 1], forward=TIGHT, backward=TIGHT)
        out.sum().backward()
        rows.append(torch.cat([p.grad.flatten() for p in model.parameters()]))
    J = torch.stack(rows)  # (n, #params)
    return J @ J.T


@pytest.mark.parametrize("biases", [False, True])
def test_tangent_gram_matches_the_jacobian(biases):
    model, X, _ = small_deq(n=5, d=4, m=30, biases=biases)
    ours = tangent_gram(model, X, cfg=TIGHT)
    ref = explicit_ntk(model, X)
    assert torch.allclose(ours, ref, rtol=1e-9, atol=1e-11)
    assert torch.allclose(ours, ours.T)


def test_relative_movement():
    init = {"W": torch.ones(3, 3)}
    moved = relative_movement({"W": torch.ones(3, 3) * 1.1}, init)
    assert moved["move_W"] == pytest.approx(0.1, rel=1e-6)
    assert math.isfinite(moved["move_W"])


def test_relative_movement_matches_a_float64_norm_across_row_blocks():
    # more rows than one block of the blockwise difference, and a vector block
    g = torch.Generator().manual_seed(0)
    W0 = torch.randn(2500, 30, generator=g)
    W = W0 + 1e-3 * torch.randn(2500, 30, generator=g)
    a0 = torch.randn(30, generator=g)
    a = a0 + 1e-2
    moved = relative_movement({"W": W, "a": a}, {"W": W0, "a": a0})
    for name, p, p0 in (("W", W, W0), ("a", a, a0)):
        expected = float((p - p0).double().norm() / p0.double().norm())
        assert moved[f"move_{name}"] == pytest.approx(expected, rel=1e-6)
