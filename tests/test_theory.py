import numpy as np
import pytest
import torch

from overdeq.ablations import gradient_error_rows
from overdeq.data import Dataset
from overdeq.theory import predicted_losses, rate_bounds


@pytest.mark.parametrize("loss_factor", [1.0, 2.0])
def test_predicted_losses_match_the_linear_recursion(loss_factor):
    rng = np.random.default_rng(0)
    A = rng.standard_normal((6, 6))
    theta = A @ A.T + 0.1 * np.eye(6)
    r = rng.standard_normal(6)
    lr = 0.5 / np.linalg.eigvalsh(theta)[-1]
    evals, evecs = np.linalg.eigh(theta)
    steps = np.arange(0, 40, 5)
    pred = predicted_losses(evals, evecs.T @ r, lr, steps, loss_factor)
    scale = 0.5 if loss_factor == 1.0 else 1.0
    direct, cur = [], r.copy()
    for t in range(40):
        if t % 5 == 0:
            direct.append(scale * cur @ cur)
        cur = cur - loss_factor * lr * theta @ cur
    assert np.allclose(pred, direct, rtol=1e-10)


def test_rate_bounds():
    b = rate_bounds(0.1, theta_min=2.0, lambda_0=1.0)
    assert b["rate_bound_theta"] == pytest.approx(0.64)
    assert b["rate_bound_lambda0"] == pytest.approx(0.81)


def test_gradient_error_shrinks_with_the_tolerance():
    X = torch.randn(8, 5, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    X = (X / X.norm(dim=1, keepdim=True)).numpy()
    ds = Dataset(X=X, y=np.linspace(0, 1, 8), name="gaussian")
    rows = gradient_error_rows(ds, width=40, tols=(1e-1, 1e-8))
    err = {(r["method"], r["tol"]): r["rel_error"] for r in rows if r["block"] == "all"}
    for method in ("released", "exact"):
        assert err[(method, 1e-8)] < 1e-6 < err[(method, 1e-1)]
    assert {r["block"] for r in rows} >= {"W", "U", "a", "b_w", "all"}
