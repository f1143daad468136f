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
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

# Configuration and run-directory names are re-exported: `from overdeq.train import ...`
# is how the CLI, the benchmarks and the tests reach them.
from .config import (  # noqa: F401
    GRADIENTS,
    LEGACY_SOLVER,
    LOSSES,
    MODES,
    PRECISIONS,
    ConfigError,
    RunConfig,
    TrainConfig,
    check_contraction,
    derive_seed,
    make_run_config,
)
from .data import Dataset, load_dataset
from .implicit import SolveStats, WarmStart, deq_output, released_output
from .io import atomic_torch_save, write_csv
from .kernels import lambda_star
from .model import DEQ
from .monitor import (
    PowerNorm,
    exact_spectral_norm,
    gram_lambda_min,
    legacy_readouts,
    relative_movement,
    tangent_gram,
)
from .provenance import config_hash, device_name
from .rundir import (  # noqa: F401
    CHECKPOINT_FORMAT,
    HISTORY_COLUMNS,
    RunResult,
    finished_run,
    load_checkpoint,
    summarise,
    write_final,
    write_spectrum,
)
from .solvers import SolverConfig
from .theory import FLOORS, fit_rate  # noqa: F401

__all__ = [
    "TrainConfig",
    "RunConfig",
    "MODES",
    "PRECISIONS",
    "LOSSES",
    "GRADIENTS",
    "make_run_config",
    "train",
    "fit_rate",
    "FLOORS",
    "derive_seed",
    "RunResult",
    "ConfigError",
]


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


def _set_precision(precision: str) -> torch.dtype:
    torch.backends.cuda.matmul.allow_tf32 = precision == "tf32"
    torch.backends.cudnn.allow_tf32 = precision == "tf32"
    torch.set_float32_matmul_precision("high" if precision == "tf32" else "highest")
    return torch.float64 if precision == "float64" else torch.float32


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
                print(
                    f"step {step}/{self.total} loss {loss:.6e} {extra}",
                    file=self.stream,
                    flush=True,
                )

    def close(self) -> None:
        if self.tty:
            self.stream.write("\n")


def _loss(out: torch.Tensor, y: torch.Tensor, kind: str) -> torch.Tensor:
    sse = ((out - y) ** 2).sum()
    return 0.5 * sse if kind == "half_sse" else sse


def _calibrate(
    model: DEQ, X: torch.Tensor, y: torch.Tensor, cfg: TrainConfig, loss_factor: float
) -> dict[str, Any]:
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
    """
    cfg = run.train
    out = Path(out) if out is not None else None
    device = check_device(cfg.device)
    ds = dataset if dataset is not None else load_dataset(run.data)
    if ds.n != run.data.n:
        raise ConfigError(f"the data file holds {ds.n} samples but --n is {run.data.n}")
    # The arrays themselves are part of the identity of a run: a re-prepared data file
    # with other contents must not resume (or skip) a run of the old one.
    rhash = config_hash({"run": run.hash, "data": data_digest(ds)})
    if out is not None:
        done = finished_run(out, rhash, overwrite)
        if done is not None:
            return done
        out.mkdir(parents=True, exist_ok=True)
        for stale in out.glob(".*.tmp"):  # left by a write that was killed midway
            stale.unlink()

    t_start = time.perf_counter()
    dtype = _set_precision(cfg.precision)
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
    segments: list[dict[str, Any]] = []  # one per process that worked on this run
    ckpt = out / "checkpoint.pt" if out is not None else None
    state = load_checkpoint(ckpt, rhash, overwrite) if ckpt is not None else None
    if state is not None:
        model.load_state_dict(state["params"])
        warm.load_state_dict(state["warm"], device)
        power.load_state_dict(state["power"])
        history, step = state["history"], state["step"]
        unconverged, elapsed_before = state["unconverged"], state["elapsed"]
        calib = state["calib"]
        torch.set_rng_state(state["rng"]["torch"])
        resumed_from = step
        segments = list(state.get("segments", []))
    else:
        # Theta_0 is computed even for a given step: E6 predicts the loss curve from it.
        twin = DEQ(model_cfg, seeds=seeds, dtype=torch.float64, device=device)
        try:
            calib = _calibrate(twin, X, y, cfg, loss_factor)
        except RuntimeError as exc:  # no equilibrium at init (e.g. the width-scale bug)
            calib = {"error": str(exc)}
        del twin
    if cfg.lr is None and "calibrated_lr" not in calib:
        reason = (
            f"the step could not be calibrated at step 0: {calib['error']}; the layer "
            "map is probably not a contraction. Pass --lr to train anyway."
        )
        summary = summarise(run, [], "diverged", reason, 0, math.nan, calib, 0)
        summary["tags"] = dict(tags or {})
        return write_final(out, run, rhash, summary, [], ds, device, cfg, t_start, None, [])
    lr = cfg.lr if cfg.lr is not None else calib["calibrated_lr"]
    for group in opt.param_groups:
        group["lr"] = lr
    if out is not None and state is None:
        write_spectrum(out, calib, X, y)

    forward = released_output if cfg.gradient == "released" else deq_output
    fwd_kwargs: dict[str, Any] = dict(forward=cfg.forward, backward=cfg.backward)
    if cfg.gradient == "implicit":
        fwd_kwargs["warm"] = warm if cfg.warm_start else None
    bar = _Progress(cfg.steps, progress)
    n_logs_total = cfg.steps // cfg.log_every + 1
    first_step = step

    def all_segments() -> list[dict[str, Any]]:
        """Earlier processes' segments plus this one's, for provenance across resumes."""
        return segments + [
            {
                "device": device_name(device),
                "from_step": first_step,
                "to_step": step,
                "wall_time_s": time.perf_counter() - t_start,
            }
        ]

    status, reason = "finished", ""
    # A checkpoint written after the loop records how it ended: a process killed between it
    # and summary.json resumes straight to the summary instead of redoing the last step.
    ended = state.get("ended") if state is not None else None
    if ended is not None:
        status, reason = ended
    calls = 0

    def save_checkpoint(ended: tuple[str, str] | None = None) -> None:
        if ckpt is None:
            return
        atomic_torch_save(
            {
                "format": CHECKPOINT_FORMAT,
                "config": run.to_dict(),
                "config_hash": rhash,
                "step": step,
                "ended": ended,
                "params": model.state_dict(),
                "warm": warm.state_dict(),
                "power": power.state_dict(),
                "history": history,
                "unconverged": unconverged,
                "segments": all_segments(),
                "elapsed": elapsed_before + time.perf_counter() - t_start,
                "calib": calib,
                "rng": {
                    "torch": torch.get_rng_state(),
                    "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
                },
            },
            ckpt,
        )
        write_csv(out / "history.csv", history, HISTORY_COLUMNS)

    while ended is None and step <= cfg.steps:
        stats = SolveStats()
        out_f = forward(model, X, stats=stats, **fwd_kwargs)
        loss = _loss(out_f, y, cfg.loss)
        loss_value = float(loss.detach())
        if not math.isfinite(loss_value):  # logged as such, without eigensolvers on NaNs
            history.append(
                {
                    "step": step,
                    "loss": loss_value,
                    "fwd_iters": stats.forward.iterations,
                    "fwd_residual": stats.forward.residual,
                    "fwd_converged": int(stats.forward.converged),
                }
            )
            status, reason = "diverged", f"non-finite loss at step {step}"
            break
        logged = step % cfg.log_every == 0 or step == cfg.steps
        row: dict[str, Any] | None = None
        if logged:
            n_log = len(history)
            audit = (
                n_log == 0
                or step == cfg.steps
                or (cfg.audit_every and n_log % cfg.audit_every == 0)
            )
            row = _monitor(model, stats, init, power, loss_value, step, audit, cfg)
            history.append(row)
        fwd_ok = stats.forward.converged
        if step == cfg.steps:
            break
        opt.zero_grad(set_to_none=True)
        loss.backward()
        bwd_ok = stats.backward.converged if stats.backward is not None else True
        if row is not None and stats.backward is not None:
            row.update(
                bwd_iters=stats.backward.iterations,
                bwd_residual=stats.backward.residual,
                bwd_converged=int(bwd_ok),
            )
        unconverged = 0 if (fwd_ok and bwd_ok) else unconverged + 1
        if unconverged >= cfg.patience:
            which = "forward" if not fwd_ok else "backward"
            res = stats.forward if not fwd_ok else stats.backward
            status = "diverged"
            reason = (
                f"{which} solver did not converge for {unconverged} consecutive steps "
                f"(last residual {res.residual:.2e} > tol) at step {step}"
            )
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
            return RunResult(
                summary={"status": "interrupted", "step": step},
                history=history,
                resumed_from=resumed_from,
                skipped=False,
            )
    bar.close()

    summary = summarise(run, history, status, reason, step, lr, calib, n_logs_total)
    summary["tags"] = dict(tags or {})
    if out is not None and ended is None:
        save_checkpoint(ended=(status, reason))
    return write_final(
        out,
        run,
        rhash,
        summary,
        history,
        ds,
        device,
        cfg,
        t_start - elapsed_before,
        resumed_from,
        all_segments(),
    )


def _monitor(
    model: DEQ,
    stats: SolveStats,
    init: dict,
    power: PowerNorm,
    loss: float,
    step: int,
    audit: bool,
    cfg: TrainConfig,
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
    if cfg.legacy_readouts:
        row.update(legacy_readouts(stats.z, model.W, m))
    return row
