"""Run configuration: what a training run is, built from a mode preset plus overrides.

A :class:`RunConfig` holds everything that determines a run's numbers (data, model,
training options, seeds); its hash keys checkpoints and results. ``make_run_config`` builds
one from the ``paper`` or ``legacy`` preset, with one keyword per quirk of the released code.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from .data import DataSpec
from .model import DEQConfig, contraction_bound
from .provenance import config_hash
from .solvers import SolverConfig

__all__ = [
    "MODES",
    "PRECISIONS",
    "LOSSES",
    "GRADIENTS",
    "ConfigError",
    "TrainConfig",
    "RunConfig",
    "derive_seed",
    "LEGACY_SOLVER",
    "make_run_config",
    "check_contraction",
]

MODES = ("paper", "legacy")
PRECISIONS = ("float32", "tf32", "float64")
LOSSES = ("half_sse", "sse")  # 1/2 sum of squares (paper) | sum of squares (released code)
GRADIENTS = ("implicit", "released")


class ConfigError(ValueError):
    """A configuration that cannot run; the message names the flag and what is allowed."""


@dataclass(frozen=True)
class TrainConfig:
    """How to train: step size, loss, gradient method, solvers, monitoring, checkpoints."""

    steps: int = 1000
    lr: float | None = None  # None: calibrate eta = lr_scale / lambda_max(Theta_0)
    lr_scale: float = 0.5
    loss: str = "half_sse"
    gradient: str = "implicit"
    forward: SolverConfig = SolverConfig(name="picard", tol=1e-6, max_iter=300)
    backward: SolverConfig = SolverConfig(name="picard", tol=1e-6, max_iter=300)
    warm_start: bool = True
    log_every: int = 10
    audit_every: int = 0  # exact ||W||_2 every k-th log (0: first and last log only)
    power_iters: int = 3
    legacy_readouts: bool = False  # also log the released code's unordered-eig readouts
    checkpoint_every: int = 200
    patience: int = 3  # consecutive steps with an unconverged solve before "diverged"
    precision: str = "float32"
    device: str = "cpu"

    def __post_init__(self) -> None:
        if self.steps < 0:
            raise ConfigError(f"--steps must be >= 0, got {self.steps}")
        if self.lr is not None and not (self.lr > 0 and math.isfinite(self.lr)):
            raise ConfigError(f"--lr must be a positive number, got {self.lr}")
        if not self.lr_scale > 0:
            raise ConfigError(f"--lr-scale must be > 0, got {self.lr_scale}")
        for flag, value, allowed in (
            ("--loss", self.loss, LOSSES),
            ("--gradient", self.gradient, GRADIENTS),
            ("--precision", self.precision, PRECISIONS),
        ):
            if value not in allowed:
                raise ConfigError(f"{flag} {value!r} is not valid; choose one of {list(allowed)}")
        if self.audit_every < 0:
            raise ConfigError(f"--audit-every must be >= 0, got {self.audit_every}")
        if self.log_every < 1:
            raise ConfigError(f"--log-every must be >= 1, got {self.log_every}")
        if self.checkpoint_every < 1:
            raise ConfigError(f"--checkpoint-every must be >= 1, got {self.checkpoint_every}")
        if self.patience < 1:
            raise ConfigError(f"--patience must be >= 1, got {self.patience}")


@dataclass(frozen=True)
class RunConfig:
    """Everything that determines a run's numbers (its hash keys checkpoints and results)."""

    mode: str
    data: DataSpec
    model: DEQConfig
    train: TrainConfig
    seeds: dict[str, int] = field(default_factory=dict)
    allow_expansive: bool = False

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["data"]["classes"] = list(self.data.classes)
        return d

    @property
    def hash(self) -> str:
        # device and checkpoint cadence do not change the numbers the run produces
        d = self.to_dict()
        for key in ("device", "checkpoint_every"):
            d["train"].pop(key)
        return config_hash(d)


def derive_seed(base: int, name: str) -> int:
    """An independent 31-bit seed per random object, from one base seed."""
    return int.from_bytes(hashlib.sha256(f"{base}:{name}".encode()).digest()[:4], "little") >> 1


LEGACY_SOLVER = SolverConfig(
    name="anderson",
    tol=1e-2,
    max_iter=25,
    criterion="global",
    history=5,
    ridge=1e-4,
    ridge_mode="absolute",
    beta=1.0,
)


def make_run_config(
    *,
    mode: str = "paper",
    data: DataSpec,
    width: int,
    seed: int = 0,
    data_seed: int = 0,
    sigma_w: float = 0.4,
    sigma_u: float = 1.0,
    sigma_a: float = 1.0,
    allow_expansive: bool = False,
    **overrides: Any,
) -> RunConfig:
    """Build a run from a mode preset plus explicit overrides (one keyword per quirk).

    ``paper``: no biases, 1/2-sum loss, exact implicit gradient, Picard with tolerance 1e-6
    and warm starts, calibrated step. ``legacy``: the released code -- biases, sum loss,
    Anderson (history 5, absolute ridge 1e-4, global tolerance 1e-2, 25 iterations, cold
    start), one extra layer application with a hook-based backward. Its width-scale bug is a
    separate switch (``width_scale``) so an ablation can flip it alone.
    Overrides: any TrainConfig field, plus ``biases`` and ``width_scale``.
    """
    if mode not in MODES:
        raise ConfigError(f"--mode {mode!r} is not valid; choose one of {list(MODES)}")
    biases = overrides.pop("biases", mode == "legacy")
    width_scale = overrides.pop("width_scale", None)
    if mode == "legacy":
        preset: dict[str, Any] = dict(
            loss="sse",
            gradient="released",
            forward=LEGACY_SOLVER,
            backward=LEGACY_SOLVER,
            warm_start=False,
        )
    else:
        preset = {}
    unknown = set(overrides) - set(TrainConfig.__dataclass_fields__)
    if unknown:
        raise ConfigError(f"unknown training options {sorted(unknown)}")
    train_cfg = TrainConfig(**{**preset, **overrides})
    try:
        model_cfg = DEQConfig(
            d=1,
            width=width,
            sigma_w=sigma_w,
            sigma_u=sigma_u,
            sigma_a=sigma_a,
            biases=biases,
            width_scale=width_scale,
        )
    except ValueError as exc:
        raise ConfigError(f"--{str(exc).replace('_', '-')}") from None
    seeds = {k: derive_seed(seed, k) for k in ("W", "U", "a", "bias")}
    seeds.update(seed=seed, data_seed=data_seed)
    data = replace(
        data, seed=derive_seed(data_seed, "data"), label_seed=derive_seed(data_seed, "labels")
    )
    run = RunConfig(
        mode=mode,
        data=data,
        model=model_cfg,
        train=train_cfg,
        seeds=seeds,
        allow_expansive=allow_expansive,
    )
    check_contraction(run)
    return run


def check_contraction(run: RunConfig) -> None:
    """Paper mode promises a unique equilibrium: refuse an expansive map unless overridden."""
    bound = contraction_bound(run.model.sigma_w, run.model.width, run.model.width_scale)
    if run.mode == "paper" and bound >= 1.0 and not run.allow_expansive:
        raise ConfigError(
            f"--sigma-w {run.model.sigma_w} gives s*||W||_2 ~= 2*sigma_w = {bound:.2f} >= 1 at "
            "init: the layer map is not a contraction, so the equilibrium may not exist or be "
            "unique. Use --sigma-w below 0.5, or pass --allow-expansive to run anyway."
        )
