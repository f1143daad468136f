"""Full-batch gradient descent on a DEQ, with honest monitoring, checkpoints and resume.

    theta(t+1) = theta(t) - eta * grad L(theta(t)),   L = 1/2 sum_i (f(x_i) - y_i)^2

The step eta is either given or calibrated as c / lambda_max(Theta_0) from the empirical
tangent-kernel Gram at init (monitor.tangent_gram), which makes the linearised dynamics
r(t+1) = (I - eta Theta_0) r(t) stable for any c < 2 (c < 1 keeps every mode monotone).

A run directory holds ``history.csv`` (one row per logged step), ``summary.json`` (status,
headline numbers, provenance), ``spectrum.npz`` (eigen-decomposition of Theta_0 and r_0, for
the rate prediction) and ``checkpoint.pt``. Running the same configuration into the same
directory resumes from the checkpoint, and a finished run is not redone.
"""

from __future__ import annotations

import hashlib
import math
import sys
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .data import Dataset, DataSpec, load_dataset
from .implicit import SolveStats, WarmStart, deq_output, released_output
from .io import atomic_torch_save, read_json, write_csv, write_json
from .model import DEQ, DEQConfig, contraction_bound
from .monitor import (
    PowerNorm,
    exact_spectral_norm,
    gram_lambda_min,
    legacy_readouts,
    relative_movement,
    tangent_gram,
)
from .provenance import config_hash, provenance
from .solvers import SolverConfig

__all__ = ["TrainConfig", "RunConfig", "MODES", "PRECISIONS", "LOSSES", "GRADIENTS",
           "make_run_config", "train", "fit_rate", "FLOORS", "derive_seed", "RunResult", "ConfigError"]

MODES = ("paper", "legacy")
PRECISIONS = ("float32", "tf32", "float64")
LOSSES = ("half_sse", "sse")  # 1/2 sum of squares (paper) | sum of squares (released code)
GRADIENTS = ("implicit", "released")
HISTORY_COLUMNS = [
    "step", "loss", "lambda_min", "w_norm", "lipschitz", "w_norm_exact", "fwd_iters",
    "bwd_iters", "fwd_residual", "bwd_residual", "fwd_converged", "bwd_converged",
    "move_W", "move_U", "move_a", "lambda_min_legacy", "w_norm_legacy",
]


CHECKPOINT_FORMAT = 2  # bump when the checkpoint's contents change


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
        for flag, value, allowed in (("--loss", self.loss, LOSSES),
                                     ("--gradient", self.gradient, GRADIENTS),
                                     ("--precision", self.precision, PRECISIONS)):
            if value not in allowed:
                raise ConfigError(f"{flag} {value!r} is not valid; choose one of {list(allowed)}")
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


LEGACY_SOLVER = SolverConfig(name="anderson", tol=1e-2, max_iter=25, criterion="global",
                             history=5, ridge=1e-4, ridge_mode="absolute", beta=1.0)


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
        preset: dict[str, Any] = dict(loss="sse", gradient="released", forward=LEGACY_SOLVER,
                                      backward=LEGACY_SOLVER, warm_start=False)
    else:
        preset = {}
    unknown = set(overrides) - set(TrainConfig.__dataclass_fields__)
    if unknown:
        raise ConfigError(f"unknown training options {sorted(unknown)}")
    train_cfg = TrainConfig(**{**preset, **overrides})
    try:
        model_cfg = DEQConfig(d=1, width=width, sigma_w=sigma_w, sigma_u=sigma_u,
                              sigma_a=sigma_a, biases=biases, width_scale=width_scale)
    except ValueError as exc:
        raise ConfigError(f"--{str(exc).replace('_', '-')}") from None
    seeds = {k: derive_seed(seed, k) for k in ("W", "U", "a", "bias")}
    seeds.update(seed=seed, data_seed=data_seed)
    data = replace(data, seed=derive_seed(data_seed, "data"),
                   label_seed=derive_seed(data_seed, "labels"))
    run = RunConfig(mode=mode, data=data, model=model_cfg, train=train_cfg, seeds=seeds,
                    allow_expansive=allow_expansive)
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


@dataclass(frozen=True)
class RunResult:
    summary: dict[str, Any]
    history: list[dict[str, Any]]
    resumed_from: int | None  # step of the checkpoint resumed from, if any
    skipped: bool  # True when a finished run was found and nothing was computed


# ---------------------------------------------------------------------------------------


def _set_precision(precision: str) -> torch.dtype:
    torch.backends.cuda.matmul.allow_tf32 = precision == "tf32"
    torch.backends.cudnn.allow_tf32 = precision == "tf32"
    torch.set_float32_matmul_precision("high" if precision == "tf32" else "highest")
    return torch.float64 if precision == "float64" else torch.float32


# Below this fraction of the initial loss, round-off flattens the curve (float32 equilibria
# are accurate to ~1e-7, so the loss floors near 1e-12 of its initial value).
FLOORS = {"float64": 1e-20, "float32": 1e-9, "tf32": 1e-5}


def fit_rate(steps: np.ndarray, losses: np.ndarray, floor: float = 1e-9
             ) -> tuple[float, float, int]:
    """Per-step linear convergence factor of the loss over its geometric phase.

    The phase starts once the loss is below half its initial value (past the transient of
    the fast modes) and ends where it reaches ``floor`` times the initial value (round-off;
    see FLOORS). Returns (rate, R^2 of the log-linear fit, number of points); NaN if fewer
    than 3 points.
    """
    steps, losses = np.asarray(steps, float), np.asarray(losses, float)
    ok = np.isfinite(losses) & (losses > 0)
    steps, losses = steps[ok], losses[ok]
    if len(losses) < 3:
        return math.nan, math.nan, len(losses)
    phase = (losses <= 0.5 * losses[0]) & (losses >= floor * losses[0])
    if phase.sum() < 3:
        phase = losses >= floor * losses[0]
    if phase.sum() < 3:
        return math.nan, math.nan, int(phase.sum())
    t, logl = steps[phase], np.log(losses[phase])
    slope, intercept = np.polyfit(t, logl, 1)
    pred = slope * t + intercept
    ss_tot = float(((logl - logl.mean()) ** 2).sum())
    r2 = 1.0 - float(((logl - pred) ** 2).sum()) / ss_tot if ss_tot > 0 else 1.0
    return float(math.exp(slope)), r2, int(phase.sum())


class _Progress:
    """A one-line bar on a terminal, plain log lines otherwise (e.g. under Snakemake)."""

    def __init__(self, total: int, enabled: bool, stream=sys.stderr) -> None:
        self.total, self.enabled, self.stream = total, enabled, stream
        self.tty = enabled and stream.isatty()
        self.last_plain = -1

    def update(self, step: int, loss: float, extra: str = "") -> None:
        if not self.enabled:
            return
        frac = step / self.total if self.total else 1.0
        if self.tty:
            bar = "#" * int(30 * frac)
            self.stream.write(f"\r[{bar:<30}] {step}/{self.total} loss {loss:.3e} {extra}")
            self.stream.flush()
        else:
            decile = int(10 * frac)
            if decile != self.last_plain:
                self.last_plain = decile
                print(f"step {step}/{self.total} loss {loss:.6e} {extra}", file=self.stream,
                      flush=True)

    def close(self) -> None:
        if self.tty:
            self.stream.write("\n")


def _loss(out: torch.Tensor, y: torch.Tensor, kind: str) -> torch.Tensor:
    sse = ((out - y) ** 2).sum()
    return 0.5 * sse if kind == "half_sse" else sse


def _calibrate(model: DEQ, X: torch.Tensor, y: torch.Tensor, cfg: TrainConfig,
               loss_factor: float) -> dict[str, Any]:
    """Theta_0 at init: its spectrum, the calibrated step, and r_0 in its eigenbasis.

    ``model`` is the float64 twin of the initial model (same seeds), so the tight solves
    below are not limited by float32 round-off.
    """
    X, y = X.double(), y.double()
    tight = SolverConfig(name="picard", tol=1e-10, max_iter=5000)
    theta = tangent_gram(model, X, cfg=tight)  # (n, n) float64
    evals, evecs = torch.linalg.eigh(theta)
    with torch.no_grad():
        from .implicit import equilibrium

        Z, _, _ = equilibrium(model, X, tight)
        r0 = (model.readout(Z) - y).double()
    coeffs = evecs.T @ r0  # r_0 in the eigenbasis of Theta_0
    lam_max = float(evals[-1])
    return {"theta0_lambda_max": lam_max, "theta0_lambda_min": float(evals[0]),
            "calibrated_lr": cfg.lr_scale / (loss_factor * lam_max),
            "evals": evals.cpu().numpy(), "coeffs": coeffs.cpu().numpy()}


def train(
    run: RunConfig,
    out: str | Path | None = None,
    *,
    dataset: Dataset | None = None,
    overwrite: bool = False,
    progress: bool = False,
    stop_after: int | None = None,
    tags: dict[str, str] | None = None,
) -> RunResult:
    """Train ``run``; with ``out`` write results there and resume from its checkpoint.

    ``dataset`` overrides loading ``run.data`` (e.g. a prepared .npz). ``overwrite`` allows
    replacing results of a *different* configuration found in ``out``. ``stop_after``
    interrupts after that many steps of this call (tests of resume). ``tags`` are labels
    copied into the summary (they do not change the numbers, so they are not hashed).
    """
    cfg = run.train
    out = Path(out) if out is not None else None
    rhash = run.hash
    if out is not None:
        done = _finished(out, rhash, overwrite)
        if done is not None:
            return done
        out.mkdir(parents=True, exist_ok=True)
        for stale in out.glob(".*.tmp"):  # left by a write that was killed midway
            stale.unlink()

    t_start = time.perf_counter()
    device = torch.device(cfg.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError("--device cuda was requested but no CUDA device is available; "
                          "use --device cpu")
    dtype = _set_precision(cfg.precision)
    ds = dataset if dataset is not None else load_dataset(run.data)
    if ds.n != run.data.n:
        raise ConfigError(f"the data file holds {ds.n} samples but --n is {run.data.n}")
    X, y = ds.tensors(dtype=dtype, device=device)
    model_cfg = replace(run.model, d=ds.d)
    seeds = {k: run.seeds[k] for k in ("W", "U", "a", "bias")}
    model = DEQ(model_cfg, seeds=seeds, dtype=dtype, device=device)
    init = {k: v.detach().clone() for k, v in model.weight_blocks().items()}
    opt = torch.optim.SGD(model.parameters(), lr=1.0)  # lr set below
    loss_factor = 1.0 if cfg.loss == "half_sse" else 2.0

    warm = WarmStart()
    power = PowerNorm(model_cfg.width, seed=run.seeds["W"], iters=cfg.power_iters)
    history: list[dict[str, Any]] = []
    step, unconverged, elapsed_before = 0, 0, 0.0
    resumed_from = None
    ckpt = out / "checkpoint.pt" if out is not None else None
    state = _load_checkpoint(ckpt, rhash, overwrite) if ckpt is not None else None
    if state is not None:
        model.load_state_dict(state["params"])
        warm.load_state_dict(state["warm"], device)
        power.load_state_dict(state["power"])
        history, step = state["history"], state["step"]
        unconverged, elapsed_before = state["unconverged"], state["elapsed"]
        calib = state["calib"]
        torch.set_rng_state(state["rng"]["torch"])
        resumed_from = step
    else:
        # Theta_0 is computed even for a given step: E6 predicts the loss curve from it.
        twin = DEQ(model_cfg, seeds=seeds, dtype=torch.float64, device=device)
        try:
            calib = _calibrate(twin, X, y, cfg, loss_factor)
        except RuntimeError as exc:  # no equilibrium at init (e.g. the width-scale bug)
            calib = {"error": str(exc)}
        del twin
    if cfg.lr is None and "calibrated_lr" not in calib:
        reason = (f"the step could not be calibrated at step 0: {calib['error']}; the layer "
                  "map is probably not a contraction. Pass --lr to train anyway.")
        summary = _summarise(run, [], "diverged", reason, 0, math.nan, calib, 0)
        summary["tags"] = dict(tags or {})
        return _write_final(out, run, rhash, summary, [], ds, device, cfg, t_start, None)
    lr = cfg.lr if cfg.lr is not None else calib["calibrated_lr"]
    for group in opt.param_groups:
        group["lr"] = lr
    if out is not None and state is None:
        _write_spectrum(out, calib, X, y)

    forward = released_output if cfg.gradient == "released" else deq_output
    fwd_kwargs: dict[str, Any] = dict(forward=cfg.forward, backward=cfg.backward)
    if cfg.gradient == "implicit":
        fwd_kwargs["warm"] = warm if cfg.warm_start else None
    bar = _Progress(cfg.steps, progress)
    n_logs_total = cfg.steps // cfg.log_every + 1
    status, reason = "finished", ""
    calls = 0

    def save_checkpoint() -> None:
        if ckpt is None:
            return
        atomic_torch_save({
            "format": CHECKPOINT_FORMAT, "config": run.to_dict(), "config_hash": rhash,
            "step": step,
            "params": model.state_dict(), "warm": warm.state_dict(),
            "power": power.state_dict(), "history": history, "unconverged": unconverged,
            "elapsed": elapsed_before + time.perf_counter() - t_start, "calib": calib,
            "rng": {"torch": torch.get_rng_state(),
                    "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None},
        }, ckpt)
        write_csv(out / "history.csv", history, HISTORY_COLUMNS)

    while step <= cfg.steps:
        stats = SolveStats()
        out_f = forward(model, X, stats=stats, **fwd_kwargs)
        loss = _loss(out_f, y, cfg.loss)
        loss_value = float(loss.detach())
        logged = step % cfg.log_every == 0 or step == cfg.steps
        row: dict[str, Any] | None = None
        if logged:
            n_log = len(history)
            audit = n_log == 0 or step == cfg.steps or (cfg.audit_every and n_log % cfg.audit_every == 0)
            row = _monitor(model, stats, init, power, loss_value, step, audit, cfg)
            history.append(row)
        if not math.isfinite(loss_value):
            status, reason = "diverged", f"non-finite loss at step {step}"
            break
        fwd_ok = stats.forward.converged
        if step == cfg.steps:
            break
        opt.zero_grad(set_to_none=True)
        loss.backward()
        bwd_ok = stats.backward.converged if stats.backward is not None else True
        if row is not None and stats.backward is not None:
            row.update(bwd_iters=stats.backward.iterations, bwd_residual=stats.backward.residual,
                       bwd_converged=int(bwd_ok))
        unconverged = 0 if (fwd_ok and bwd_ok) else unconverged + 1
        if unconverged >= cfg.patience:
            which = "forward" if not fwd_ok else "backward"
            res = stats.forward if not fwd_ok else stats.backward
            status = "diverged"
            reason = (f"{which} solver did not converge for {unconverged} consecutive steps "
                      f"(last residual {res.residual:.2e} > tol) at step {step}")
            break
        opt.step()
        step += 1
        calls += 1
        bar.update(step, loss_value, f"lambda_min {history[-1]['lambda_min']:.3e}")
        if step % cfg.checkpoint_every == 0 and step < cfg.steps:
            save_checkpoint()
        if stop_after is not None and calls >= stop_after:
            save_checkpoint()
            bar.close()
            return RunResult(summary={"status": "interrupted", "step": step},
                             history=history, resumed_from=resumed_from, skipped=False)
    bar.close()

    summary = _summarise(run, history, status, reason, step, lr, calib, n_logs_total)
    summary["tags"] = dict(tags or {})
    if out is not None:
        save_checkpoint()
    return _write_final(out, run, rhash, summary, history, ds, device, cfg,
                        t_start - elapsed_before, resumed_from)


def _write_final(out: Path | None, run: RunConfig, rhash: str, summary: dict,
                 history: list[dict], ds: Dataset, device: torch.device, cfg: TrainConfig,
                 t_start: float, resumed_from: int | None) -> RunResult:
    """Attach provenance and write history.csv and summary.json (last, atomically)."""
    wall = time.perf_counter() - t_start
    summary["provenance"] = provenance(config=run.to_dict(), device=device,
                                       precision=cfg.precision, seeds=run.seeds, wall_time_s=wall)
    summary["provenance"]["resumed_from_step"] = resumed_from
    summary["config"] = run.to_dict()
    summary["config_hash"] = rhash
    summary["data_meta"] = ds.meta
    if out is not None:
        write_csv(out / "history.csv", history, HISTORY_COLUMNS)
        write_json(out / "summary.json", summary)
    return RunResult(summary=summary, history=history, resumed_from=resumed_from, skipped=False)


def _monitor(model: DEQ, stats: SolveStats, init: dict, power: PowerNorm, loss: float,
             step: int, audit: bool, cfg: TrainConfig) -> dict[str, Any]:
    m = model.cfg.width
    w_spec = power(model.W.detach())
    row: dict[str, Any] = {
        "step": step,
        "loss": loss,
        "lambda_min": gram_lambda_min(stats.z),
        "w_norm": w_spec / math.sqrt(m),
        "lipschitz": w_spec * model.scale,
        "w_norm_exact": exact_spectral_norm(model.W) / math.sqrt(m) if audit else None,
        "fwd_iters": stats.forward.iterations,
        "fwd_residual": stats.forward.residual,
        "fwd_converged": int(stats.forward.converged),
        "bwd_iters": None, "bwd_residual": None, "bwd_converged": None,
    }
    row.update(relative_movement({k: v for k, v in model.weight_blocks().items()
                                  if k in ("W", "U", "a")}, init))
    if cfg.legacy_readouts:
        row.update(legacy_readouts(stats.z, model.W, m))
    return row


def _summarise(run: RunConfig, history: list[dict], status: str, reason: str, step: int,
               lr: float, calib: dict, n_logs_total: int) -> dict[str, Any]:
    steps = np.array([r["step"] for r in history], float)
    losses = np.array([r["loss"] for r in history], float)
    lam = np.array([r["lambda_min"] for r in history], float)
    wn = np.array([r["w_norm"] for r in history], float)
    lip = np.array([r["lipschitz"] for r in history], float)
    exact = [r["w_norm_exact"] for r in history if r.get("w_norm_exact") is not None]
    rate, r2, npts = fit_rate(steps, losses, FLOORS[run.train.precision])
    finite = lambda a: float(np.nanmax(a)) if len(a) and np.isfinite(a).any() else math.nan  # noqa: E731
    return {
        "status": status,
        "reason": reason,
        "steps_done": step,
        "steps": run.train.steps,
        "initial_loss": float(losses[0]) if len(losses) else math.nan,
        "final_loss": float(losses[-1]) if len(losses) else math.nan,
        "lambda_0": float(lam[0]) if len(lam) else math.nan,
        "min_lambda_min": float(np.nanmin(lam)) if len(lam) else math.nan,
        "min_lambda_ratio": float(np.nanmin(lam) / lam[0]) if len(lam) else math.nan,
        "max_w_norm": finite(wn),
        "max_w_norm_exact": max(exact) if exact else math.nan,
        "max_lipschitz": finite(lip),
        "rate": rate,
        "rate_r2": r2,
        "rate_points": npts,
        "lr": lr,
        "lr_source": "given" if run.train.lr is not None else "calibrated",
        "theta0_lambda_max": calib.get("theta0_lambda_max", math.nan),
        "theta0_lambda_min": calib.get("theta0_lambda_min", math.nan),
        "mean_fwd_iters": float(np.mean([r["fwd_iters"] for r in history])) if history else math.nan,
        "mean_bwd_iters": float(np.mean([r["bwd_iters"] for r in history
                                         if r.get("bwd_iters") is not None] or [math.nan])),
        "final_move_W": history[-1].get("move_W", math.nan) if history else math.nan,
        "final_move_U": history[-1].get("move_U", math.nan) if history else math.nan,
        "final_move_a": history[-1].get("move_a", math.nan) if history else math.nan,
    }


def _write_spectrum(out: Path, calib: dict, X: torch.Tensor, y: torch.Tensor) -> None:
    import io

    from .io import atomic_write_bytes

    if "evals" not in calib:
        return
    buf = io.BytesIO()
    np.savez(buf, evals=calib["evals"], coeffs=calib["coeffs"])
    atomic_write_bytes(out / "spectrum.npz", buf.getvalue())


def _finished(out: Path, rhash: str, overwrite: bool) -> RunResult | None:
    """A finished run with the same configuration in ``out``, or None if work remains."""
    summary_path = out / "summary.json"
    if not summary_path.is_file():
        return None
    try:
        summary = read_json(summary_path)
    except ValueError:
        return None  # unreadable (should not happen with atomic writes): recompute
    if summary.get("config_hash") == rhash:
        from .io import read_csv

        hist = read_csv(out / "history.csv") if (out / "history.csv").is_file() else []
        return RunResult(summary=summary, history=hist, resumed_from=None, skipped=True)
    if not overwrite:
        raise ConfigError(
            f"{out} already holds a run with a different configuration "
            f"(hash {summary.get('config_hash')} there, {rhash} now). Choose another --out, "
            "or pass --overwrite to replace it."
        )
    return None


def _load_checkpoint(ckpt: Path, rhash: str, overwrite: bool) -> dict | None:
    if not ckpt.is_file():
        return None
    state = torch.load(ckpt, map_location="cpu", weights_only=False)
    if state.get("format") != CHECKPOINT_FORMAT:
        if not overwrite:
            raise ConfigError(
                f"{ckpt} was written by another version of overdeq (checkpoint format "
                f"{state.get('format')}, this version reads {CHECKPOINT_FORMAT}). Pass "
                "--overwrite to start over there, or use another --out."
            )
        return None
    if state.get("config_hash") != rhash:
        if not overwrite:
            raise ConfigError(
                f"{ckpt} was written by a different configuration (hash "
                f"{state.get('config_hash')} there, {rhash} now). Choose another --out, or "
                "pass --overwrite to start this configuration from scratch there."
            )
        return None
    return state

