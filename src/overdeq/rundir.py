"""A run directory: checkpoints, resume, the summary and the files a run leaves behind.

    history.csv    one row per logged step (HISTORY_COLUMNS)
    summary.json   status, headline numbers, provenance, the config and its hash
    spectrum.npz   eigen-decomposition of Theta_0 and r_0 in its basis (for E6)
    checkpoint.pt  parameters, warm-start buffers, RNG states, history so far

All writes are atomic. A directory holding a finished run of the same configuration is
returned as is; one of a different configuration is refused unless overwriting is asked for.
"""

from __future__ import annotations

import io
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .config import ConfigError, RunConfig, TrainConfig
from .data import Dataset
from .io import atomic_write_bytes, read_csv, read_json, write_csv, write_json
from .preflight import clear_run
from .provenance import provenance
from .theory import FLOORS, fit_rate

__all__ = [
    "HISTORY_COLUMNS",
    "CHECKPOINT_FORMAT",
    "RunResult",
    "summarise",
    "write_final",
    "write_spectrum",
    "finished_run",
    "load_checkpoint",
    "spectrum_readable",
    "CheckpointError",
    "CHECKPOINT_KEYS",
]

HISTORY_COLUMNS = [
    "step",
    "loss",
    "lambda_min",
    "w_norm",
    "lipschitz",
    "w_norm_exact",
    "fwd_iters",
    "bwd_iters",
    "fwd_residual",
    "bwd_residual",
    "fwd_converged",
    "bwd_converged",
    "move_W",
    "move_U",
    "move_a",
    "lambda_min_legacy",
    "w_norm_legacy",
]


CHECKPOINT_FORMAT = 2  # bump when the checkpoint's contents change


@dataclass(frozen=True)
class RunResult:
    summary: dict[str, Any]
    history: list[dict[str, Any]]
    resumed_from: int | None  # step of the checkpoint resumed from, if any
    skipped: bool  # True when a finished run was found and nothing was computed


def write_final(
    out: Path | None,
    run: RunConfig,
    rhash: str,
    summary: dict,
    history: list[dict],
    ds: Dataset,
    device: torch.device,
    cfg: TrainConfig,
    t_start: float,
    resumed_from: int | None,
    segments: list[dict[str, Any]],
) -> RunResult:
    """Attach provenance and write history.csv and summary.json (last, atomically).

    ``segments`` lists every process that worked on the run (device, steps, wall time), so
    a run resumed on another machine says so.
    """
    wall = time.perf_counter() - t_start
    summary["provenance"] = provenance(
        config=run.to_dict(),
        device=device,
        precision=cfg.precision,
        seeds=run.seeds,
        wall_time_s=wall,
    )
    summary["provenance"]["resumed_from_step"] = resumed_from
    summary["provenance"]["segments"] = segments
    summary["config"] = run.to_dict()
    summary["config_hash"] = rhash
    summary["data_meta"] = ds.meta
    if out is not None:
        write_csv(out / "history.csv", history, HISTORY_COLUMNS)
        write_json(out / "summary.json", summary)
    return RunResult(summary=summary, history=history, resumed_from=resumed_from, skipped=False)


def summarise(
    run: RunConfig,
    history: list[dict],
    status: str,
    reason: str,
    step: int,
    lr: float,
    calib: dict,
    n_logs_total: int,
) -> dict[str, Any]:
    def column(name: str) -> np.ndarray:
        """One history column as floats; NaN where a row lacks it (a diverged last step)."""
        return np.array([math.nan if r.get(name) is None else r[name] for r in history], float)

    def finite_max(a: np.ndarray) -> float:
        return float(np.nanmax(a)) if np.isfinite(a).any() else math.nan

    def finite_min(a: np.ndarray) -> float:
        return float(np.nanmin(a)) if np.isfinite(a).any() else math.nan

    steps, losses, lam = column("step"), column("loss"), column("lambda_min")
    wn, lip, exact = column("w_norm"), column("lipschitz"), column("w_norm_exact")
    rate, r2, npts = fit_rate(steps, losses, FLOORS[run.train.precision])
    return {
        "status": status,
        "reason": reason,
        "steps_done": step,
        "steps": run.train.steps,
        "initial_loss": float(losses[0]) if len(losses) else math.nan,
        "final_loss": float(losses[-1]) if len(losses) else math.nan,
        "lambda_0": float(lam[0]) if len(lam) else math.nan,
        "min_lambda_min": finite_min(lam),
        "min_lambda_ratio": finite_min(lam) / lam[0] if len(lam) else math.nan,
        "max_w_norm": finite_max(wn),
        "max_w_norm_exact": finite_max(exact),
        "max_lipschitz": finite_max(lip),
        "rate": rate,
        "rate_r2": r2,
        "rate_points": npts,
        "lr": lr,
        "lr_source": "given" if run.train.lr is not None else "calibrated",
        "theta0_lambda_max": calib.get("theta0_lambda_max", math.nan),
        "theta0_lambda_min": calib.get("theta0_lambda_min", math.nan),
        "lambda_star": calib.get("lambda_star", math.nan),
        "lambda_0_over_star": (
            float(lam[0]) / calib["lambda_star"]
            if len(lam) and calib.get("lambda_star")
            else math.nan
        ),
        "mean_fwd_iters": float(np.nanmean(column("fwd_iters"))) if history else math.nan,
        "mean_bwd_iters": (
            float(np.nanmean(column("bwd_iters")))
            if np.isfinite(column("bwd_iters")).any()
            else math.nan
        ),
        "final_move_W": history[-1].get("move_W", math.nan) if history else math.nan,
        "final_move_U": history[-1].get("move_U", math.nan) if history else math.nan,
        "final_move_a": history[-1].get("move_a", math.nan) if history else math.nan,
    }


def write_spectrum(out: Path, calib: dict, X: torch.Tensor, y: torch.Tensor) -> None:
    if "evals" not in calib:
        return
    buf = io.BytesIO()
    np.savez(buf, evals=calib["evals"], coeffs=calib["coeffs"])
    atomic_write_bytes(out / "spectrum.npz", buf.getvalue())


def spectrum_readable(out: Path) -> bool:
    """Whether ``out/spectrum.npz`` exists and holds the arrays a run writes there."""
    try:
        with np.load(out / "spectrum.npz", allow_pickle=False) as z:
            return z["evals"].ndim == 1 and z["coeffs"].ndim >= 1
    except Exception:  # missing, cut short, garbled: zipfile, numpy or OSError say so
        return False


def finished_run(out: Path, rhash: str, overwrite: bool) -> RunResult | None:
    """A finished run with the same configuration in ``out``, or None if work remains.

    A run of another configuration there is refused, or with ``overwrite`` removed
    (:func:`overdeq.preflight.clear_run`) before this run writes anything, so the folder
    never mixes two runs.
    """
    summary_path = out / "summary.json"
    if not summary_path.is_file():
        return None
    try:
        summary = read_json(summary_path, keys=("config_hash",))
    except ValueError:
        return None  # cut short or not a summary (atomic writes prevent it): recompute
    if summary.get("config_hash") == rhash:
        try:
            hist = read_csv(out / "history.csv", columns=HISTORY_COLUMNS)
        except ValueError:  # missing, cut short or unmarked: redo the run (from its checkpoint)
            return None
        computed = summary.get("theta0_lambda_max") is not None and summary.get("lr") is not None
        if computed and not spectrum_readable(out):  # resuming rewrites it (from the checkpoint)
            return None
        return RunResult(summary=summary, history=hist, resumed_from=None, skipped=True)
    if not overwrite:
        raise ConfigError(
            f"{out} already holds a run with a different configuration "
            f"(hash {summary.get('config_hash')} there, {rhash} now). Choose another --out, "
            "or pass --overwrite to replace it."
        )
    clear_run(out, f"it held a run of another configuration (hash {summary.get('config_hash')})")
    return None


class CheckpointError(ConfigError):
    """checkpoint.pt cannot be resumed from: corrupt, or not this run's."""


# What every checkpoint holds (Run.checkpoint in train.py writes them).
CHECKPOINT_KEYS = (
    "format", "config_hash", "step", "params", "warm", "power", "history", "unconverged",
    "elapsed", "calib", "rng",
)  # fmt: skip


def _way_out(ckpt: Path) -> str:
    return (
        "Nothing was changed. To start this run over, move it aside "
        f"(mv {ckpt} {ckpt}.bad) and rerun, or rerun with --overwrite (removes the run's "
        "files in --out and starts over)."
    )


def _read_checkpoint(ckpt: Path) -> dict:
    """torch.load of ``ckpt``, or a CheckpointError saying it is corrupt and the way out."""
    size = ckpt.stat().st_size
    if size == 0:
        raise CheckpointError(f"{ckpt} is corrupt: it is empty (0 bytes). {_way_out(ckpt)}")
    try:
        state = torch.load(ckpt, map_location="cpu", weights_only=False)
    except PermissionError as exc:
        raise CheckpointError(
            f"{ckpt} cannot be read ({exc.strerror}); fix its permissions and rerun"
        ) from None
    except Exception as exc:  # cut short, garbage, another pickle: torch says it many ways
        why = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
        raise CheckpointError(
            f"{ckpt} is corrupt: torch cannot read it ({why.strip()}; {size} bytes, cut short "
            f"or overwritten). {_way_out(ckpt)}"
        ) from None
    if not isinstance(state, dict):
        raise CheckpointError(
            f"{ckpt} is corrupt: it holds a {type(state).__name__}, not an overdeq "
            f"checkpoint. {_way_out(ckpt)}"
        )
    return state


def _mismatch(state: dict, shapes: dict[str, tuple[int, ...]] | None) -> str | None:
    """What in ``state`` does not fit this run (missing keys, parameter shapes), or None."""
    missing = [k for k in CHECKPOINT_KEYS if k not in state]
    if missing:
        return f"it lacks {missing}"
    if shapes is None:
        return None
    params = state["params"]
    if not isinstance(params, dict) or set(params) != set(shapes):
        got = sorted(params) if isinstance(params, dict) else type(params).__name__
        return f"its parameters are {got}, this run's {sorted(shapes)}"
    for name, shape in shapes.items():
        have = tuple(getattr(params[name], "shape", ()))
        if have != shape:
            return f"parameter {name} has shape {have} there, {shape} in this run"
    return None


def load_checkpoint(
    ckpt: Path, rhash: str, overwrite: bool, shapes: dict[str, tuple[int, ...]] | None = None
) -> dict | None:
    """This run's checkpoint, or None to start from scratch.

    A corrupt checkpoint (empty, cut short, garbage), one of another format or
    configuration, and one whose contents do not fit this run (``shapes``: the parameters'
    shapes) is refused with the way out; with ``overwrite`` the run's files are removed
    instead and the run starts over.
    """
    if not ckpt.is_file():
        return None
    try:
        state = _read_checkpoint(ckpt)
    except CheckpointError as exc:
        if not overwrite:
            raise
        clear_run(ckpt.parent, str(exc).split(". ")[0])
        return None
    # the first reason to refuse it: (the error, what --overwrite says it removes it for)
    refusal: tuple[Exception, str] | None = None
    if state.get("format") != CHECKPOINT_FORMAT:
        refusal = (
            ConfigError(
                f"{ckpt} was written by another version of overdeq (checkpoint format "
                f"{state.get('format')}, this version reads {CHECKPOINT_FORMAT}). Pass "
                "--overwrite to start over there, or use another --out."
            ),
            f"{ckpt.name} has checkpoint format {state.get('format')}",
        )
    elif state.get("config_hash") != rhash:
        refusal = (
            ConfigError(
                f"{ckpt} was written by a different configuration (hash "
                f"{state.get('config_hash')} there, {rhash} now). Choose another --out, or "
                "pass --overwrite to start this configuration from scratch there."
            ),
            f"{ckpt.name} belongs to another configuration",
        )
    elif (problem := _mismatch(state, shapes)) is not None:
        message = (
            f"{ckpt} does not fit this run ({problem}): it is damaged or was edited. "
            + _way_out(ckpt)
        )
        refusal = (CheckpointError(message), message.split(". ")[0])
    if refusal is None:
        return state
    error, reason = refusal
    if not overwrite:
        raise error
    clear_run(ckpt.parent, reason)
    return None
