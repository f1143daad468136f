"""Mixed precision (overdeq.mixed): bfloat16 correction sweeps, fp32 answers."""

from dataclasses import replace

import pytest
import torch

from overdeq.config import PRECISIONS, ConfigError, make_run_config
from overdeq.data import DataSpec
from overdeq.implicit import SolveStats, WarmStart, adjoint, deq_output, equilibrium
from overdeq.io import read_json
from overdeq.mixed import MixedConfig, MixedState, _Buffers
from overdeq.model import DEQ, DEQConfig
from overdeq.provenance import config_hash
from overdeq.solvers import SolverConfig
from overdeq.theory import FLOORS
from overdeq.train import train

TOL = 1e-6
SOLVER = SolverConfig(tol=TOL, max_iter=300)


def _model(n: int = 24, m: int = 600, d: int = 10) -> tuple[DEQ, torch.Tensor]:
    model = DEQ(DEQConfig(d=d, width=m))
    X = torch.randn(n, d, generator=torch.Generator().manual_seed(5))
    return model, X / X.norm(dim=1, keepdim=True)


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).norm() / b.norm())


def test_equilibrium_agrees_with_fp32_to_the_tolerance():
    model, X = _model()
    Z, D, res = equilibrium(model, X, SOLVER)
    Zm, Dm, resm = equilibrium(model, X, SOLVER, mixed=MixedConfig())
    assert resm.converged and resm.residual < TOL
    assert resm.low_iterations > 0  # the sweeps did run in bfloat16
    assert resm.iterations - resm.low_iterations < res.iterations  # fewer fp32 evaluations
    assert _rel(Zm, Z) < 10 * TOL
    assert Zm.dtype == torch.float32
    assert (Dm != D).float().mean() < 1e-3


def test_adjoint_agrees_with_fp32_to_the_tolerance():
    model, X = _model()
    _, D, _ = equilibrium(model, X, SOLVER)
    V, res = adjoint(model, D, SOLVER)
    Vm, resm = adjoint(model, D, SOLVER, mixed=MixedConfig())
    assert resm.converged and resm.residual < TOL and resm.low_iterations > 0
    assert _rel(Vm, V) < 10 * TOL


def test_the_stopping_test_is_fp32():
    """The reported residual is that of the fp32 map at the answer, not of the sweeps."""
    model, X = _model()
    Zm, _, resm = equilibrium(model, X, SOLVER, mixed=MixedConfig())
    with torch.no_grad():
        # Zm = F(z_k); one more fp32 application moves it by about L * residual
        again = model.layer(Zm, model.input_injection(X))
    per_sample = (again - Zm).norm(dim=1) / again.norm(dim=1)
    assert float(per_sample.max()) < 2 * TOL
    assert float(resm.residuals[-1]) == resm.residual


def test_gradients_agree_with_fp32_to_the_tolerance():
    grads = {}
    for mixed in (None, MixedConfig()):
        model, X = _model()
        y = torch.linspace(-1, 1, X.shape[0])
        out = deq_output(model, X, forward=SOLVER, backward=SOLVER, mixed=mixed)
        (0.5 * ((out - y) ** 2).sum()).backward()
        grads[mixed is None] = {k: p.grad.clone() for k, p in model.weight_blocks().items()}
    for k in ("W", "U", "a"):
        assert _rel(grads[False][k], grads[True][k]) < 10 * TOL, k


def test_max_iter_bounds_all_sweeps():
    model, X = _model()
    cfg = replace(SOLVER, max_iter=4)
    _, _, res = equilibrium(model, X, cfg, mixed=MixedConfig())
    assert res.iterations <= 4 and not res.converged


def test_mixed_is_a_precision_with_the_fp32_floor():
    assert "mixed" in PRECISIONS
    assert FLOORS["mixed"] == FLOORS["float32"]


SMALL = dict(data=DataSpec("identity", n=16), width=300)


def test_a_mixed_run_matches_fp32_floor_status_and_rate():
    """Within 2% in the fitted rate, the same status, and both reach the fp32 floor."""
    res = {
        p: train(make_run_config(**SMALL, steps=400, log_every=5, precision=p, floor_stop=True))
        for p in ("float32", "mixed")
    }
    a, b = res["float32"].summary, res["mixed"].summary
    assert a["status"] == b["status"] == "finished"
    assert a["stopped_at_floor"] is not None and b["stopped_at_floor"] is not None
    assert abs(a["stopped_at_floor"] - b["stopped_at_floor"]) <= 0.05 * a["stopped_at_floor"]
    assert b["final_loss"] <= FLOORS["mixed"] * b["initial_loss"]
    assert b["rate"] == pytest.approx(a["rate"], rel=0.02)
    assert b["initial_loss"] == pytest.approx(a["initial_loss"], rel=1e-5)


def test_floor_stop_ends_the_run_there_and_says_so(tmp_path):
    run = make_run_config(**SMALL, steps=600, log_every=50, floor_stop=True)
    res = train(run, tmp_path)
    s = read_json(tmp_path / "summary.json")
    step = s["stopped_at_floor"]
    assert s["status"] == "finished" and step is not None and 0 < step < 600
    assert s["steps_done"] == step and "round-off floor" in s["reason"]
    assert res.history[-1]["step"] == step  # the stopping step is logged, with its audit
    assert res.history[-1]["w_norm_exact"] is not None
    assert s["final_loss"] <= FLOORS["float32"] * s["initial_loss"]
    before = res.history[-2]
    assert before["loss"] > FLOORS["float32"] * s["initial_loss"]
    again = train(run, tmp_path)  # finished: not redone, same verdict
    assert again.skipped and again.summary["stopped_at_floor"] == step


def test_floor_stop_off_runs_every_step_and_keeps_the_hash():
    off = make_run_config(**SMALL, steps=30)
    assert off == make_run_config(**SMALL, steps=30, floor_stop=False)
    assert off.hash != make_run_config(**SMALL, steps=30, floor_stop=True).hash
    # a run from before the knobs existed (no floor_stop in its dict) keeps its identity
    d = off.to_dict()
    for key in ("device", "checkpoint_every", "floor_stop", "readout_every", "gradient_error"):
        d["train"].pop(key)
    assert off.hash == config_hash(d)
    s = train(off).summary
    assert s["stopped_at_floor"] is None and s["steps_done"] == 30


def test_mixed_refuses_a_solver_it_does_not_use():
    with pytest.raises(ConfigError, match="--precision mixed.*--solver picard"):
        make_run_config(**SMALL, precision="mixed", solver="anderson")
    make_run_config(**SMALL, mode="legacy", precision="mixed")  # released: float32 as is


def test_released_gradient_under_mixed_runs_in_float32():
    """The released algorithm has no fp32 test to anchor corrections: plain float32."""
    kw = dict(mode="legacy", **SMALL, steps=5, lr=0.01)
    a = train(make_run_config(**kw, precision="float32")).summary
    b = train(make_run_config(**kw, precision="mixed")).summary
    assert a["final_loss"] == b["final_loss"]


def _mixed_sgd_steps(steps: int, lr: float) -> list[SolveStats]:
    """The solver statistics of ``steps`` warm-started mixed-precision SGD steps."""
    model, X = _model()
    y = torch.linspace(-1, 1, X.shape[0])
    opt = torch.optim.SGD(model.parameters(), lr=lr)
    warm, out_stats = WarmStart(), []
    for _ in range(steps):
        stats = SolveStats()
        out = deq_output(
            model, X, forward=SOLVER, backward=SOLVER, warm=warm, stats=stats, mixed=MixedConfig()
        )
        opt.zero_grad()
        (0.5 * ((out - y) ** 2).sum()).backward()
        opt.step()
        out_stats.append(stats)
    return out_stats


def test_warm_started_mixed_steps_stay_converged():
    for stats in _mixed_sgd_steps(5, lr=1e-2):
        assert stats.forward.converged and stats.backward.converged


def test_a_mixed_run_resumes_bit_identically(tmp_path):
    """The mixed state (the last fp32 evaluations) is checkpointed with the warm starts."""
    run = make_run_config(**SMALL, steps=30, log_every=3, checkpoint_every=7, precision="mixed")
    full = train(run, tmp_path / "full")
    assert train(run, tmp_path / "part", stop_after=11).summary["status"] == "interrupted"
    resumed = train(run, tmp_path / "part")
    assert resumed.resumed_from == 11 and resumed.history == full.history


def test_later_steps_start_from_the_last_evaluation():
    """With the state of the last step, a forward solve needs a single fp32 evaluation."""
    fp32_evals = []
    for stats in _mixed_sgd_steps(4, lr=1e-3):
        fp32_evals.append(stats.forward.iterations - stats.forward.low_iterations)
        assert stats.forward.converged and stats.backward.converged
    assert fp32_evals[0] >= 2 and fp32_evals[-1] == 1


def test_the_rounded_weight_is_kept_for_one_value_of_w_only():
    """MixedState rounds W once per step for both solves, and again after W changes in
    place (an optimizer step bumps its version), never serving a stale copy."""
    state = MixedState()
    W = torch.randn(50, 50)
    first = state.low_weight(W, torch.bfloat16)
    assert state.low_weight(W.detach(), torch.bfloat16) is first  # same W: the same copy
    with torch.no_grad():
        W.add_(1.0)
    again = state.low_weight(W, torch.bfloat16)
    assert torch.equal(again, W.to(torch.bfloat16))
    other = torch.randn(50, 50)
    assert torch.equal(state.low_weight(other, torch.bfloat16), other.to(torch.bfloat16))


def test_a_sweep_never_writes_the_iterate_it_reads():
    """The correction's buffers take turns: the step value never shares memory with the
    iterate (which the sweeps then overwrite with the increment)."""
    buf = _Buffers(torch.zeros(4, 6), torch.bfloat16)
    w = torch.randn(6, 6).to(torch.bfloat16)
    delta = torch.randn(4, 6)
    for _ in range(4):
        new = buf.product(delta, w)
        assert new.data_ptr() != delta.data_ptr()
        expected = (delta.to(torch.bfloat16) @ w).float()
        assert torch.equal(new, expected)
        delta = new
