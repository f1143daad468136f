"""Full-batch gradient descent on a DEQ, with honest monitoring, checkpoints and resume.

    theta(t+1) = theta(t) - eta * grad L(theta(t)),   L = 1/2 sum_i (f(x_i) - y_i)^2

The step eta is either given or calibrated as c / lambda_max(Theta_0) from the empirical
tangent-kernel Gram at init (monitor.tangent_gram), which makes the linearised dynamics
r(t+1) = (I - eta Theta_0) r(t) stable for any c < 2 (c < 1 keeps every mode monotone).

A run directory holds ``history.csv`` (one row per logged step), ``summary.json`` (status,
headline numbers, provenance), ``spectrum.npz`` (eigen-decomposition of Theta_0 and r_0, for
the rate prediction) and ``checkpoint.pt`` (rundir.py). Running the same configuration into
the same directory resumes from the checkpoint, and a finished run is not redone.

:func:`train` is a short loop over the named steps of one run (:class:`_Run`): set up,
resume or calibrate, then step (which logs) and checkpoint until the end, then finish.
"""

from __future__ import annotations

import hashlib
import math
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .config import ConfigError, RunConfig, TrainConfig
from .data import Dataset, load_dataset
from .implicit import (
    GradientTolerance,
    SolveStats,
    WarmStart,
    deq_output,
    equilibrium,
    released_output,
)
from .io import atomic_torch_save, write_csv
from .kernels import lambda_star
from .mixed import MixedConfig
from .model import DEQ
from .monitor import (
    PowerNorm,
    exact_spectral_norm,
    gram_lambda_min,
    legacy_readouts,
    relative_movement,
    tangent_gram,
)
from .preflight import run_lock
from .provenance import config_hash, device_name
from .rundir import (
    CHECKPOINT_FORMAT,
    HISTORY_COLUMNS,
    RunResult,
    finished_run,
    load_checkpoint,
    spectrum_readable,
    summarise,
    write_final,
    write_spectrum,
)
from .seeding import MODEL_OBJECTS
from .solvers import SolverConfig
from .theory import FLOORS

__all__ = [
    "train",
    "CALIBRATION_SOLVER",
    "calibrate",
    "check_device",
    "data_digest",
    "log_row",
    "set_precision",
]

# Theta_0 is computed on a float64 twin of the initial model, so these solves can be tight.
CALIBRATION_SOLVER = SolverConfig(name="picard", tol=1e-10, max_iter=5000)


def check_device(name: str) -> torch.device:
    """A torch device that exists here, or a ConfigError naming --device and the choices."""
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ConfigError(
            f"--device {name!r} is not a device; use cpu, cuda, cuda:N or cuda:auto"
        ) from None
    if device.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise ConfigError(
                f"--device {name} was requested but no CUDA device is available; use --device cpu"
            )
        if device.index is not None and device.index >= count:
            raise ConfigError(
                f"--device {name}: this machine has {count} CUDA device(s), "
                f"cuda:0 to cuda:{count - 1}"
            )
    elif device.type != "cpu":
        raise ConfigError(f"--device {name!r}: only cpu and cuda devices are supported")
    return device


def data_digest(ds: Dataset) -> str:
    """sha256 of the inputs and targets (float64 bytes), first 16 hex digits."""
    h = hashlib.sha256()
    for array in (ds.X, ds.y):
        h.update(np.ascontiguousarray(array, dtype=np.float64).tobytes())
    return h.hexdigest()[:16]


def set_precision(precision: str) -> torch.dtype:
    """Set torch's matmul precision for ``precision`` and return the parameters' dtype."""
    torch.backends.cuda.matmul.allow_tf32 = precision == "tf32"
    torch.backends.cudnn.allow_tf32 = precision == "tf32"
    torch.set_float32_matmul_precision("high" if precision == "tf32" else "highest")
    return torch.float64 if precision == "float64" else torch.float32


def _duration(seconds: float) -> str:
    """Seconds as m:ss, or h:mm:ss from an hour on."""
    total = int(round(seconds))
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


class _Progress:
    """Progress of a run with its rate and ETA: a tqdm bar on a terminal; plain lines
    otherwise (a log file, e.g. under Snakemake), one per tenth of the run and at least one
    every ``every_s`` seconds (tqdm's carriage returns would fill a log with redraws).

    ``start`` is the step the run starts from (a resumed run's checkpoint), so the rate
    counts the steps of this process only: rate = (step - start) / elapsed and
    ETA = (total - step) / rate.
    """

    def __init__(
        self,
        total: int,
        enabled: bool,
        stream=None,
        *,
        start: int = 0,
        every_s: float = 60.0,
        clock=time.monotonic,
    ) -> None:
        stream = sys.stderr if stream is None else stream  # the stderr of now, not of import
        self.total, self.enabled, self.stream = total, enabled, stream
        self.tty = enabled and stream.isatty()
        self.start, self.every_s, self.clock = start, every_s, clock
        self.t0 = self.last_time = clock()
        self.last_plain = -1
        self.bar = None
        if self.tty:
            from tqdm import tqdm  # only on a terminal: the import costs time

            # rate and ETA count this process's steps only (tqdm discounts ``initial``)
            self.bar = tqdm(
                total=total, initial=start, file=stream, unit="step", dynamic_ncols=True
            )

    def _timing(self, step: int, now: float) -> str:
        elapsed = now - self.t0
        done = step - self.start
        if done <= 0 or elapsed <= 0:
            return f"elapsed {_duration(elapsed)}"
        rate = done / elapsed
        speed = f"{rate:.3g} steps/s" if rate >= 1 else f"{1 / rate:.3g} s/step"
        eta = (self.total - step) / rate
        return f"{speed}, elapsed {_duration(elapsed)}, ETA {_duration(eta)}"

    def update(self, step: int, loss: float, extra: str = "") -> None:
        if not self.enabled:
            return
        if self.bar is not None:
            self.bar.set_postfix_str(f"loss {loss:.3e} {extra}".strip(), refresh=False)
            self.bar.update(step - self.bar.n)
        else:
            now = self.clock()
            frac = step / self.total if self.total else 1.0
            timing = self._timing(step, now)
            decile = int(10 * frac)
            if decile != self.last_plain or now - self.last_time >= self.every_s:
                self.last_plain, self.last_time = decile, now
                print(
                    f"step {step}/{self.total} ({100 * frac:.0f}%) loss {loss:.6e} {extra} | "
                    f"{timing}",
                    file=self.stream,
                    flush=True,
                )

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


def _loss(out: torch.Tensor, y: torch.Tensor, kind: str) -> torch.Tensor:
    sse = ((out - y) ** 2).sum()
    return 0.5 * sse if kind == "half_sse" else sse


def calibrate(
    model: DEQ, X: torch.Tensor, y: torch.Tensor, cfg: TrainConfig, loss_factor: float
) -> dict[str, Any]:
    """Theta_0 at init: its spectrum, the calibrated step, and r_0 in its eigenbasis.

    ``model`` is the float64 twin of the initial model (same seeds), so the tight solves
    below are not limited by float32 round-off.
    """
    X, y = X.double(), y.double()
    theta = tangent_gram(model, X, cfg=CALIBRATION_SOLVER)  # (n, n) float64
    evals, evecs = torch.linalg.eigh(theta)
    with torch.no_grad():
        Z, _, _ = equilibrium(model, X, CALIBRATION_SOLVER)
        r0 = (model.readout(Z) - y).double()
    coeffs = evecs.T @ r0  # r_0 in the eigenbasis of Theta_0
    lam_max = float(evals[-1])
    try:  # the infinite-width target for lambda_0 (the kernel ignores biases)
        lam_star = lambda_star(X, sigma_w=model.cfg.sigma_w, sigma_u=model.cfg.sigma_u)
    except (ValueError, RuntimeError):  # sigma_w^2 >= 2: no finite kernel
        lam_star = math.nan
    return {
        "theta0_lambda_max": lam_max,
        "theta0_lambda_min": float(evals[0]),
        "lambda_star": lam_star,
        "calibrated_lr": cfg.lr_scale / (loss_factor * lam_max),
        "evals": evals.cpu().numpy(),
        "coeffs": coeffs.cpu().numpy(),
    }


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
    The run holds ``out`` exclusively while it works (:func:`overdeq.preflight.run_lock`).
    """
    with run_lock(Path(out) if out is not None else None):
        return _train(run, out, dataset, overwrite, progress, stop_after, tags)


def _train(
    run: RunConfig,
    out: str | Path | None,
    dataset: Dataset | None,
    overwrite: bool,
    progress: bool,
    stop_after: int | None,
    tags: dict[str, str] | None,
) -> RunResult:
    """:func:`train` once ``out`` is held."""
    r = _Run(run, out, dataset, overwrite)
    if r.done is not None:  # this configuration already finished there
        return r.done
    r.setup()
    if not r.resume():
        r.calibrate()
    if r.lr is None:  # no step size given, and none could be calibrated
        return r.finish(tags)
    steps = run.train.steps
    bar = _Progress(steps, progress, start=r.t)
    calls = 0  # steps taken by this call
    while r.ended is None and r.t <= steps:
        if r.step():  # the run ends at this step
            break
        calls += 1
        bar.update(r.t, r.loss, f"lambda_min {r.history[-1]['lambda_min']:.3e}")
        if r.t % run.train.checkpoint_every == 0 and r.t < steps:
            r.checkpoint()
        if stop_after is not None and calls >= stop_after:
            r.checkpoint()
            bar.close()
            return r.interrupted()
    bar.close()
    return r.finish(tags)


class _Run:
    """One training run in progress: the model, its optimiser and all a checkpoint holds.

    ``t`` is the step reached (updates taken); ``history`` the logged rows; ``status`` and
    ``reason`` say how the run ends, and ``ended`` is that verdict once a checkpoint holds it.
    """

    def __init__(
        self, run: RunConfig, out: str | Path | None, dataset: Dataset | None, overwrite: bool
    ) -> None:
        self.run, self.cfg, self.overwrite = run, run.train, overwrite
        self.out = Path(out) if out is not None else None
        self.device = check_device(self.cfg.device)
        ds = dataset if dataset is not None else load_dataset(run.data)
        if ds.n != run.data.n:
            raise ConfigError(f"the data file holds {ds.n} samples but --n is {run.data.n}")
        self.ds = ds
        # The arrays themselves are part of the identity of a run: a re-prepared data file
        # with other contents must not resume (or skip) a run of the old one.
        self.rhash = config_hash({"run": run.hash, "data": data_digest(ds)})
        self.done = None
        if self.out is not None:
            self.done = finished_run(self.out, self.rhash, overwrite)

    def setup(self) -> None:
        """The run directory, the model at init, its optimiser, the monitors, an empty log."""
        if self.out is not None:
            self.out.mkdir(parents=True, exist_ok=True)
            for stale in self.out.glob(".*.tmp"):  # left by a write that was killed midway
                stale.unlink()
        cfg = self.cfg
        self.t_start = time.perf_counter()
        dtype = set_precision(cfg.precision)
        self.X, self.y = self.ds.tensors(dtype=dtype, device=self.device)
        self.model_cfg = replace(self.run.model, d=self.ds.d)
        self.seeds = {k: self.run.seeds[k] for k in MODEL_OBJECTS}
        self.model = DEQ(self.model_cfg, seeds=self.seeds, dtype=dtype, device=self.device)
        self.init = {k: v.detach().clone() for k, v in self.model.weight_blocks().items()}
        self.opt = torch.optim.SGD(self.model.parameters(), lr=1.0)  # lr set by _set_lr
        self.loss_factor = 1.0 if cfg.loss == "half_sse" else 2.0
        self.warm = WarmStart()
        self.power = PowerNorm(
            self.model_cfg.width, seed=self.run.seeds["W"], iters=cfg.power_iters
        )
        self.forward = released_output if cfg.gradient == "released" else deq_output
        self.fwd_kwargs: dict[str, Any] = dict(forward=cfg.forward, backward=cfg.backward)
        if cfg.gradient == "implicit":
            self.fwd_kwargs["warm"] = self.warm if cfg.warm_start else None
            if cfg.precision == "mixed":  # bfloat16 corrections, fp32 tests (overdeq.mixed)
                self.fwd_kwargs["mixed"] = MixedConfig()
        self.tolerance: GradientTolerance | None = None
        if cfg.gradient == "implicit" and cfg.gradient_error is not None:
            self.tolerance = GradientTolerance(cfg.gradient_error, floor=cfg.backward.tol)
            self.fwd_kwargs["tolerance"] = self.tolerance
        self.history: list[dict[str, Any]] = []
        self.t, self.unconverged, self.elapsed_before = 0, 0, 0.0
        self.resumed_from: int | None = None
        self.segments: list[dict[str, Any]] = []  # one per earlier process on this run
        self.status, self.reason = "finished", ""
        self.ended: tuple[str, str] | None = None
        self.floor_step: int | None = None  # floor_stop: the step the floor was reached
        self.loss = math.nan  # the loss before the last update
        self.ckpt = self.out / "checkpoint.pt" if self.out is not None else None

    def resume(self) -> bool:
        """Continue from the checkpoint of this configuration, if there is one."""
        state = None
        if self.ckpt is not None:
            shapes = {k: tuple(v.shape) for k, v in self.model.state_dict().items()}
            state = load_checkpoint(self.ckpt, self.rhash, self.overwrite, shapes)
        if state is None:
            return False
        self.model.load_state_dict(state["params"])
        self.warm.load_state_dict(state["warm"], self.device)
        self.power.load_state_dict(state["power"])
        if self.tolerance is not None:
            self.tolerance.load_state_dict(state.get("gradient_tolerance"))
        self.history, self.t = state["history"], state["step"]
        self.unconverged, self.elapsed_before = state["unconverged"], state["elapsed"]
        self.calib = state["calib"]
        torch.set_rng_state(state["rng"]["torch"])
        self.resumed_from = self.t
        self.segments = list(state.get("segments", []))
        # A checkpoint written after the loop records how it ended: a process killed between
        # it and summary.json resumes straight to the summary instead of redoing the last step.
        self.ended = state.get("ended")
        if self.ended is not None:
            self.status, self.reason = self.ended
        self._set_lr()
        if self.lr is not None and not spectrum_readable(self.out):  # lost or damaged since
            write_spectrum(self.out, self.calib, self.X, self.y)
        return True

    def calibrate(self) -> None:
        """Theta_0 at init, on a float64 twin (computed even for a given step: E6 uses it)."""
        twin = DEQ(self.model_cfg, seeds=self.seeds, dtype=torch.float64, device=self.device)
        try:
            self.calib = calibrate(twin, self.X, self.y, self.cfg, self.loss_factor)
        except RuntimeError as exc:  # no equilibrium at init (e.g. the width-scale bug)
            self.calib = {"error": str(exc)}
        del twin
        self._set_lr()
        if self.out is not None and self.lr is not None:
            write_spectrum(self.out, self.calib, self.X, self.y)

    def _set_lr(self) -> None:
        self.lr = self.cfg.lr if self.cfg.lr is not None else self.calib.get("calibrated_lr")
        for group in self.opt.param_groups:
            group["lr"] = self.lr

    def step(self) -> bool:
        """Forward, log, backward, update; True when the run ends at this step."""
        cfg = self.cfg
        stats = SolveStats()
        out_f = self.forward(self.model, self.X, stats=stats, **self.fwd_kwargs)
        loss = _loss(out_f, self.y, cfg.loss)
        loss_value = float(loss.detach())
        if not math.isfinite(loss_value):  # logged as such, without eigensolvers on NaNs
            self.history.append(
                {
                    "step": self.t,
                    "loss": loss_value,
                    "fwd_iters": stats.forward.iterations,
                    "fwd_residual": stats.forward.residual,
                    "fwd_converged": int(stats.forward.converged),
                }
            )
            return self._end("diverged", f"non-finite loss at step {self.t}")
        at_floor = self._at_floor(loss_value)
        row = self.log(stats, loss_value, force=at_floor)
        fwd_ok = stats.forward.converged
        if self.t == cfg.steps:  # the last step is logged, not taken
            return True
        if at_floor:  # logged, not taken: the loss cannot go lower in this precision
            self.floor_step = self.t
            return self._end(
                "finished",
                f"stopped at the round-off floor at step {self.t}: loss {loss_value:.3e} <= "
                f"{FLOORS[cfg.precision]:g} x the initial loss ({cfg.precision})",
            )
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        bwd_ok = stats.backward.converged if stats.backward is not None else True
        if row is not None and stats.backward is not None:
            row.update(
                bwd_iters=stats.backward.iterations,
                bwd_residual=stats.backward.residual,
                bwd_converged=int(bwd_ok),
            )
            if "gradient_certificate" in stats.extra:  # in the checkpoint's history only
                row.update({k: stats.extra[k] for k in ("gradient_certificate", "adjoint_tol")})
            if cfg.precision == "mixed":  # low-precision sweeps among the iterations (ditto)
                row["fwd_low_iters"] = stats.forward.low_iterations
                row["bwd_low_iters"] = stats.backward.low_iterations
        self.unconverged = 0 if (fwd_ok and bwd_ok) else self.unconverged + 1
        if self.unconverged >= cfg.patience:
            which = "forward" if not fwd_ok else "backward"
            res = stats.forward if not fwd_ok else stats.backward
            return self._end(
                "diverged",
                f"{which} solver did not converge for {self.unconverged} consecutive steps "
                f"(last residual {res.residual:.2e} > tol) at step {self.t}",
            )
        self.opt.step()
        self.t += 1
        self.loss = loss_value
        return False

    def _end(self, status: str, reason: str) -> bool:
        self.status, self.reason = status, reason
        return True

    def _at_floor(self, loss: float) -> bool:
        """floor_stop: the loss is at or below FLOORS[precision] times the initial loss."""
        if not self.cfg.floor_stop or not self.history or self.t == 0:
            return False
        return loss <= FLOORS[self.cfg.precision] * self.history[0]["loss"]

    def log(self, stats: SolveStats, loss: float, force: bool = False) -> dict[str, Any] | None:
        """Append the monitoring row of this step if it is a logged one (and return it).

        ``force``: log it anyway, as the last row (with the exact ||W||_2 audit).
        """
        cfg = self.cfg
        last = self.t == cfg.steps or force
        if not (self.t % cfg.log_every == 0 or last):
            return None
        n_log = len(self.history)
        audit = n_log == 0 or last or (cfg.audit_every and n_log % cfg.audit_every == 0)
        readout = n_log == 0 or last or n_log % cfg.readout_every == 0
        row = log_row(self.model, stats, self.init, self.power, loss, self.t, audit, cfg, readout)
        self.history.append(row)
        return row

    def _all_segments(self) -> list[dict[str, Any]]:
        """Earlier processes' segments plus this one's, for provenance across resumes."""
        return self.segments + [
            {
                "device": device_name(self.device),
                "from_step": self.resumed_from or 0,
                "to_step": self.t,
                "wall_time_s": time.perf_counter() - self.t_start,
            }
        ]

    def checkpoint(self, ended: tuple[str, str] | None = None) -> None:
        """Write checkpoint.pt (atomically) and history.csv so far; ``ended``: how it ended."""
        if self.ckpt is None:
            return
        atomic_torch_save(
            {
                "format": CHECKPOINT_FORMAT,
                "config": self.run.to_dict(),
                "config_hash": self.rhash,
                "step": self.t,
                "ended": ended,
                "params": self.model.state_dict(),
                "warm": self.warm.state_dict(),
                "power": self.power.state_dict(),
                "gradient_tolerance": None
                if self.tolerance is None
                else self.tolerance.state_dict(),
                "history": self.history,
                "unconverged": self.unconverged,
                "segments": self._all_segments(),
                "elapsed": self.elapsed_before + time.perf_counter() - self.t_start,
                "calib": self.calib,
                "rng": {
                    "torch": torch.get_rng_state(),
                    "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
                },
            },
            self.ckpt,
        )
        write_csv(self.out / "history.csv", self.history, HISTORY_COLUMNS)

    def _floor_step(self) -> int | None:
        """The step at which floor_stop ended the run (also after a resume), else None."""
        if self.floor_step is not None:
            return self.floor_step
        if self.reason.startswith("stopped at the round-off floor"):
            return self.t
        return None

    def interrupted(self) -> RunResult:
        return RunResult(
            summary={"status": "interrupted", "step": self.t},
            history=self.history,
            resumed_from=self.resumed_from,
            skipped=False,
        )

    def finish(self, tags: dict[str, str] | None) -> RunResult:
        """Summarise, record the end in the checkpoint, write history.csv and summary.json."""
        run, cfg = self.run, self.cfg
        if self.lr is None:  # diverged at step 0: nothing was trained
            reason = (
                f"the step could not be calibrated at step 0: {self.calib['error']}; the layer "
                "map is probably not a contraction. Pass --lr to train anyway."
            )
            summary = summarise(run, [], "diverged", reason, 0, math.nan, self.calib, 0)
            summary["tags"] = dict(tags or {})
            return write_final(
                self.out, run, self.rhash, summary, [], self.ds, self.device, cfg,
                self.t_start, None, [],
            )  # fmt: skip
        n_logs_total = cfg.steps // cfg.log_every + 1
        summary = summarise(
            run, self.history, self.status, self.reason, self.t, self.lr, self.calib, n_logs_total
        )
        summary["tags"] = dict(tags or {})
        summary["stopped_at_floor"] = self._floor_step()
        if self.tolerance is not None:  # the gradient-error certificate, over the whole run
            summary["gradient_error"] = self.tolerance.summary()
        if self.out is not None and self.ended is None:
            self.checkpoint(ended=(self.status, self.reason))
        return write_final(
            self.out, run, self.rhash, summary, self.history, self.ds, self.device, cfg,
            self.t_start - self.elapsed_before, self.resumed_from, self._all_segments(),
        )  # fmt: skip


def log_row(
    model: DEQ,
    stats: SolveStats,
    init: dict,
    power: PowerNorm,
    loss: float,
    step: int,
    audit: bool,
    cfg: TrainConfig,
    readout: bool = True,
) -> dict[str, Any]:
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
        "bwd_iters": None,
        "bwd_residual": None,
        "bwd_converged": None,
    }
    row.update(
        relative_movement(
            {k: v for k, v in model.weight_blocks().items() if k in ("W", "U", "a")}, init
        )
    )
    if cfg.legacy_readouts and readout:
        row.update(legacy_readouts(stats.z, model.W, m))
    return row
