"""Collect finished training runs into tidy tables (one row per run, one row per log).

Every file of a run is read through the validating readers of :mod:`overdeq.io`: a summary
that is not complete JSON, a history cut short or without its marker, a missing or corrupt
spectrum of a run that wrote one stop the aggregate with a message naming the file and how
to rebuild it, instead of padding a table with empty cells.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np

from .io import ResultFileError, read_csv, read_json, rebuild_hint, write_csv
from .theory import FLOORS, fit_rate, predicted_losses, rate_bounds

__all__ = [
    "run_row",
    "collect_runs",
    "stack_histories",
    "aggregate_runs",
    "read_summary",
    "read_history",
    "RUN_COLUMNS",
    "TRAIN_MAKER",
]

# who makes a run directory's files (for the readers' error messages)
TRAIN_MAKER = "rule train (overdeq train --out <run dir>)"
SUMMARY_KEYS = ("status", "config", "config_hash")
HISTORY_TYPES = {"step": int, "loss": float, "lambda_min": float}

RUN_COLUMNS = [
    "run",
    "dataset",
    "setting",
    "mode",
    "width",
    "n",
    "seed",
    "status",
    "reason",
    "steps",
    "steps_done",
    "lr",
    "lr_source",
    "lr_scale",
    "patience",
    "precision_floor",
    "initial_loss",
    "final_loss",
    "rate",
    "rate_r2",
    "lambda_0",
    "lambda_star",
    "lambda_0_over_star",
    "min_lambda_min",
    "min_lambda_ratio",
    "max_w_norm",
    "max_w_norm_exact",
    "max_lipschitz",
    "theta0_lambda_max",
    "theta0_lambda_min",
    "mean_fwd_iters",
    "mean_bwd_iters",
    "final_move_W",
    "final_move_U",
    "final_move_a",
    "wall_time_s",
    "peak_memory_mb",
    "device",
    "precision",
    "versions",
    "git_commit",
    "config_hash",
    "predicted_rate",
    "rate_exponent_error",
    "predicted_final_loss",
    "rate_bound_theta",
    "rate_bound_lambda0",
    "max_readout_error",
    "readout_was_min",
]


def _versions(versions: dict[str, Any]) -> str:
    """The package versions a run recorded, as one cell: ``numpy=2.4.6 python=3.11.7 ...``."""
    return " ".join(f"{name}={v}" for name, v in sorted(versions.items()) if v)


def run_row(run_dir: str | Path) -> dict[str, Any]:
    """One row describing a run directory (its summary.json, tags and config)."""
    run_dir = Path(run_dir)
    s = read_summary(run_dir)
    cfg, prov, tags = s.get("config", {}), s.get("provenance", {}), s.get("tags", {})
    row = {k: s.get(k) for k in RUN_COLUMNS if k in s}
    row.update(
        run=str(run_dir),
        dataset=tags.get("dataset", cfg.get("data", {}).get("name")),
        setting=tags.get("setting", cfg.get("mode")),
        mode=cfg.get("mode"),
        width=cfg.get("model", {}).get("width"),
        n=cfg.get("data", {}).get("n"),
        seed=cfg.get("seeds", {}).get("seed"),
        wall_time_s=prov.get("wall_time_s"),
        peak_memory_mb=prov.get("peak_memory_mb"),
        device=prov.get("device"),
        precision=prov.get("precision"),
        versions=_versions(prov.get("versions") or {}),
        git_commit=(prov.get("git") or {}).get("commit"),
        config_hash=s.get("config_hash"),
        lr_scale=cfg.get("train", {}).get("lr_scale"),
        patience=cfg.get("train", {}).get("patience"),
        precision_floor=FLOORS.get(cfg.get("train", {}).get("precision"), math.nan),
    )
    row.update(_predictions(run_dir, s))
    row.update(_readout_errors(run_dir))
    return row


def read_summary(run_dir: str | Path) -> dict[str, Any]:
    """A run's summary.json, checked (complete JSON with the keys the tables need)."""
    return read_json(Path(run_dir) / "summary.json", keys=SUMMARY_KEYS, made_by=TRAIN_MAKER)


def read_history(run_dir: str | Path) -> list[dict[str, str]]:
    """A run's history.csv, checked (complete, with step, loss and lambda_min as numbers)."""
    return read_csv(Path(run_dir) / "history.csv", columns=HISTORY_TYPES, made_by=TRAIN_MAKER)


def _spectrum(run_dir: Path, s: dict[str, Any]) -> tuple[np.ndarray, np.ndarray] | None:
    """Theta_0's eigenvalues and r_0's coefficients, or None for a run that has none.

    A run whose calibration found Theta_0 (theta0_lambda_max in its summary) and that did
    not diverge has written spectrum.npz (train.calibrate): its absence is an error.
    """
    path = run_dir / "spectrum.npz"
    # written at calibration; `overdeq train` on the finished run finds it missing or damaged
    # and rewrites it from the checkpoint (which keeps Theta_0's spectrum), without retraining
    redo = (
        f"It is made by {TRAIN_MAKER}; rerunning the run rewrites it from the run's checkpoint: "
        f"{rebuild_hint(run_dir / 'summary.json')}"
    )
    if not path.exists():
        if s.get("theta0_lambda_max") is None or s.get("lr") is None:
            return None
        raise ResultFileError(
            f"{path} is missing, but {run_dir / 'summary.json'} says the run computed Theta_0 "
            f"(whose spectrum is written beside it). {redo}"
        )
    try:
        with np.load(path, allow_pickle=False) as z:
            return np.asarray(z["evals"]), np.asarray(z["coeffs"])
    except Exception as exc:  # a cut or garbled .npz fails in zipfile, numpy or pickle
        raise ResultFileError(
            f"{path} is not a readable spectrum ({type(exc).__name__}: {exc}): it is cut "
            f"short or corrupt. {redo}"
        ) from None


def _predictions(run_dir: Path, s: dict[str, Any]) -> dict[str, Any]:
    """E6: the tangent-kernel prediction of the loss curve at the logged steps."""
    if s.get("status") != "finished":
        return {}
    spectrum = _spectrum(run_dir, s)
    if spectrum is None:
        return {}
    evals, coeffs = spectrum
    loss_factor = 1.0 if s["config"]["train"]["loss"] == "half_sse" else 2.0
    steps = np.array([float(r["step"]) for r in read_history(run_dir)])
    pred = predicted_losses(evals, coeffs, s["lr"], steps, loss_factor)
    rate, _, _ = fit_rate(steps, pred, FLOORS[s["config"]["train"]["precision"]])
    # relative error in the exponent: |log rate - log predicted| / |log predicted|
    err = abs(np.log(s["rate"]) - np.log(rate)) / abs(np.log(rate)) if rate < 1 else np.nan
    return {
        "predicted_rate": rate,
        "rate_exponent_error": float(err),
        "predicted_final_loss": float(pred[-1]),
        **rate_bounds(s["lr"], s["theta0_lambda_min"], s["lambda_0"], loss_factor),
    }


def _readout_errors(run_dir: Path) -> dict[str, Any]:
    """E7: the released readout of lambda_min against the true smallest eigenvalue."""
    hist = [r for r in read_history(run_dir) if r.get("lambda_min_legacy")]
    if not hist:
        return {}
    errs = [
        abs(float(r["lambda_min_legacy"]) - float(r["lambda_min"])) / float(r["lambda_min"])
        for r in hist
    ]
    return {"max_readout_error": max(errs), "readout_was_min": int(max(errs) < 1e-6)}


def collect_runs(run_dirs: Iterable[str | Path]) -> list[dict[str, Any]]:
    return [run_row(d) for d in sorted(map(str, run_dirs))]


def stack_histories(run_dirs: Iterable[str | Path]) -> list[dict[str, Any]]:
    """All history.csv rows, each prefixed with the run's identifying columns."""
    rows = []
    for d in sorted(map(str, run_dirs)):
        ident = {
            k: v
            for k, v in run_row(d).items()
            if k in ("run", "dataset", "setting", "mode", "width", "n", "seed")
        }
        for h in read_history(d):
            rows.append({**ident, **h})
    return rows


def aggregate_runs(
    run_dirs: Iterable[str | Path], runs_csv: str | Path, history_csv: str | Path
) -> None:
    run_dirs = list(run_dirs)
    runs, history = collect_runs(run_dirs), stack_histories(run_dirs)  # every check first,
    write_csv(runs_csv, runs, RUN_COLUMNS)  # so a bad run leaves both old tables in place
    write_csv(history_csv, history)
