"""The over-parameterised deep equilibrium model of Ling et al. (AISTATS 2023).

    z*(x) = s * relu(W z*(x) + U x [+ b]),   s = 1/sqrt(m)
    f(x)  = a^T z*(x) [+ b_a]

Parameters W (m, m), U (m, d), a (m,) are drawn from N(0, sigma^2) with one generator per
object, so changing one seed (or the width) never reshuffles another object. ``biases`` and
``width_scale`` reproduce the released code (docs/science.md, The released code): every
``nn.Linear`` there carries a bias with PyTorch's default init, and the 1/sqrt(m) factor reads
a module-level width instead of the trained one.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
from torch import Tensor, nn

from .solvers import SolverConfig

if TYPE_CHECKING:
    from .implicit import SolveStats, WarmStart

__all__ = ["DEQConfig", "DEQ", "contraction_bound", "bias_bound", "bias_variance"]


@dataclass(frozen=True)
class DEQConfig:
    """Architecture and initialisation of a DEQ; stored in every checkpoint."""

    d: int  # input dimension
    width: int  # m
    sigma_w: float = 0.4
    sigma_u: float = 1.0
    sigma_a: float = 1.0
    biases: bool = False  # legacy: nn.Linear biases on W, U and the output layer
    width_scale: int | None = None  # legacy: use 1/sqrt(width_scale) instead of 1/sqrt(width)

    def __post_init__(self) -> None:
        if self.width < 1:
            raise ValueError(f"width must be >= 1, got {self.width}")
        if self.d < 1:
            raise ValueError(f"input dimension d must be >= 1, got {self.d}")
        for name in ("sigma_w", "sigma_u", "sigma_a"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)}")
        if self.width_scale is not None and self.width_scale < 1:
            raise ValueError(f"width_scale must be >= 1 or None, got {self.width_scale}")

    @property
    def scale(self) -> float:
        """The factor s in front of the ReLU."""
        return 1.0 / math.sqrt(self.width_scale or self.width)


def contraction_bound(sigma_w: float, width: int, width_scale: int | None = None) -> float:
    """Large-width estimate of the Lipschitz bound s * ||W||_2 at init: 2 sigma_w sqrt(m/m_s).

    ||W||_2 of an m x m Gaussian matrix concentrates at 2 sigma_w sqrt(m) (Bai-Yin), so the
    layer map is a contraction at init when this is below 1.
    """
    return 2.0 * sigma_w * math.sqrt(width / (width_scale or width))


def bias_bound(fan_in: int) -> float:
    """Half-width of PyTorch's default ``nn.Linear`` bias init U(-1/sqrt(fan_in), 1/sqrt(fan_in))."""
    return 1.0 / math.sqrt(fan_in)


def bias_variance(d: int, width: int | None = None) -> float:
    """Var(b_w,i + b_u,i) of ``DEQ(biases=True)``: the bias's share of the pre-activation.

    U(-c, c) has variance c^2 / 3 (:func:`bias_bound`); b_w has fan-in m and b_u fan-in d, so
    the variance is 1/(3d) + 1/(3m). ``width=None`` gives the infinite-width limit 1/(3d),
    the sigma_b^2 of the kernels (kernels.deq_tangent_kernel).
    """
    if d < 1 or (width is not None and width < 1):
        raise ValueError(f"d and width must be >= 1, got d={d}, width={width}")
    fan_ins = (d,) if width is None else (d, width)
    return sum(bias_bound(f) ** 2 / 3.0 for f in fan_ins)


def _generator(seed: int) -> torch.Generator:
    g = torch.Generator(device="cpu")
    g.manual_seed(seed)
    return g


class DEQ(nn.Module):
    """Parameters and the layer map of the DEQ; ``model(X)`` gives f(X) with the exact gradient.

    The solving and the implicit gradient live in implicit.py (``deq_output``); ``model(X)``
    calls it with ``forward_solver`` for z* and ``backward_solver`` for the adjoint
    (default: SolverConfig's defaults), so ``loss(model(X)).backward()`` fills the
    parameters' ``.grad`` (and X's, if it requires one) and any torch optimizer trains it.
    """

    def __init__(
        self,
        cfg: DEQConfig,
        *,
        seeds: dict[str, int] | None = None,
        dtype: torch.dtype = torch.float32,
        device: torch.device | str = "cpu",
        forward_solver: SolverConfig | None = None,
        backward_solver: SolverConfig | None = None,
    ) -> None:
        super().__init__()
        self.cfg = cfg
        self.forward_solver = forward_solver if forward_solver is not None else SolverConfig()
        self.backward_solver = backward_solver if backward_solver is not None else SolverConfig()
        seeds = {"W": 1, "U": 2, "a": 3, "bias": 4, **(seeds or {})}
        m, d = cfg.width, cfg.d
        # Sampled on the CPU in float64, then cast: the same seed gives the same model on
        # every device and precision.
        w = torch.randn(m, m, generator=_generator(seeds["W"]), dtype=torch.float64) * cfg.sigma_w
        u = torch.randn(m, d, generator=_generator(seeds["U"]), dtype=torch.float64) * cfg.sigma_u
        a = torch.randn(m, generator=_generator(seeds["a"]), dtype=torch.float64) * cfg.sigma_a
        kw = {"dtype": dtype, "device": device}
        self.W = nn.Parameter(w.to(**kw))  # (m, m)
        self.U = nn.Parameter(u.to(**kw))  # (m, d)
        self.a = nn.Parameter(a.to(**kw))  # (m,)
        if cfg.biases:
            # PyTorch's nn.Linear default: U(-1/sqrt(fan_in), 1/sqrt(fan_in)) (bias_variance).
            g = _generator(seeds["bias"])

            def uniform(size: tuple[int, ...], fan_in: int) -> Tensor:
                bound = bias_bound(fan_in)
                x = torch.rand(size, generator=g, dtype=torch.float64) * 2 * bound - bound
                return x.to(**kw)

            self.b_w = nn.Parameter(uniform((m,), m))
            self.b_u = nn.Parameter(uniform((m,), d))
            self.b_a = nn.Parameter(uniform((), m))
        else:
            self.b_w = self.b_u = self.b_a = None

    @property
    def scale(self) -> float:
        return self.cfg.scale

    def forward(
        self, X: Tensor, *, warm: WarmStart | None = None, stats: SolveStats | None = None
    ) -> Tensor:
        """f(x_i) = a^T z*(x_i) (+ b_a) for the rows of X: (n, d) -> (n,), exact implicit gradient.

        ``warm`` (implicit.WarmStart) reuses the last solutions as initial guesses;
        ``stats`` (implicit.SolveStats) receives the solver results, and then an unconverged
        solve is the caller's to judge. Without ``stats`` an unconverged forward solve is an
        error: the outputs would not be at an equilibrium.
        """
        from .implicit import SolveStats, deq_output  # implicit imports this module

        own = stats is None
        stats = SolveStats() if own else stats
        out = deq_output(
            self,
            X,
            forward=self.forward_solver,
            backward=self.backward_solver,
            warm=warm,
            stats=stats,
        )
        if own and not stats.forward.converged:
            res, cfg = stats.forward, self.forward_solver
            raise RuntimeError(
                f"DEQ forward: the {cfg.name} solve did not converge in {res.iterations} "
                f"iterations (residual {res.residual:.2e} > tol {cfg.tol:g}). Pass "
                "forward_solver=SolverConfig(max_iter=...) with more iterations to DEQ, check "
                "that the layer map contracts (2 sigma_w < 1), or pass stats=SolveStats() to "
                "accept unconverged outputs."
            )
        return out

    def input_injection(self, X: Tensor) -> Tensor:
        """U x (+ biases) for every sample: (n, d) -> (n, m)."""
        inj = X @ self.U.T
        if self.b_w is not None:
            inj = inj + self.b_w + self.b_u
        return inj

    def layer(self, Z: Tensor, inj: Tensor) -> Tensor:
        """One application of the layer map: s * relu(Z W^T + inj), (n, m) -> (n, m)."""
        return self.scale * torch.relu(Z @ self.W.T + inj)

    def readout(self, Z: Tensor) -> Tensor:
        """f = Z a (+ b_a): (n, m) -> (n,)."""
        out = Z @ self.a
        return out + self.b_a if self.b_a is not None else out

    def weight_blocks(self) -> dict[str, Tensor]:
        """The trained tensors by name (biases only when present)."""
        blocks = {"W": self.W, "U": self.U, "a": self.a}
        if self.b_w is not None:
            blocks.update(b_w=self.b_w, b_u=self.b_u, b_a=self.b_a)
        return blocks
