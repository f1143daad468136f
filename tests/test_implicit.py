import pytest
import torch

from overdeq.implicit import (
    SolveStats,
    WarmStart,
    adjoint,
    deq_output,
    equilibrium,
    released_output,
)
from overdeq.solvers import SolverConfig

from problems import small_deq

TIGHT = SolverConfig(name="picard", tol=1e-13, max_iter=2000)


def loss_fn(out, y):
    return 0.5 * ((out - y) ** 2).sum()


def implicit_grads(model, X, y, cfg=TIGHT):
    model.zero_grad()
    loss = loss_fn(deq_output(model, X, forward=cfg, backward=cfg), y)
    loss.backward()
    return {k: p.grad.clone() for k, p in model.named_parameters()}, float(loss.detach())


def unrolled_grads(model, X, y, iters=200):
    """Autograd through plain fixed-point iteration from z = 0 (independent route)."""
    model.zero_grad()
    inj = model.input_injection(X)
    Z = torch.zeros(X.shape[0], model.cfg.width, dtype=X.dtype)
    for _ in range(iters):
        Z = model.layer(Z, inj)
    loss_fn(model.readout(Z), y).backward()
    return {k: p.grad.clone() for k, p in model.named_parameters()}


@pytest.mark.parametrize("biases", [False, True])
def test_implicit_gradient_matches_unrolled_autograd(biases):
    model, X, y = small_deq(biases=biases)
    ours, _ = implicit_grads(model, X, y)
    ref = unrolled_grads(model, X, y)
    assert set(ours) == set(ref)
    for k in ours:
        assert torch.allclose(ours[k], ref[k], rtol=1e-9, atol=1e-12), k


@pytest.mark.parametrize("biases", [False, True])
def test_implicit_gradient_matches_finite_differences(biases):
    model, X, y = small_deq(n=4, d=3, m=25, biases=biases, seed=7)
    grads, _ = implicit_grads(model, X, y)
    g = torch.Generator().manual_seed(11)
    h = 1e-6
    for name, p in model.named_parameters():
        direction = torch.randn(p.shape, generator=g, dtype=p.dtype)
        with torch.no_grad():
            p += h * direction
            up = float(loss_fn(deq_output(model, X, forward=TIGHT, backward=TIGHT), y))
            p -= 2 * h * direction
            down = float(loss_fn(deq_output(model, X, forward=TIGHT, backward=TIGHT), y))
            p += h * direction
        fd = (up - down) / (2 * h)
        analytic = float((grads[name] * direction).sum())
        assert analytic == pytest.approx(fd, rel=1e-6, abs=1e-9), name


def test_input_gradient_matches_finite_differences():
    model, X, y = small_deq(n=4, d=3, m=25, seed=3)
    X = X.clone().requires_grad_()
    loss_fn(deq_output(model, X, forward=TIGHT, backward=TIGHT), y).backward()
    direction = torch.randn(X.shape, generator=torch.Generator().manual_seed(5), dtype=X.dtype)
    h = 1e-6
    with torch.no_grad():
        up = float(loss_fn(deq_output(model, X + h * direction, forward=TIGHT, backward=TIGHT), y))
        down = float(
            loss_fn(deq_output(model, X - h * direction, forward=TIGHT, backward=TIGHT), y)
        )
    assert float((X.grad * direction).sum()) == pytest.approx((up - down) / (2 * h), rel=1e-6)


@pytest.mark.parametrize("name", ["W", "U", "a"])
def test_an_in_place_change_between_forward_and_backward_raises(name):
    """The backward must not differentiate at weights the forward did not use."""
    model, X, y = small_deq()
    loss = loss_fn(deq_output(model, X, forward=TIGHT, backward=TIGHT), y)
    with torch.no_grad():
        getattr(model, name).mul_(1.01)  # e.g. an optimizer step before backward()
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        loss.backward()


def test_adjoint_solves_its_defining_equation():
    model, X, _ = small_deq()
    Z, mask, res = equilibrium(model, X, TIGHT)
    assert res.converged
    V, bres = adjoint(model, mask, TIGHT)
    assert bres.converged
    lhs = V
    rhs = model.a[None, :] + model.scale * (V * mask) @ model.W
    assert torch.allclose(lhs, rhs.detach(), rtol=0, atol=1e-11)
    # and Z is a fixed point of the layer map
    assert torch.allclose(model.layer(Z, model.input_injection(X)).detach(), Z, atol=1e-12)


def test_warm_start_changes_iterations_not_answers():
    model, X, y = small_deq()
    cold, _ = implicit_grads(model, X, y)
    warm = WarmStart()
    cfg = SolverConfig(tol=1e-12, max_iter=2000)
    stats = [SolveStats(), SolveStats()]
    for s in stats:
        model.zero_grad()
        loss_fn(deq_output(model, X, forward=cfg, backward=cfg, warm=warm, stats=s), y).backward()
    assert stats[1].forward.iterations == 1 and stats[1].backward.iterations == 1
    for k, p in model.named_parameters():
        assert torch.allclose(p.grad, cold[k], rtol=1e-9, atol=1e-12)


def test_released_algorithm_is_exact_only_at_tight_tolerance():
    model, X, y = small_deq(biases=True)
    exact, _ = implicit_grads(model, X, y)

    def released(tol):
        cfg = SolverConfig(
            name="anderson", tol=tol, max_iter=500, criterion="global", ridge_mode="absolute"
        )
        model.zero_grad()
        loss_fn(released_output(model, X, forward=cfg, backward=cfg), y).backward()
        return {k: p.grad.clone() for k, p in model.named_parameters()}

    tight, loose = released(1e-12), released(1e-2)
    for k in exact:
        assert torch.allclose(tight[k], exact[k], rtol=1e-7, atol=1e-10), k
    err = max(float((loose[k] - exact[k]).norm() / exact[k].norm()) for k in exact)
    assert 1e-6 < err < 0.5  # the released tolerance costs a visible gradient error


def test_stats_report_an_unconverged_forward():
    model, X, y = small_deq()
    stats = SolveStats()
    cfg = SolverConfig(tol=1e-14, max_iter=2)
    deq_output(model, X, forward=cfg, backward=cfg, stats=stats)
    assert stats.forward is not None and not stats.forward.converged
    assert stats.forward.iterations == 2


def test_optimizer_step_reduces_the_loss():
    model, X, y = small_deq()
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    losses = []
    for _ in range(5):
        opt.zero_grad()
        loss = loss_fn(deq_output(model, X, forward=TIGHT, backward=TIGHT), y)
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    assert all(b < a for a, b in zip(losses, losses[1:], strict=False))
