"""Collect finished training runs into tidy tables (one row per run, one row per log)."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

from .io import read_csv, read_json, write_csv

__all__ = ["run_row", "collect_runs", "stack_histories", "aggregate_runs", "RUN_COLUMNS"]

RUN_COLUMNS = [
    "run", "dataset", "setting", "mode", "width", "n", "seed", "status", "reason",
    "steps", "steps_done", "lr", "lr_source", "initial_loss", "final_loss", "rate", "rate_r2",
    "lambda_0", "min_lambda_min", "min_lambda_ratio", "max_w_norm", "max_w_norm_exact",
    "max_lipschitz", "theta0_lambda_max", "theta0_lambda_min", "mean_fwd_iters",
    "mean_bwd_iters", "final_move_W", "final_move_U", "final_move_a", "wall_time_s",
    "peak_memory_mb", "device", "precision", "git_commit", "config_hash",
]


def run_row(run_dir: str | Path) -> dict[str, Any]:
    """One row describing a run directory (its summary.json, tags and config)."""
    run_dir = Path(run_dir)
    s = read_json(run_dir / "summary.json")
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
        git_commit=(prov.get("git") or {}).get("commit"),
        config_hash=s.get("config_hash"),
    )
    return row


def collect_runs(run_dirs: Iterable[str | Path]) -> list[dict[str, Any]]:
    return [run_row(d) for d in sorted(map(str, run_dirs))]


def stack_histories(run_dirs: Iterable[str | Path]) -> list[dict[str, Any]]:
    """All history.csv rows, each prefixed with the run's identifying columns."""
    rows = []
    for d in sorted(map(str, run_dirs)):
        ident = {k: v for k, v in run_row(d).items()
                 if k in ("run", "dataset", "setting", "mode", "width", "n", "seed")}
        for h in read_csv(Path(d) / "history.csv"):
            rows.append({**ident, **h})
    return rows


def aggregate_runs(run_dirs: Iterable[str | Path], runs_csv: str | Path,
                   history_csv: str | Path) -> None:
    run_dirs = list(run_dirs)
    write_csv(runs_csv, collect_runs(run_dirs), RUN_COLUMNS)
    write_csv(history_csv, stack_histories(run_dirs))
