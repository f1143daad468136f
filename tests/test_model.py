"""DEQ as an nn.Module: model(X) gives the outputs with the exact implicit gradient."""

from __future__ import annotations

import pytest
import torch

from overdeq.implicit import SolveStats, deq_output
from overdeq.model import DEQ
from overdeq.solvers import SolverConfig

from problems import small_deq

TIGHT = SolverConfig(name="picard", tol=1e-13, max_iter=2000)


def half_sse(out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return 0.5 * ((out - y) ** 2).sum()


def tight(model: DEQ) -> DEQ:
    model.forward_solver = model.backward_solver = TIGHT
    return model


@pytest.mark.parametrize("biases", [False, True])
def test_module_call_has_the_exact_implicit_gradient(biases):
    model, X, y = small_deq(n=4, d=3, m=25, biases=biases, seed=2)
    tight(model)
    half_sse(model(X), y).backward()
    ours = {k: p.grad.clone() for k, p in model.named_parameters()}
    model.zero_grad()
    half_sse(deq_output(model, X, forward=TIGHT, backward=TIGHT), y).backward()
    for k, p in model.named_parameters():
        assert torch.allclose(ours[k], p.grad, rtol=1e-12, atol=1e-14), k
    # and against central finite differences of the loss, one random direction per tensor
    g, h = torch.Generator().manual_seed(9), 1e-6
    for name, p in model.named_parameters():
        direction = torch.randn(p.shape, generator=g, dtype=p.dtype)
        with torch.no_grad():
            p += h * direction
            up = float(half_sse(model(X), y))
            p -= 2 * h * direction
            down = float(half_sse(model(X), y))
            p += h * direction
        analytic = float((ours[name] * direction).sum())
        assert analytic == pytest.approx((up - down) / (2 * h), rel=1e-6, abs=1e-9), name


def test_module_call_differentiates_the_inputs():
    model, X, y = small_deq(n=3, d=4, m=20, seed=4)
    tight(model)
    X = X.clone().requires_grad_()
    half_sse(model(X), y).backward()
    direction = torch.randn(X.shape, generator=torch.Generator().manual_seed(1), dtype=X.dtype)
    h = 1e-6
    with torch.no_grad():
        fd = (half_sse(model(X + h * direction), y) - half_sse(model(X - h * direction), y)) / (
            2 * h
        )
    assert float((X.grad * direction).sum()) == pytest.approx(float(fd), rel=1e-6)


def test_module_trains_with_a_torch_optimizer():
    model, X, y = small_deq(n=5, d=4, m=60, seed=1)
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    losses = []
    for _ in range(30):
        opt.zero_grad()
        loss = half_sse(model(X), y)
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    assert losses[-1] < 0.5 * losses[0]


def test_unconverged_forward_is_an_error_unless_stats_are_taken():
    model, X, _ = small_deq()
    model.forward_solver = SolverConfig(tol=1e-14, max_iter=2)
    with pytest.raises(RuntimeError, match=r"did not converge in 2 iterations.*max_iter"):
        model(X)
    stats = SolveStats()
    out = model(X, stats=stats)
    assert out.shape == (X.shape[0],) and not stats.forward.converged
