"""Run configuration: what a training run is, built from a mode preset plus knobs.

A :class:`RunConfig` holds everything that determines a run's numbers (data, model,
training options, seeds); its hash keys checkpoints and results. :func:`make_run_config` is
the one way to build one: the library calls it, ``overdeq train`` calls it with its flags,
and the workflow reaches it through those flags (each key of a training setting in
config/config.yaml is the name of a knob here and of the flag ``--<knob>``).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any

from .data import DataSpec
from .model import DEQConfig, contraction_bound
from .provenance import config_hash
from .seeding import data_seeds, model_seeds
from .solvers import SolverConfig

__all__ = [
    "MODES",
    "PRECISIONS",
    "LOSSES",
    "GRADIENTS",
    "ConfigError",
    "TrainConfig",
    "RunConfig",
    "LEGACY_SOLVER",
    "MODEL_KNOBS",
    "TRAIN_KNOBS",
    "SOLVER_KNOBS",
    "RUN_OPTIONS",
    "make_run_config",
    "check_contraction",
]

MODES = ("paper", "legacy")
# "mixed": fp32 answers (stopping tests, loss, gradients, monitoring), with the correction
# sweeps of the implicit gradient's two solves in bfloat16 (overdeq.mixed). The released
# algorithm has no fp32 test to anchor a correction, so under "mixed" it runs in float32.
PRECISIONS = ("float32", "tf32", "float64", "mixed")
LOSSES = ("half_sse", "sse")  # 1/2 sum of squares (paper) | sum of squares (released code)
GRADIENTS = ("implicit", "released")


class ConfigError(ValueError):
    """A configuration that cannot run; the message names the flag and what is allowed."""


@dataclass(frozen=True)
class TrainConfig:
    """How to train: step size, loss, gradient method, solvers, monitoring, checkpoints.

    The solvers' tolerance defaults to SolverConfig's; training allows 300 iterations.
    """

    steps: int = 1000
    lr: float | None = None  # None: calibrate eta = lr_scale / lambda_max(Theta_0)
    lr_scale: float = 0.5
    loss: str = "half_sse"
    gradient: str = "implicit"
    forward: SolverConfig = SolverConfig(max_iter=300)
    backward: SolverConfig = SolverConfig(max_iter=300)
    warm_start: bool = True
    log_every: int = 10
    audit_every: int = 0  # exact ||W||_2 every k-th log (0: first and last log only)
    power_iters: int = 3
    legacy_readouts: bool = False  # also log the released code's unordered-eig readouts
    checkpoint_every: int = 200
    patience: int = 3  # consecutive steps with an unconverged solve before "diverged"
    precision: str = "float32"
    device: str = "cpu"
    # Stop (status "finished", summary key stopped_at_floor) at the first step whose loss is at
    # or below the round-off floor of the precision (theory.FLOORS) times the initial loss.
    floor_stop: bool = False
    readout_every: int = 1  # legacy_readouts at every k-th log (and the first and last)
    # Solve the adjoint only as tightly as a certified relative gradient error <= this needs
    # (implicit.GradientTolerance; the backward tolerance is the tightest it goes). None: off.
    gradient_error: float | None = None

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
        if self.precision == "mixed" and self.gradient == "implicit":
            for which, solver in (("forward", self.forward), ("backward", self.backward)):
                if solver.name != "picard":
                    raise ConfigError(
                        f"--precision mixed solves by defect correction (Picard sweeps), but "
                        f"the {which} solver is {solver.name!r}: use --solver picard, or "
                        "--precision float32 for that solver"
                    )
        if self.gradient_error is not None:
            if not 0 < self.gradient_error < 1:
                raise ConfigError(
                    f"--gradient-error must be in (0, 1) (a relative gradient error), got "
                    f"{self.gradient_error}; below sqrt(5) - 2 = 0.236 gradient descent keeps "
                    "a linear rate (docs/science.md, Inexact gradients)"
                )
            if self.gradient != "implicit":
                raise ConfigError(
                    "--gradient-error certifies the exact implicit gradient's adjoint; with "
                    f"--gradient {self.gradient} drop it or use --gradient implicit"
                )
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
        # knobs added later are hashed only when set, so earlier runs keep their identity
        for key, default in _LATER_KNOBS.items():
            if d["train"][key] == default:
                d["train"].pop(key)
        return config_hash(d)


_LATER_KNOBS: dict[str, Any] = {"floor_stop": False, "readout_every": 1, "gradient_error": None}


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

# What each mode sets before the caller's knobs: the released code's quirks, all at once.
PRESETS: dict[str, dict[str, Any]] = {
    "paper": {},
    "legacy": dict(
        biases=True,
        loss="sse",
        gradient="released",
        forward=LEGACY_SOLVER,
        backward=LEGACY_SOLVER,
        warm_start=False,
    ),
}

# The knobs of make_run_config, by the dataclass that owns their defaults.
MODEL_KNOBS = tuple(f.name for f in fields(DEQConfig) if f.name not in ("d", "width"))
TRAIN_KNOBS = tuple(f.name for f in fields(TrainConfig))
# A SolverConfig field applies to both solves; prefixed with forward_ or backward_, to one.
# The solver's name is the knob ``solver``.
_SOLVER_FIELDS = {("solver" if f.name == "name" else f.name): f.name for f in fields(SolverConfig)}
SOLVER_KNOBS = tuple(
    f"{prefix}{knob}" for prefix in ("", "forward_", "backward_") for knob in _SOLVER_FIELDS
)
# Every keyword make_run_config takes besides ``data`` and ``width``.
RUN_OPTIONS = (
    "mode",
    "seed",
    "data_seed",
    "allow_expansive",
    *MODEL_KNOBS,
    *TRAIN_KNOBS,
    *SOLVER_KNOBS,
)


def _solvers(train: TrainConfig, knobs: dict[str, Any]) -> TrainConfig:
    """``train`` with the solver knobs applied to its forward and backward SolverConfig."""
    if not knobs:
        return train
    both = {_SOLVER_FIELDS[k]: v for k, v in knobs.items() if k in _SOLVER_FIELDS}
    solvers = {}
    for which in ("forward", "backward"):
        own = {
            _SOLVER_FIELDS[k[len(which) + 1 :]]: v
            for k, v in knobs.items()
            if k.startswith(f"{which}_")
        }
        try:
            solvers[which] = replace(getattr(train, which), **{**both, **own})
        except ValueError as exc:
            raise ConfigError(f"{which} solver: {exc}") from None
    return replace(train, **solvers)


def make_run_config(
    *,
    data: DataSpec,
    width: int,
    mode: str = "paper",
    seed: int = 0,
    data_seed: int = 0,
    allow_expansive: bool = False,
    **knobs: Any,
) -> RunConfig:
    """Build a run from a mode preset plus knobs; a knob not given keeps its dataclass default.

    ``paper``: the paper's model and training (no biases, 1/2-sum loss, exact implicit
    gradient, Picard with warm starts, calibrated step). ``legacy``: the released code --
    biases, sum loss, Anderson (history 5, absolute ridge 1e-4, global tolerance 1e-2, 25
    iterations, cold start), one extra layer application with a hook-based backward. Its
    width-scale bug is a separate knob (``width_scale``) so an ablation can flip it alone.

    Knobs: the model's (:data:`MODEL_KNOBS`: sigma_w, sigma_u, sigma_a, biases,
    width_scale), training's (:data:`TRAIN_KNOBS`, TrainConfig's fields) and the solvers'
    (:data:`SOLVER_KNOBS`: ``tol``, ``max_iter``, ``solver``, ... for both solves,
    ``forward_tol``, ``backward_tol``, ... for one), applied on top of the preset.
    """
    if mode not in MODES:
        raise ConfigError(f"--mode {mode!r} is not valid; choose one of {list(MODES)}")
    unknown = sorted(set(knobs) - set(RUN_OPTIONS))
    if unknown:
        raise ConfigError(
            f"unknown run options {unknown}: knobs are the model's {list(MODEL_KNOBS)}, "
            f"TrainConfig's {list(TRAIN_KNOBS)} and SolverConfig's fields for both solves "
            f"({list(_SOLVER_FIELDS)}), or for one with the prefix forward_ or backward_"
        )
    settings = {**PRESETS[mode], **knobs}
    model_kw = {k: settings.pop(k) for k in MODEL_KNOBS if k in settings}
    solver_kw = {k: settings.pop(k) for k in SOLVER_KNOBS if k in settings}
    train_cfg = _solvers(TrainConfig(**settings), solver_kw)
    try:
        model_cfg = DEQConfig(d=1, width=width, **model_kw)
    except ValueError as exc:
        raise ConfigError(f"--{str(exc).replace('_', '-')}") from None
    seeds = {**model_seeds(seed), "seed": seed, "data_seed": data_seed}
    run = RunConfig(
        mode=mode,
        data=replace(data, **data_seeds(data_seed)),
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
    if run.mode != "paper" or bound < 1.0 or run.allow_expansive:
        return
    m, m_s, sigma_w = run.model.width, run.model.width_scale, run.model.sigma_w
    if m_s is not None and m_s != m and contraction_bound(sigma_w, m) < 1.0:
        raise ConfigError(
            f"--width-scale {m_s} at --width {m} makes the layer map s*relu(W z + U x) with "
            f"s = 1/sqrt({m_s}) expansive at init: s*||W||_2 ~= 2*sigma_w*sqrt(m/{m_s}) = "
            f"{bound:.2f} >= 1 (--sigma-w {sigma_w} is fine with s = 1/sqrt(m)). "
            "--width-scale reproduces the released code's bug; use it with --mode legacy, "
            "drop it, or pass --allow-expansive to run paper mode with it anyway."
        )
    factor = f"*sqrt(m/{m_s})" if m_s is not None and m_s != m else ""
    raise ConfigError(
        f"--sigma-w {sigma_w} gives s*||W||_2 ~= 2*sigma_w{factor} = {bound:.2f} >= 1 at "
        "init: the layer map is not a contraction, so the equilibrium may not exist or be "
        "unique. Use --sigma-w below 0.5, or pass --allow-expansive to run anyway."
    )
