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
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor

from .model import DEQ
from .solvers import SolverConfig, SolverResult, solve

__all__ = ["WarmStart", "SolveStats", "deq_output", "released_output", "equilibrium", "adjoint"]


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

    def state_dict(self) -> dict[str, Tensor | None]:
        return {"z": self.z, "v": self.v, "z_prev": self.z_prev}

    def load_state_dict(self, state: dict, device: torch.device | str = "cpu") -> None:
        for key in ("z", "v", "z_prev"):
            value = state.get(key)
            setattr(self, key, None if value is None else value.to(device))


@dataclass
class SolveStats:
    """Filled in by a forward/backward pass: the solver results and the state at z*."""

    forward: SolverResult | None = None
    backward: SolverResult | None = None
    z: Tensor | None = None  # (n, m) equilibrium features Z*
    mask: Tensor | None = None  # (n, m) ReLU activity D at z*
    v: Tensor | None = None  # (n, m) readout adjoint V (after the backward pass)
    extra: dict = field(default_factory=dict)


def equilibrium(
    model: DEQ, X: Tensor, cfg: SolverConfig, z0: Tensor | None = None
) -> tuple[Tensor, Tensor, SolverResult]:
    """Solve z = s relu(W z + U x) for every row of X without building a graph.

    Returns (Z* (n, m), D (n, m) bool activity at the last evaluation, solver result).
    """
    with torch.no_grad():
        inj = model.input_injection(X)  # (n, m)
        last: dict[str, Tensor] = {}

        def f(Z: Tensor) -> Tensor:
            h = Z @ model.W.T + inj
            last["h"] = h
            return model.scale * torch.relu(h)

        start = z0 if z0 is not None else X.new_zeros(X.shape[0], model.cfg.width)
        res = solve(f, start, cfg)
        return res.solution, last["h"] > 0, res


def adjoint(
    model: DEQ, mask: Tensor, cfg: SolverConfig, v0: Tensor | None = None
) -> tuple[Tensor, SolverResult]:
    """Solve V = a^T + s (V * D) W row-wise: the readout's adjoint at the equilibrium."""
    return _adjoint(model.W, model.a, model.scale, mask, cfg, v0)


def _adjoint(
    W: Tensor, a: Tensor, s: float, mask: Tensor, cfg: SolverConfig, v0: Tensor | None
) -> tuple[Tensor, SolverResult]:
    """:func:`adjoint` for given W (m, m), a (m,) and scale s (as saved at the forward pass)."""
    with torch.no_grad():
        a_row = a.detach()[None, :]
        maskf = mask.to(W.dtype)
        W = W.detach()

        def g(V: Tensor) -> Tensor:
            return a_row + s * ((V * maskf) @ W)

        start = v0 if v0 is not None else a_row.expand(mask.shape[0], -1).clone()
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
    def forward(ctx, X, W, U, a, b_w, b_u, b_a, model, fwd, bwd, warm, stats):  # noqa: N803
        z0 = warm.guess("z", X.new_empty(X.shape[0], model.cfg.width)) if warm else None
        Z, mask, res = equilibrium(model, X, fwd, z0)
        if warm is not None:
            warm.store("z", Z)
        stats.forward, stats.z, stats.mask = res, Z, mask
        ctx.bwd, ctx.warm, ctx.stats = bwd, warm, stats
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
        V, res = _adjoint(W, a, ctx.scale, mask, ctx.bwd, v0)
        if warm is not None:
            warm.store("v", V)
        stats.backward, stats.v = res, V
        uD = ctx.scale * (r[:, None] * V) * mask  # (n, m)
        grad_X = uD @ U if ctx.needs_input_grad[0] else None  # (n, d)
        grad_W = uD.T @ Z  # (m, m)
        grad_U = uD.T @ X  # (m, d)
        grad_a = Z.T @ r  # (m,)
        if ctx.biases:
            grad_b = uD.sum(0)
            grads_b = (grad_b, grad_b.clone(), r.sum())
        else:
            grads_b = (None, None, None)
        return (grad_X, grad_W, grad_U, grad_a, *grads_b, None, None, None, None, None)


def deq_output(
    model: DEQ,
    X: Tensor,
    *,
    forward: SolverConfig,
    backward: SolverConfig,
    warm: WarmStart | None = None,
    stats: SolveStats | None = None,
) -> Tensor:
    """Outputs f(x_i) for the rows of X (n, d) -> (n,), differentiable by the implicit rule.

    ``stats`` (if given) receives the solver results, Z* and D after the forward pass and V
    after the backward pass. A solve that does not converge is reported there
    (``stats.forward.converged``); the caller decides what to do about it.
    """
    stats = stats if stats is not None else SolveStats()
    return _DEQOutput.apply(
        X, model.W, model.U, model.a, model.b_w, model.b_u, model.b_a,
        model, forward, backward, warm, stats,
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
