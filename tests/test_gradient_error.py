"""The adjoint solved only as tightly as a certified relative gradient error needs."""

import math

import pytest
import torch

from overdeq.config import ConfigError, make_run_config
from overdeq.data import DataSpec
from overdeq.implicit import GradientTolerance, SolveStats, WarmStart, deq_output
from overdeq.mixed import MixedConfig
from overdeq.model import DEQ, DEQConfig
from overdeq.provenance import config_hash
from overdeq.solvers import SolverConfig
from overdeq.train import train

TIGHT = SolverConfig(tol=1e-13, max_iter=3000)
FLOOR = 1e-6
SMALL = dict(data=DataSpec("identity", n=16), width=300)


def _problem(dtype=torch.float64, n=24, m=600, d=10):
    model = DEQ(DEQConfig(d=d, width=m), dtype=dtype)
    X = torch.randn(n, d, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    y = torch.randn(n, generator=torch.Generator().manual_seed(6), dtype=torch.float64)
    return model, (X / X.norm(dim=1, keepdim=True)).to(dtype), y.to(dtype)


def _gradient(model, X, y, forward, backward, **kw):
    """The flat gradient (W, U, a) of 1/2 sum (f - y)^2 and the solve statistics."""
    model.zero_grad(set_to_none=True)
    stats = SolveStats()
    out = deq_output(model, X, forward=forward, backward=backward, stats=stats, **kw)
    (0.5 * ((out - y) ** 2).sum()).backward()
    grad = torch.cat([p.grad.flatten() for p in (model.W, model.U, model.a)])
    return grad.double(), stats


@pytest.mark.parametrize("delta", [0.2, 1e-2, 1e-3])
def test_the_certificate_bounds_the_gradient_error(delta):
    """Against a tight float64 solve: measured error <= certificate <= delta."""
    model, X, y = _problem()
    exact, _ = _gradient(model, X, y, TIGHT, TIGHT)
    tolerance = GradientTolerance(delta, floor=FLOOR)
    loose, stats = _gradient(
        model, X, y, TIGHT, SolverConfig(tol=FLOOR, max_iter=300), tolerance=tolerance
    )
    error = float((loose - exact).norm() / exact.norm())
    cert = stats.extra["gradient_certificate"]
    assert error <= cert <= delta
    assert tolerance.worst == cert and tolerance.unmet == 0
    assert stats.extra["adjoint_tol"] > 10 * FLOOR  # looser than the floor: fewer sweeps


def test_the_certificate_holds_for_mixed_precision_solves():
    """float32 model, bfloat16 sweeps: still bounded (the forward's 1e-6 error is below it)."""
    model64, X64, y64 = _problem()
    exact, _ = _gradient(model64, X64, y64, TIGHT, TIGHT)
    model, X, y = _problem(torch.float32)
    tolerance = GradientTolerance(1e-2, floor=FLOOR)
    solver = SolverConfig(tol=FLOOR, max_iter=300)
    loose, stats = _gradient(
        model, X, y, solver, solver, tolerance=tolerance, mixed=MixedConfig(), warm=WarmStart()
    )
    error = float((loose - exact).norm() / exact.norm())
    assert error <= stats.extra["gradient_certificate"] <= 1e-2


def test_an_uncertifiable_step_tightens_to_the_floor():
    """gamma >= 1 certifies nothing: the adjoint is solved to the floor and the step counted."""
    model, X, y = _problem()
    tight, _ = _gradient(model, X, y, TIGHT, SolverConfig(tol=FLOOR, max_iter=300))
    tolerance = GradientTolerance(0.1, floor=FLOOR, gamma_margin=0.5)  # gamma ~ 1.2
    grad, stats = _gradient(
        model, X, y, TIGHT, SolverConfig(tol=FLOOR, max_iter=300), tolerance=tolerance
    )
    assert stats.extra["gamma"] >= 1 and math.isinf(stats.extra["gradient_certificate"])
    assert stats.extra["adjoint_tol"] == FLOOR and stats.backward.converged
    assert tolerance.unmet == 1 and tolerance.tol == FLOOR
    assert float((grad - tight).norm() / tight.norm()) < 1e-5


def test_a_delta_below_the_floor_is_reported_unmet():
    """delta too small for the floor tolerance: solved to the floor, and the summary says so."""
    run = make_run_config(**SMALL, steps=4, log_every=1, gradient_error=1e-9)
    s = train(run).summary["gradient_error"]
    assert s["unmet_steps"] == s["certified_steps"] == 4 and s["max_certificate"] > 1e-9


def test_a_loose_run_matches_the_tight_one():
    """delta = 0.1: the same status, fitted rate within 1%, final loss within 1%, bound held."""
    runs = {
        ge: train(make_run_config(**SMALL, steps=300, log_every=5, gradient_error=ge))
        for ge in (None, 0.1)
    }
    a, b = runs[None].summary, runs[0.1].summary
    assert "gradient_error" not in a
    assert a["status"] == b["status"] == "finished"
    assert b["rate"] == pytest.approx(a["rate"], rel=0.01)
    assert b["final_loss"] == pytest.approx(a["final_loss"], rel=0.01)
    cert = b["gradient_error"]
    assert cert["unmet_steps"] == 0 and 0 < cert["max_certificate"] <= 0.1
    assert cert["certified_steps"] == 300
    assert runs[0.1].summary["mean_bwd_iters"] < runs[None].summary["mean_bwd_iters"]


def test_a_run_with_the_certificate_resumes_bit_identically(tmp_path):
    run = make_run_config(**SMALL, steps=30, log_every=3, checkpoint_every=7, gradient_error=0.1)
    full = train(run, tmp_path / "full")
    assert train(run, tmp_path / "part", stop_after=11).summary["status"] == "interrupted"
    resumed = train(run, tmp_path / "part")
    assert resumed.history == full.history
    assert resumed.summary["gradient_error"] == full.summary["gradient_error"]


def test_gradient_error_is_checked_and_off_keeps_the_hash():
    base = make_run_config(**SMALL)
    assert make_run_config(**SMALL, gradient_error=None).hash == base.hash
    d = base.to_dict()  # a run from before the knob (no gradient_error) keeps its identity
    for key in ("device", "checkpoint_every", "floor_stop", "readout_every", "gradient_error"):
        d["train"].pop(key)
    assert base.hash == config_hash(d)
    assert make_run_config(**SMALL, gradient_error=0.1).hash != base.hash
    for bad in (0.0, 1.0, -0.1):
        with pytest.raises(ConfigError, match="--gradient-error must be in"):
            make_run_config(**SMALL, gradient_error=bad)
    with pytest.raises(ConfigError, match="--gradient implicit"):
        make_run_config(**SMALL, gradient="released", gradient_error=0.1)
