import math

import pytest
import torch

from overdeq.solvers import SOLVERS, SolverConfig, get_solver, solve

from problems import contractive_map, linear_map

PROBLEMS = {
    "tanh-0.5": lambda: (contractive_map(7, 30, 0.5), None),
    "tanh-0.9": lambda: (contractive_map(7, 30, 0.9, seed=1), None),
    "linear-0.6": lambda: linear_map(5, 25, 0.6),
}


@pytest.mark.parametrize("problem", sorted(PROBLEMS))
@pytest.mark.parametrize("name", sorted(SOLVERS))
@pytest.mark.parametrize("criterion", ["per_sample", "global"])
def test_solution_is_a_fixed_point(name, problem, criterion):
    f, exact = PROBLEMS[problem]()
    cfg = SolverConfig(name=name, tol=1e-10, max_iter=500, criterion=criterion)
    res = solve(
        f,
        torch.zeros(7 if exact is None else 5, 30 if exact is None else 25, dtype=torch.float64),
        cfg,
    )
    assert res.converged
    assert res.residual < 1e-10
    z = res.solution
    # independent check: evaluate f at the returned point
    rel = (f(z) - z).norm(dim=1) / f(z).norm(dim=1)
    assert rel.max() < 1e-9
    if exact is not None:
        assert torch.allclose(z, exact, rtol=0, atol=1e-8)
    assert res.iterations == len(res.residuals)
    assert res.per_sample.shape == (z.shape[0],)


def test_anderson_beats_picard_on_a_slow_contraction():
    # z -> z M + c with M symmetric and three distinct eigenvalues, the slowest 0.99:
    # Picard needs ~2000 iterations, Anderson (a GMRES-like method here) a handful.
    g = torch.Generator().manual_seed(3)
    Q, _ = torch.linalg.qr(torch.randn(30, 30, generator=g, dtype=torch.float64))
    evals = torch.tensor([0.99] * 10 + [0.5] * 10 + [0.1] * 10, dtype=torch.float64)
    M = Q @ torch.diag(evals) @ Q.T
    c = torch.randn(4, 30, generator=g, dtype=torch.float64)
    f = lambda Z: Z @ M + c  # noqa: E731
    z0 = torch.zeros(4, 30, dtype=torch.float64)
    pic = solve(f, z0, SolverConfig(name="picard", tol=1e-8, max_iter=5000))
    anda = solve(f, z0, SolverConfig(name="anderson", tol=1e-8, max_iter=5000))
    assert pic.converged and anda.converged
    assert pic.iterations > 1000
    assert anda.iterations < 20


@pytest.mark.parametrize("name", sorted(SOLVERS))
def test_non_convergence_is_reported(name):
    # an expansive ReLU map (like the released width-scale bug): iterates grow geometrically
    g = torch.Generator().manual_seed(0)
    W = torch.randn(10, 10, generator=g, dtype=torch.float64)
    W = 3.0 * W / torch.linalg.matrix_norm(W, ord=2)
    f = lambda Z: torch.relu(Z @ W.T + 1.0)  # noqa: E731
    res = solve(
        f, torch.zeros(3, 10, dtype=torch.float64), SolverConfig(name=name, tol=1e-6, max_iter=30)
    )
    assert not res.converged
    assert res.iterations == 30
    assert res.residual > 1e-6
    # and a contraction stopped too early is not called converged either
    res = solve(
        contractive_map(3, 10, 0.9),
        torch.zeros(3, 10, dtype=torch.float64),
        SolverConfig(name=name, tol=1e-12, max_iter=3),
    )
    assert not res.converged and res.iterations == 3


@pytest.mark.parametrize("name", sorted(SOLVERS))
def test_warm_start_from_the_solution_needs_one_iteration(name):
    f, exact = linear_map(5, 25, 0.6)
    res = solve(f, exact.clone(), SolverConfig(name=name, tol=1e-8))
    assert res.converged and res.iterations == 1


def test_global_criterion_is_the_released_formula():
    f, _ = linear_map(5, 25, 0.6)
    z0 = torch.zeros(5, 25, dtype=torch.float64)
    res = solve(f, z0, SolverConfig(name="picard", tol=1e-30, max_iter=1, criterion="global"))
    fz = f(z0)
    expected = (fz - z0).norm() / (1e-5 + fz.norm())
    assert res.residuals[0] == pytest.approx(float(expected), rel=1e-12)


def test_per_sample_criterion_is_the_worst_sample():
    f, _ = linear_map(5, 25, 0.6)
    z0 = torch.zeros(5, 25, dtype=torch.float64)
    z0[2] = 100.0  # one bad sample dominates
    res = solve(f, z0, SolverConfig(name="picard", tol=1e-30, max_iter=1))
    fz = f(z0)
    per = (fz - z0).norm(dim=1) / fz.norm(dim=1)
    assert res.residuals[0] == pytest.approx(float(per.max()), rel=1e-12)
    assert int(res.per_sample.argmax()) == 2


def test_scaled_ridge_is_invariant_to_the_problem_scale():
    # Anderson with a scaled ridge takes the same path on f and on a rescaled copy of f.
    f, _ = linear_map(3, 20, 0.8, seed=4)
    c = 1e-4
    g = lambda Z: c * f(Z / c)  # noqa: E731  same dynamics, magnitudes times c
    z0 = torch.zeros(3, 20, dtype=torch.float64)
    opts = dict(name="anderson", tol=1e-30, max_iter=8)
    a = solve(f, z0, SolverConfig(**opts, ridge_mode="scaled"))
    b = solve(g, z0, SolverConfig(**opts, ridge_mode="scaled"))
    assert torch.allclose(a.residuals, b.residuals, rtol=1e-6, atol=0)
    assert torch.allclose(a.solution * c, b.solution, rtol=1e-6, atol=0)
    # the released absolute ridge is not: at this scale it dominates the Gram matrix
    r = solve(g, z0, SolverConfig(**opts, ridge_mode="absolute"))
    assert r.residuals[-1] > 5 * b.residuals[-1]


def test_unknown_solver_lists_the_valid_ones():
    with pytest.raises(ValueError, match=r"anderson.*picard"):
        get_solver("newton")
    with pytest.raises(ValueError, match="valid solvers"):
        SolverConfig(name="broyden")


@pytest.mark.parametrize(
    "bad", [dict(tol=0.0), dict(max_iter=0), dict(criterion="mean"), dict(ridge_mode="relative")]
)
def test_bad_options_are_rejected(bad):
    with pytest.raises(ValueError):
        SolverConfig(**bad)


@pytest.mark.parametrize("history", [-1, 0, 1])
def test_anderson_history_below_two_is_refused_at_construction(history):
    # history 1 used to pass here and crash inside anderson() with an IndexError
    with pytest.raises(ValueError, match=rf"history must be >= 2, got {history}"):
        SolverConfig(name="anderson", history=history)


def test_anderson_with_the_smallest_history_converges():
    f, exact = linear_map(3, 12, 0.6, seed=4)
    cfg = SolverConfig(name="anderson", history=2, tol=1e-10, max_iter=500)
    res = solve(f, torch.zeros(3, 12, dtype=torch.float64), cfg)
    assert res.converged
    assert torch.allclose(res.solution, exact, atol=1e-8)


def test_residual_trace_decreases_geometrically_for_picard():
    f, _ = linear_map(4, 20, 0.5, seed=2)
    res = solve(f, torch.zeros(4, 20, dtype=torch.float64), SolverConfig(tol=1e-12))
    ratios = (res.residuals[1:] / res.residuals[:-1]).numpy()
    assert (ratios < 0.75).all()  # contraction factor 0.5 up to the relative normalisation
    assert math.isfinite(res.residual)
