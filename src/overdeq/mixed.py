"""Mixed-precision solves with full-precision answers: defect correction for the DEQ.

Both fixed points of a training step are solved to the fp32 stopping test while most of the
work -- the sweeps against W -- runs in a low precision (bfloat16: AVX-512 BF16 or AMX on
recent CPUs, tensor cores on GPUs).

Forward, z = F(z) = s relu(W z + U x). At an iterate z (fp32) take, in fp32,

    h = W z + U x,   F(z) = s relu(h),   r = F(z) - z.

If the fp32 relative residual ||r_i|| / ||F(z)_i|| meets the tolerance for every sample the
solve stops and returns F(z) (as Picard does). Otherwise the correction delta of the exact
equation z + delta = F(z + delta), i.e.

    delta = s relu(h + W delta) - z,

is iterated with W delta in the low precision (W and delta rounded, the product accumulated
and h, z kept in fp32), starting from delta = r (the first sweep, which needs no product),
and z <- z + delta. Rounding W and delta perturbs the correction by about the unit round-off
u_low (2^-8 for bfloat16) times ||delta||, so each outer step reduces the true residual by a
factor of order u_low / (1 - L) (L: the contraction of F), not to zero; the outer loop then
evaluates the true fp32 residual again (measured: each outer step cuts it by about 1e-3).
The answer is therefore judged by the same fp32 test as a plain solve, and agrees with the
fp32 equilibrium to the solver tolerance.

Adjoint, V = G(V) = a^T + s (V * D) W (linear, row-wise): in fp32, R = G(V) - V; the
correction solves delta = R + s (delta * D) W, iterated with (delta * D) W in the low
precision from delta = R; V <- V + delta, and the fp32 residual of G is checked again.

Inner sweeps of one correction stop when the increment e_j = max_i ||delta_{j+1} -
delta_j||_i / ||F_i|| falls below ``inner_ratio * tol`` (the correction is then as good as
the tolerance asks), or below eps_low * e_1 (eps_low = 2^-7, the machine epsilon of
bfloat16: measured, the increments flatten out at about 3e-3 e_1, the round-off that every
sweep adds; more sweeps cannot help there, only a fresh fp32 residual can), or when they no
longer shrink by ``stall`` per sweep, or after ``max_sweeps``.

Between training steps, :class:`MixedState` keeps the last fp32 evaluations, so that a
step's first residual is an update of the last one rather than a new fp32 product; it only
seeds the first correction. A warm-started step then needs one fp32 product for the
forward solve and two for the adjoint.

The returned :class:`~overdeq.solvers.SolverResult` counts every map application in
``iterations`` (fp32 evaluations plus low-precision sweeps; ``low_iterations`` of them low),
and its ``residuals`` are the true fp32 residuals at each fp32 evaluation.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from .solvers import SolverConfig, SolverResult, relative_residuals

__all__ = [
    "MixedConfig",
    "MixedState",
    "defect_correction",
    "forward_maps",
    "forward_start",
    "adjoint_maps",
    "adjoint_start",
]

_EPS = 1e-12

# (fp32 map, correction) where the correction takes (z, F(z), sweep budget) and returns
# (delta, number of low-precision sweeps it used).
Map = Callable[[Tensor], Tensor]
Correction = Callable[[Tensor, Tensor, int], tuple[Tensor, int]]


@dataclass(frozen=True)
class MixedConfig:
    """Options of the low-precision correction sweeps (the stopping test is the solver's)."""

    low: torch.dtype = torch.bfloat16  # dtype of W and delta in the correction sweeps
    inner_ratio: float = 0.1  # stop sweeping when the increment is below inner_ratio * tol
    stall: float = 0.7  # ... or when it shrinks by less than this factor per sweep
    max_sweeps: int = 60  # ... or after this many sweeps in one correction

    def __post_init__(self) -> None:
        if not 0 < self.inner_ratio <= 1:
            raise ValueError(f"inner_ratio must be in (0, 1], got {self.inner_ratio}")
        if not 0 < self.stall < 1:
            raise ValueError(f"stall must be in (0, 1), got {self.stall}")
        if self.max_sweeps < 1:
            raise ValueError(f"max_sweeps must be >= 1, got {self.max_sweeps}")


def _sweeps(
    step: Callable[[Tensor], Tensor], delta: Tensor, scale: Tensor, target: float,
    mcfg: MixedConfig, budget: int,
) -> tuple[Tensor, int]:  # fmt: skip
    """Iterate delta <- step(delta) until the increment (relative to ``scale``) is small.

    ``delta`` is the sweeps' own: each increment step(delta) - delta is formed in the buffer
    of the iterate it replaces. Returns the last step value and the number of sweeps.
    """
    sweeps, last, floor, new = 0, math.inf, 0.0, delta
    while sweeps < min(budget, mcfg.max_sweeps):
        new = step(delta)
        sweeps += 1
        inc = float((torch.sub(new, delta, out=delta).norm(dim=1) / scale).max())
        if sweeps == 1:  # round-off of one low-precision sweep, relative to the correction
            floor = torch.finfo(mcfg.low).eps * inc
        if not math.isfinite(inc) or inc <= max(target, floor) or inc > mcfg.stall * last:
            return new, sweeps
        last = inc
        delta = new
    return new, sweeps


@dataclass
class MixedState:
    """What the last step's fp32 evaluations leave for the next step's first residual.

    Along gradient descent the weights move little per step, so the first residual of a
    step need not cost an fp32 product against W: with W_old, the last fp32 evaluation's
    iterate z_k and product, and dW = W - W_old (small),

        forward:  W z_k + U x = (W_old z_k + U_old x) + dW z_k + (U - U_old) x,
        adjoint:  (v_k * D) W = (v_k * D_old) W_old + (v_k * (D - D_old)) W + (v_k * D) dW,

    where dW z_k and the two adjoint terms are small and are formed in the low precision
    (their round-off is u_low times a small quantity). This estimate only seeds the first
    correction; the stopping test is always a fresh fp32 evaluation, so it cannot change
    what is accepted, only how soon. The state dict holds all but ``dw`` (which each
    forward recomputes before the adjoint uses it), for a bit-identical resume.
    """

    W: Tensor | None = None  # (m, m) the weights of the last solves
    inj: Tensor | None = None  # (n, m) their input injection
    z: Tensor | None = None  # (n, m) forward: the last iterate evaluated in fp32
    h: Tensor | None = None  # (n, m) ... and its h = z W_old^T + inj_old
    mask: Tensor | None = None  # (n, m) the ReLU activity of the last adjoint
    v: Tensor | None = None  # (n, m) adjoint: the last iterate evaluated in fp32
    p: Tensor | None = None  # (n, m) ... and its product (v * mask) W_old
    dw: Tensor | None = None  # (m, m) low precision: W - W_old, set by forward_start
    # W in the low precision, for the solves of one step (both read the same W): kept with
    # the identity of the W it was rounded from (storage, in-place version counter, dtype).
    w_low: Tensor | None = None
    w_low_of: tuple | None = None

    def low_weight(self, W: Tensor, low: torch.dtype) -> Tensor:
        """W rounded to ``low``, once per value of W (an optimizer step changes its version)."""
        key = (W.data_ptr(), W._version, W.shape, low)
        if self.w_low_of != key:
            self.w_low, self.w_low_of = _round_into(self.w_low, W, low), key
        return self.w_low

    def record_forward(self, W: Tensor, inj: Tensor, last: dict[str, Tensor]) -> None:
        """Keep the weights and the last fp32 evaluation of a forward solve."""
        if self.W is not None and self.W.shape == W.shape and self.W.dtype == W.dtype:
            self.W.copy_(W)  # in place: no new (m, m) buffer each step
        else:
            self.W = W.detach().clone()
        self.inj, self.z, self.h = inj, last["z"], last["h"]

    def record_adjoint(self, mask: Tensor, last: dict[str, Tensor]) -> None:
        """Keep the activity and the last fp32 evaluation of an adjoint solve."""
        self.mask, self.v, self.p = mask, last["v"], last["p"]

    def state_dict(self) -> dict[str, Tensor | None]:
        return {k: getattr(self, k) for k in ("W", "inj", "z", "h", "mask", "v", "p")}

    def load_state_dict(self, state: dict | None, device: torch.device | str = "cpu") -> None:
        for key in ("W", "inj", "z", "h", "mask", "v", "p"):
            value = (state or {}).get(key)
            setattr(self, key, None if value is None else value.to(device))

    def usable(self, W: Tensor, like: Tensor, *names: str) -> bool:
        """The stored tensors exist and fit this solve (same shapes, dtype and device)."""
        if self.W is None or self.W.shape != W.shape or self.W.dtype != W.dtype:
            return False
        for name in names:
            old = getattr(self, name)
            if old is None or old.shape != like.shape or old.device != like.device:
                return False
        return True


def _low_weight(W: Tensor, mcfg: MixedConfig, state: MixedState | None) -> Tensor:
    """W in the low precision: the state's copy for this W, or a fresh one without a state."""
    return state.low_weight(W, mcfg.low) if state is not None else W.to(mcfg.low)


def _round_into(buffer: Tensor | None, x: Tensor, low: torch.dtype) -> Tensor:
    """x rounded to ``low``, into ``buffer`` when it fits (no new (m, m) tensor each step)."""
    if (
        buffer is None
        or buffer.shape != x.shape
        or buffer.dtype != low
        or buffer.device != x.device
    ):
        return x.to(low)
    return buffer.copy_(x)


class _Buffers:
    """The buffers of one correction's sweeps, allocated once (a fresh (n, m) tensor per
    sweep costs page faults on a CPU that can exceed the arithmetic of the sweep): the
    iterate and the product in the low precision, and two full-precision buffers that take
    turns holding the step value (never the one the sweep reads)."""

    def __init__(self, like: Tensor, low: torch.dtype) -> None:
        self.low_in = torch.empty(like.shape, dtype=low, device=like.device)
        self.prod = torch.empty(like.shape, dtype=low, device=like.device)
        self.full = (torch.empty_like(like), torch.empty_like(like))

    def product(self, delta: Tensor, w: Tensor, mask: Tensor | None = None) -> Tensor:
        """(delta [* mask]) @ w with the operands in the low precision, as a full-precision
        tensor that is not ``delta``."""
        x = self.low_in.copy_(delta)
        if mask is not None:
            x.mul_(mask)
        torch.mm(x, w, out=self.prod)
        out = self.full[0] if delta.data_ptr() != self.full[0].data_ptr() else self.full[1]
        return out.copy_(self.prod)


def forward_maps(
    W: Tensor, inj: Tensor, s: float, tol: float, mcfg: MixedConfig, last: dict[str, Tensor],
    state: MixedState | None = None,
) -> tuple[Map, Correction]:  # fmt: skip
    """The fp32 layer map F and its correction; F keeps its input and h = W z + inj in
    ``last["z"]``, ``last["h"]`` (the correction reads ``last["h"]``). With ``state``, W is
    rounded once per step for both solves (:meth:`MixedState.low_weight`)."""
    w_low = _low_weight(W, mcfg, state)

    def f(Z: Tensor) -> Tensor:
        h = Z @ W.T + inj
        last["z"], last["h"] = Z, h
        return s * torch.relu(h)

    def correction(Z: Tensor, FZ: Tensor, budget: int) -> tuple[Tensor, int]:
        h, neg_z, buf = last["h"], -Z, _Buffers(Z, mcfg.low)

        def step(delta: Tensor) -> Tensor:  # s relu(h + W delta) - Z
            out = buf.product(delta, w_low.T).add_(h).relu_()
            return torch.add(neg_z, out, alpha=s, out=out)

        scale = FZ.norm(dim=1) + _EPS
        return _sweeps(step, FZ - Z, scale, mcfg.inner_ratio * tol, mcfg, budget)

    return f, correction


def forward_start(
    state: MixedState, W: Tensor, inj: Tensor, s: float, mcfg: MixedConfig,
    last: dict[str, Tensor],
) -> tuple[Tensor, Tensor] | None:  # fmt: skip
    """(z_k, estimate of F(z_k)) from the last step's evaluation (MixedState), or None.

    Sets ``last["h"]`` to the estimated h, which the correction then reads.
    """
    if not state.usable(W, inj, "z", "h", "inj"):
        return None
    # dW = W - W_old without a new (m, m) float32 buffer: W_old - W in place, rounded, negated;
    # then the state holds W itself (as record_forward would leave it).
    dw = state.dw = _round_into(state.dw, state.W.sub_(W), mcfg.low).neg_()
    state.W.copy_(W)
    h = state.h + (state.z.to(mcfg.low) @ dw.T).to(W.dtype) + (inj - state.inj)
    last["z"], last["h"] = state.z, h
    return state.z, s * torch.relu(h)


def adjoint_maps(
    W: Tensor, a_row: Tensor, mask: Tensor, s: float, tol: float, mcfg: MixedConfig,
    last: dict[str, Tensor], state: MixedState | None = None,
) -> tuple[Map, Correction]:  # fmt: skip
    """The fp32 adjoint map G(V) = a + s (V * D) W (keeping V and (V * D) W in ``last``) and
    its correction delta = R + s (delta * D) W. ``state`` as for :func:`forward_maps`."""
    w_low = _low_weight(W, mcfg, state)
    maskf = mask.to(W.dtype)
    mask_low = mask.to(mcfg.low)

    def g(V: Tensor) -> Tensor:
        p = (V * maskf) @ W
        last["v"], last["p"] = V, p
        return a_row + s * p

    def correction(V: Tensor, GV: Tensor, budget: int) -> tuple[Tensor, int]:
        R = GV - V

        buf = _Buffers(R, mcfg.low)

        def step(delta: Tensor) -> Tensor:  # R + s (delta * D) W
            return buf.product(delta, w_low, mask_low).mul_(s).add_(R)

        scale = GV.norm(dim=1) + _EPS
        return _sweeps(step, R.clone(), scale, mcfg.inner_ratio * tol, mcfg, budget)

    return g, correction


def adjoint_start(
    state: MixedState, W: Tensor, a_row: Tensor, mask: Tensor, s: float, mcfg: MixedConfig
) -> tuple[Tensor, Tensor] | None:
    """(v_k, estimate of G(v_k)) from the last step's adjoint evaluation, or None."""
    if state.dw is None or not state.usable(W, mask, "v", "p", "mask"):
        return None
    low = mcfg.low
    switched = (mask.to(W.dtype) - state.mask.to(W.dtype)) * state.v
    p = state.p + switched.to(low) @ state.low_weight(W, low)
    p = p + (state.v * mask).to(low) @ state.dw
    return state.v, a_row + s * p


def defect_correction(
    f: Map,
    correction: Correction,
    z0: Tensor,
    cfg: SolverConfig,
    estimate: Tensor | None = None,
) -> SolverResult:
    """Solve z = f(z) to the fp32 test of ``cfg`` with low-precision corrections between tests.

    Each outer step evaluates f in fp32 (the stopping test of ``cfg``, as in
    :func:`overdeq.solvers.picard`), then adds the correction. ``estimate`` (an estimate of
    f(z0), e.g. from :func:`forward_start`) replaces the first evaluation: it seeds the
    first correction and is never used to stop. ``cfg.max_iter`` bounds all map
    applications, fp32 and low precision together (an estimate counts as one low one).
    Returns the last fp32 evaluation.
    """
    z, trace, evals = z0, [], 0
    low = 0 if estimate is None else 1
    fz = estimate
    while True:
        if fz is None:
            fz = f(z)
            evals += 1
            crit, per_sample = relative_residuals(fz, z, cfg)
            trace.append(crit)
            if float(crit) < cfg.tol or not torch.isfinite(crit):
                break
        budget = cfg.max_iter - evals - low
        if budget <= 1:
            if not trace:  # spend the last one on the fp32 test
                fz = None
                continue
            break
        delta, sweeps = correction(z, fz, budget - 1)  # keep one evaluation for the test
        low += sweeps
        z, fz = z + delta, None
    residuals = torch.stack(trace).double().cpu()
    final = float(residuals[-1])
    return SolverResult(
        solution=fz,
        converged=bool(final < cfg.tol),
        iterations=evals + low,
        residual=final,
        residuals=residuals,
        per_sample=per_sample.double().cpu(),
        low_iterations=low,
    )
