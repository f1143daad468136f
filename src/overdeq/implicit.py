"""Equilibrium forward passes with gradients, exact (implicit) and as released.

Exact implicit gradient (docs/science.md, The model). With h = W z* + U x (+ b), D = 1[h > 0],
s the width scale and r = dL/df, the adjoint u solves the linear fixed point

    u = r a^T + s (u * D) W                                   (row-wise)

Because the output is scalar, u = r[:, None] * V with V solving V = a^T + s (V * D) W: V
depends on the parameters only, not on the residual, so warm-starting V from the previous
step is very effective. Then

    dL/dW = s (u*D)^T Z*,   dL/dU = s (u*D)^T X,   dL/da = Z*^T r,   dL/dX = s (u*D) U.

``deq_output`` wraps this in an autograd Function, so ``loss.backward()`` followed by any
torch optimizer step trains (W, U, a). ``released_output`` reproduces the authors' code:
Anderson on the forward, one more differentiable application of the layer, and a backward
hook that solves the adjoint with the same solver on autograd vector-Jacobian products.

With ``mixed`` (a :class:`~overdeq.mixed.MixedConfig`) both solves of the implicit gradient
are defect corrections: fp32 residuals and the fp32 stopping test, low-precision correction
sweeps in between (overdeq.mixed). The gradient formulas above stay in fp32.

With ``tolerance`` (a :class:`GradientTolerance`) the adjoint is solved only as tightly as a
relative gradient error delta needs, and each step's a-posteriori certificate of that error
is recorded (docs/science.md, Inexact gradients).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

import torch
from torch import Tensor

if TYPE_CHECKING:
    from .monitor import PowerNorm

from .mixed import (
    MixedConfig,
    MixedState,
    adjoint_maps,
    adjoint_start,
    defect_correction,
    forward_maps,
    forward_start,
)
from .model import DEQ
from .solvers import SolverConfig, SolverResult, solve

__all__ = [
    "WarmStart",
    "SolveStats",
    "GradientTolerance",
    "gradient_certificate",
    "deq_output",
    "released_output",
    "equilibrium",
    "adjoint",
]


@dataclass
class WarmStart:
    """Solutions of the last solves, reused as initial guesses (same data, drifting weights).

    With ``extrapolate`` the forward guess is the secant step 2 z_t - z_{t-1}: along gradient
    descent the equilibrium moves smoothly, so this cuts the initial residual by an order of
    magnitude (measured: 5e-4 -> 3e-5 at n=100, m=2000). The adjoint V is not extrapolated:
    its changes are dominated by ReLU units switching, which are not smooth in t.
    """

    z: Tensor | None = None  # (n, m) equilibrium features
    v: Tensor | None = None  # (n, m) readout adjoint V
    z_prev: Tensor | None = None  # (n, m) the equilibrium one step earlier
    extrapolate: bool = True
    mixed: MixedState = field(default_factory=MixedState)  # mixed precision's last evaluations

    def guess(self, name: str, like: Tensor) -> Tensor | None:
        old = getattr(self, name)
        if old is None or old.shape != like.shape or old.dtype != like.dtype:
            return None
        if name == "z" and self.extrapolate and self.z_prev is not None:
            return (2 * old - self.z_prev).to(like.device)
        return old.to(like.device)

    def store(self, name: str, value: Tensor) -> None:
        if name == "z":
            self.z_prev = self.z
        setattr(self, name, value)

    def state_dict(self) -> dict:
        return {"z": self.z, "v": self.v, "z_prev": self.z_prev, "mixed": self.mixed.state_dict()}

    def load_state_dict(self, state: dict, device: torch.device | str = "cpu") -> None:
        for key in ("z", "v", "z_prev"):
            value = state.get(key)
            setattr(self, key, None if value is None else value.to(device))
        self.mixed.load_state_dict(state.get("mixed"), device)


@dataclass
class SolveStats:
    """Filled in by a forward/backward pass: the solver results and the state at z*."""

    forward: SolverResult | None = None
    backward: SolverResult | None = None
    z: Tensor | None = None  # (n, m) equilibrium features Z*
    mask: Tensor | None = None  # (n, m) ReLU activity D at z*
    v: Tensor | None = None  # (n, m) readout adjoint V (after the backward pass)
    extra: dict = field(default_factory=dict)


def gradient_certificate(
    r: Tensor, V: Tensor, per_sample: Tensor, feature_norms: Tensor, s: float, gamma: float,
    grad_norm: float,
) -> tuple[float, float]:  # fmt: skip
    """(C, delta): a bound C on ||g~ - g|| and delta = C / (||g~|| - C) on ||g~ - g|| / ||g||.

    g~ is the gradient computed from the adjoint V returned by the solver, g the one from the
    exact adjoint at the same equilibrium. Row i of the adjoint solves v_i = a + v_i J_i with
    J_i = s D_i W, so ||J_i||_2 <= s ||W||_2 = ``gamma`` (ReLU's slope is 0 or 1). A solve
    returns V_i = G(w_i) for its last tested iterate w_i, with relative residual rho_i =
    ||G(w_i) - w_i|| / ||V_i|| (``per_sample``). From G(w) - w = -(w - v)(I - J) and
    G(w) - v = (w - v) J,

        ||V_i - v_i|| <= gamma / (1 - gamma) * rho_i * ||V_i||.

    The gradient's V-dependent blocks (dL/dW, dL/dU, the pre-activation biases) are sums
    over samples of rank-one terms s r_i (e_i * d_i)^T (z_i, x_i, 1, 1) with e_i = V_i - v_i
    (dL/da and dL/db_a do not depend on V), so by the triangle inequality

        ||g~ - g|| <= C = s gamma / (1 - gamma) sum_i |r_i| rho_i ||V_i|| ||(z_i, x_i[, 1, 1])||

    (``feature_norms`` holds the last factor), and since ||g|| >= ||g~|| - C,
    ||g~ - g|| / ||g|| <= C / (||g~|| - C). With gamma >= 1 or C >= ||g~|| nothing is
    certified: (inf, inf).
    """
    if not gamma < 1:
        return math.inf, math.inf
    terms = r.abs() * per_sample.to(r) * V.norm(dim=1) * feature_norms
    bound = float(s * gamma / (1 - gamma) * terms.sum())
    if not bound < grad_norm:
        return bound, math.inf
    return bound, bound / (grad_norm - bound)


@dataclass
class GradientTolerance:
    """The adjoint's tolerance chosen each step for a relative gradient error <= ``delta``.

    Why a relative error suffices (docs/science.md, Inexact gradients): for an L-smooth loss
    with ||grad f||^2 >= 2 mu (f - f*) and a step theta - eta g~ with ||g~ - g|| <= delta ||g||,

        f(t+1) - f* <= (1 - 2 mu eta k) (f(t) - f*),  k = (1 - delta) - (L eta / 2)(1 + delta)^2,

    and for eta <= 1/L, k >= (1 - 4 delta - delta^2) / 2 > 0 whenever delta < sqrt(5) - 2:
    gradient descent keeps a linear rate, 1 - mu eta (1 - 4 delta - delta^2) at worst.

    Each backward pass solves the adjoint to ``tol``, computes the gradient and its
    certificate (:func:`gradient_certificate`). A tolerance tau bounds every rho_i, so it
    certifies C <= tau K with K = s gamma / (1 - gamma) sum_i |r_i| ||V_i|| ||(z_i, x_i)||;
    delta holds once C <= delta ||g~|| / (1 + delta), i.e. for tau <= tau* = delta ||g~|| /
    ((1 + delta) K). If the certificate fails, the adjoint is solved further (from its
    answer) to ``margin`` tau*, down to ``floor`` (the configured backward tolerance, what
    runs without this option use); a step that the floor cannot certify (e.g. gamma >= 1)
    counts in ``unmet``. The next step starts at ``margin`` tau*, within [floor, ceiling].

    gamma = s ||W||_2 (1 + ``gamma_margin``), with ||W||_2 from a warm-started power
    iteration (a lower bound that tracks a slowly moving W; the margin covers its lag, and
    the trainer's exact audits of ||W||_2 check it). ``worst`` is the largest certificate
    of the run.
    """

    delta: float
    floor: float
    ceiling: float = 0.1
    margin: float = 0.5
    gamma_margin: float = 0.02
    power_iters: int = 3
    tol: float | None = None  # the next solve's tolerance (None: start at the ceiling)
    worst: float = 0.0
    unmet: int = 0
    steps: int = 0
    max_gamma: float = 0.0  # the largest gamma used (compare: the audits' exact s ||W||_2)
    power: PowerNorm | None = None

    def __post_init__(self) -> None:
        if not 0 < self.delta < 1:
            raise ValueError(f"gradient_error must be in (0, 1), got {self.delta}")
        if not 0 < self.floor <= self.ceiling:
            raise ValueError(f"need 0 < floor <= ceiling, got {self.floor}, {self.ceiling}")

    def gamma(self, W: Tensor, s: float) -> float:
        """s ||W||_2 (1 + gamma_margin), ||W||_2 by the warm-started power iteration."""
        from .monitor import PowerNorm  # monitor imports this module

        if self.power is None:
            self.power = PowerNorm(W.shape[0], seed=0, iters=self.power_iters)
        return s * self.power(W.detach()) * (1 + self.gamma_margin)

    def start(self) -> float:
        """The tolerance of this step's first solve."""
        return self.ceiling if self.tol is None else self.tol

    def record(self, certificate: float, tau_star: float, gamma: float) -> None:
        """Keep the step's certificate and set the next step's tolerance."""
        self.steps += 1
        self.max_gamma = max(self.max_gamma, gamma)
        self.worst = max(self.worst, certificate)
        self.unmet += int(not certificate <= self.delta)
        self.tol = min(self.ceiling, max(self.floor, self.margin * tau_star))

    def summary(self) -> dict:
        """What a reader needs to check the bound: target, worst certificate, gamma used."""
        return {
            "target": self.delta,
            "max_certificate": self.worst,
            "unmet_steps": self.unmet,
            "certified_steps": self.steps,
            "max_gamma": self.max_gamma,
        }

    def state_dict(self) -> dict:
        keys = ("tol", "worst", "unmet", "steps", "max_gamma")
        return {
            **{k: getattr(self, k) for k in keys},
            "power": None if self.power is None else self.power.state_dict(),
        }

    def load_state_dict(self, state: dict | None) -> None:
        if not state:
            return
        for key in ("tol", "worst", "unmet", "steps", "max_gamma"):
            setattr(self, key, state[key])
        if state.get("power") is not None:
            from .monitor import PowerNorm  # monitor imports this module

            self.power = PowerNorm(state["power"]["v"].shape[0], iters=self.power_iters)
            self.power.load_state_dict(state["power"])


def equilibrium(
    model: DEQ,
    X: Tensor,
    cfg: SolverConfig,
    z0: Tensor | None = None,
    mixed: MixedConfig | None = None,
    state: MixedState | None = None,
) -> tuple[Tensor, Tensor, SolverResult]:
    """Solve z = s relu(W z + U x) for every row of X without building a graph.

    Returns (Z* (n, m), D (n, m) bool activity at the last evaluation, solver result).
    ``mixed``: solve by defect correction with low-precision sweeps (same fp32 test);
    ``state`` (with ``mixed``): start from the last step's evaluation and record this one.
    """
    with torch.no_grad():
        inj = model.input_injection(X)  # (n, m)
        last: dict[str, Tensor] = {}
        start = z0 if z0 is not None else X.new_zeros(X.shape[0], model.cfg.width)
        if mixed is not None:
            W = model.W.detach()
            f, corr = forward_maps(W, inj, model.scale, cfg.tol, mixed, last, state)
            seed = forward_start(state, W, inj, model.scale, mixed, last) if state else None
            if seed is not None:
                start = seed[0]
            res = defect_correction(f, corr, start, cfg, None if seed is None else seed[1])
            if state is not None:
                state.record_forward(W, inj, last)
            return res.solution, last["h"] > 0, res

        def f(Z: Tensor) -> Tensor:
            h = Z @ model.W.T + inj
            last["h"] = h
            return model.scale * torch.relu(h)

        res = solve(f, start, cfg)
        return res.solution, last["h"] > 0, res


def adjoint(
    model: DEQ,
    mask: Tensor,
    cfg: SolverConfig,
    v0: Tensor | None = None,
    mixed: MixedConfig | None = None,
    state: MixedState | None = None,
) -> tuple[Tensor, SolverResult]:
    """Solve V = a^T + s (V * D) W row-wise: the readout's adjoint at the equilibrium.

    ``mixed``: solve by defect correction with low-precision sweeps (same fp32 test);
    ``state`` (with ``mixed``): start from the last step's evaluation and record this one.
    """
    return _adjoint(model.W, model.a, model.scale, mask, cfg, v0, mixed, state)


def _adjoint(
    W: Tensor, a: Tensor, s: float, mask: Tensor, cfg: SolverConfig, v0: Tensor | None,
    mixed: MixedConfig | None = None, state: MixedState | None = None,
) -> tuple[Tensor, SolverResult]:  # fmt: skip
    """:func:`adjoint` for given W (m, m), a (m,) and scale s (as saved at the forward pass)."""
    with torch.no_grad():
        a_row = a.detach()[None, :]
        maskf = mask.to(W.dtype)
        W = W.detach()
        start = v0 if v0 is not None else a_row.expand(mask.shape[0], -1).clone()
        if mixed is not None:
            last: dict[str, Tensor] = {}
            g_map, corr = adjoint_maps(W, a_row, mask, s, cfg.tol, mixed, last, state)
            seed = adjoint_start(state, W, a_row, mask, s, mixed) if state else None
            if seed is not None:
                start = seed[0]
            res = defect_correction(g_map, corr, start, cfg, None if seed is None else seed[1])
            if state is not None:
                state.record_adjoint(mask, last)
            return res.solution, res

        def g(V: Tensor) -> Tensor:
            return a_row + s * ((V * maskf) @ W)

        res = solve(g, start, cfg)
        return res.solution, res


class _DEQOutput(torch.autograd.Function):
    """f(X) = a^T z*(X) (+ b_a) with the exact implicit gradient for all parameters and X.

    W, U and a are saved at the forward pass (``ctx.save_for_backward``), the scale s as a
    number: changing a parameter in place between forward and backward (an optimizer step,
    ``p.add_``) makes the backward raise PyTorch's "modified by an inplace operation"
    error instead of silently differentiating at other weights than the forward used.
    dL/dX = s (u*D) U is computed only when X requires a gradient.
    """

    @staticmethod
    def forward(ctx, X, W, U, a, b_w, b_u, b_a, model, fwd, bwd, warm, stats, mixed, tolerance):  # noqa: N803
        z0 = warm.guess("z", X.new_empty(X.shape[0], model.cfg.width)) if warm else None
        state = warm.mixed if warm is not None else None
        Z, mask, res = equilibrium(model, X, fwd, z0, mixed, state)
        if warm is not None:
            warm.store("z", Z)
        stats.forward, stats.z, stats.mask = res, Z, mask
        ctx.bwd, ctx.warm, ctx.stats, ctx.mixed = bwd, warm, stats, mixed
        ctx.tolerance = tolerance
        ctx.scale, ctx.biases = model.scale, b_w is not None
        ctx.save_for_backward(X, Z, mask, W, U, a)
        out = Z @ a
        return out + b_a if b_a is not None else out

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, r):  # r = dL/df, (n,)
        X, Z, mask, W, U, a = ctx.saved_tensors  # raises if W, U or a changed in place
        warm, stats = ctx.warm, ctx.stats
        v0 = warm.guess("v", Z) if warm else None
        state = warm.mixed if warm is not None else None

        def grads(V: Tensor) -> tuple:
            return _gradients(r, V, X, Z, mask, U, ctx.scale, ctx.biases, ctx.needs_input_grad[0])

        if ctx.tolerance is None:
            V, res = _adjoint(W, a, ctx.scale, mask, ctx.bwd, v0, ctx.mixed, state)
            out = grads(V)
        else:
            V, res, out = _certified_adjoint(
                ctx.tolerance, grads, r, X, Z, W, a, ctx.scale, mask, ctx.bwd, v0, ctx.mixed,
                state, ctx.biases, stats,
            )  # fmt: skip
        if warm is not None:
            warm.store("v", V)
        stats.backward, stats.v = res, V
        return (*out, None, None, None, None, None, None, None)


def _gradients(
    r: Tensor, V: Tensor, X: Tensor, Z: Tensor, mask: Tensor, U: Tensor, s: float,
    biases: bool, need_x: bool,
) -> tuple:  # fmt: skip
    """(dL/dX, dL/dW, dL/dU, dL/da, dL/db_w, dL/db_u, dL/db_a) from the adjoint V."""
    uD = s * (r[:, None] * V) * mask  # (n, m)
    grad_X = uD @ U if need_x else None  # (n, d)
    grad_W = uD.T @ Z  # (m, m)
    grad_U = uD.T @ X  # (m, d)
    grad_a = Z.T @ r  # (m,)
    if biases:
        grad_b = uD.sum(0)
        return grad_X, grad_W, grad_U, grad_a, grad_b, grad_b.clone(), r.sum()
    return grad_X, grad_W, grad_U, grad_a, None, None, None


def _certified_adjoint(
    tolerance: GradientTolerance, grads, r: Tensor, X: Tensor, Z: Tensor, W: Tensor,
    a: Tensor, s: float, mask: Tensor, bwd: SolverConfig, v0: Tensor | None,
    mixed: MixedConfig | None, state: MixedState | None, biases: bool, stats: SolveStats,
) -> tuple[Tensor, SolverResult, tuple]:  # fmt: skip
    """The adjoint solved as tightly as ``tolerance`` asks, with the gradient it gives.

    Records the step's certificate in ``stats.extra`` (``gradient_certificate``,
    ``adjoint_tol``) and in ``tolerance``; the returned result counts every solve's work.
    """
    with torch.no_grad():
        gamma = tolerance.gamma(W, s)
        extra = 2.0 if biases else 0.0
        feats = (Z.norm(dim=1) ** 2 + X.flatten(1).norm(dim=1) ** 2 + extra).sqrt()
        tol = max(tolerance.floor, tolerance.start())
        V, res = _adjoint(W, a, s, mask, replace(bwd, tol=tol), v0, mixed, state)
        results = [res]
        while True:
            out = grads(V)
            # (the norms without a squared copy of the (m, m) block)
            g_norm = math.hypot(
                *(float(torch.linalg.vector_norm(g)) for g in out[1:] if g is not None)
            )
            _, cert = gradient_certificate(r, V, res.per_sample, feats, s, gamma, g_norm)
            tau_star = _tau_star(tolerance.delta, g_norm, r, V, feats, s, gamma)
            if cert <= tolerance.delta or tol <= tolerance.floor:
                break
            # The MixedState holds this step's first evaluation, still valid for the next step.
            tol = max(tolerance.floor, min(tol / 2, tolerance.margin * tau_star))
            V, res = _adjoint(W, a, s, mask, replace(bwd, tol=tol), V, mixed, None)
            results.append(res)
    tolerance.record(cert, tau_star, gamma)
    stats.extra.update(gradient_certificate=cert, adjoint_tol=tol, gamma=gamma)
    return V, _merged(results, res), out


def _tau_star(
    delta: float, g_norm: float, r: Tensor, V: Tensor, feats: Tensor, s: float, gamma: float
) -> float:
    """The tolerance tau* = delta ||g~|| / ((1 + delta) K) that certifies ``delta``
    (:class:`GradientTolerance`); 0 when nothing can (gamma >= 1), inf when r = 0."""
    if not gamma < 1:
        return 0.0
    unit = float(s * gamma / (1 - gamma) * (r.abs() * V.norm(dim=1) * feats).sum())
    return delta * g_norm / ((1 + delta) * unit) if unit > 0 else math.inf


def _merged(results: list[SolverResult], last: SolverResult) -> SolverResult:
    """``last`` with the iterations and residual traces of all of ``results`` (in order)."""
    if len(results) == 1:
        return last
    return replace(
        last,
        iterations=sum(x.iterations for x in results),
        low_iterations=sum(x.low_iterations for x in results),
        residuals=torch.cat([x.residuals for x in results]),
    )


def deq_output(
    model: DEQ,
    X: Tensor,
    *,
    forward: SolverConfig,
    backward: SolverConfig,
    warm: WarmStart | None = None,
    stats: SolveStats | None = None,
    mixed: MixedConfig | None = None,
    tolerance: GradientTolerance | None = None,
) -> Tensor:
    """Outputs f(x_i) for the rows of X (n, d) -> (n,), differentiable by the implicit rule.

    ``mixed``: both solves by defect correction with low-precision sweeps (overdeq.mixed);
    the stopping tests, the outputs and the gradients stay fp32.
    ``tolerance``: solve the adjoint only as tightly as its relative gradient error target
    needs (:class:`GradientTolerance`; ``backward.tol`` is the tightest it goes), and put the
    step's certificate in ``stats.extra``.

    ``stats`` (if given) receives the solver results, Z* and D after the forward pass and V
    after the backward pass. A solve that does not converge is reported there
    (``stats.forward.converged``); the caller decides what to do about it.
    """
    stats = stats if stats is not None else SolveStats()
    return _DEQOutput.apply(
        X, model.W, model.U, model.a, model.b_w, model.b_u, model.b_a,
        model, forward, backward, warm, stats, mixed, tolerance,
    )  # fmt: skip


def released_output(
    model: DEQ,
    X: Tensor,
    *,
    forward: SolverConfig,
    backward: SolverConfig,
    stats: SolveStats | None = None,
) -> Tensor:
    """The authors' algorithm: cold-start solve, one more differentiable layer application,
    and a hook that solves the adjoint with the same solver on autograd VJPs.

    The layer map recomputes U x on every call, as the released ``f(z, x)`` does.
    """
    stats = stats if stats is not None else SolveStats()

    def f(Z: Tensor) -> Tensor:
        return model.layer(Z, model.input_injection(X))

    with torch.no_grad():
        res = solve(f, X.new_zeros(X.shape[0], model.cfg.width), forward)
    stats.forward = res
    z = f(res.solution)
    z0 = z.detach().clone().requires_grad_()
    f0 = f(z0)

    def hook(grad: Tensor) -> Tensor:
        def vjp_map(y: Tensor) -> Tensor:
            return torch.autograd.grad(f0, z0, y, retain_graph=True)[0] + grad

        bres = solve(vjp_map, grad, backward)
        stats.backward = bres
        return bres.solution

    if z.requires_grad:
        z.register_hook(hook)
    stats.z = z.detach()
    return model.readout(z)
