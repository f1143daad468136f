"""Small synthetic results for the figure and table scripts: every table they read, with the
columns they use and the grids of the default tier (data sets, widths, settings), but a
handful of rows and made-up numbers, so a test draws every figure in seconds.

``write_results(root, tier)`` writes them under ``root/results/<tier>/`` and
``root/benchmarks/<tier>/``, as the workflow would; a script run by hand with
``OVERDEQ_ROOT=root OVERDEQ_TIER=tier`` reads them.
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from overdeq.io import write_csv

REPO = Path(__file__).resolve().parents[1]
WIDTHS = (160, 320, 640)
SEEDS = (0, 1)
MAIN = ("calibrated", "released")
ABLATIONS = ("released_tight", "released_calibrated_lr", "width_bug")


def _write(df: pd.DataFrame, path: Path, sep: str = ",") -> None:
    """A table as the jobs write it: CSV through overdeq.io (with its completeness marker);
    Snakemake's benchmark files (.tsv) as Snakemake writes them."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if sep == "\t":
        df.to_csv(path, index=False, sep=sep)
    else:
        write_csv(path, df.to_dict("records"), list(df.columns))


def _locked_snakemake() -> str:
    lock = (REPO / "requirements.lock").read_text()
    return re.search(r"^snakemake==([^\s\\]+)", lock, re.M).group(1)


def _training(rng: np.random.Generator) -> tuple[pd.DataFrame, pd.DataFrame]:
    cells = [
        (d, s, m, seed)
        for d in ("identity", "digits")
        for s in MAIN
        for m in WIDTHS
        for seed in SEEDS
    ]
    cells += [("identity", s, 640, 0) for s in ABLATIONS]
    runs, history = [], []
    for dataset, setting, width, seed in cells:
        run = f"train/{dataset}/{setting}/m{width}/seed{seed}"
        steps = 400 if dataset == "identity" else 1200
        diverged = setting == "width_bug"
        rate = {"calibrated": 0.92, "released_calibrated_lr": 0.98}.get(setting, 0.9999)
        rate = rate if dataset == "identity" else 1 - (1 - rate) / 40
        done = 2 if diverged else steps
        t = np.arange(0, done + 1, 10 if not diverged else 1)
        loss = 20.0 * rate**t * (1 + 0.01 * rng.standard_normal(len(t))) + 1e-11
        legacy = setting == "released"
        lam = 0.05 * (1 - 0.1 * t / steps)
        history.append(
            pd.DataFrame(
                {
                    "run": run,
                    "dataset": dataset,
                    "setting": setting,
                    "width": width,
                    "seed": seed,
                    "step": t,
                    "loss": loss,
                    "lambda_min": lam,
                    "w_norm": 0.8 + 0.001 * rng.standard_normal(len(t)),
                    "lipschitz": 4.2 if diverged else 0.8,
                    "fwd_iters": rng.integers(3, 12, len(t)),
                    "bwd_iters": rng.integers(8, 13, len(t)),
                    "fwd_residual": 0.5 if diverged else 1e-7,
                    "lambda_min_legacy": lam * rng.uniform(1.5, 5, len(t)) if legacy else np.nan,
                }
            )
        )
        runs.append(
            {
                "run": run,
                "dataset": dataset,
                "setting": setting,
                "width": width,
                "seed": seed,
                "status": "diverged" if diverged else "finished",
                "steps_done": done,
                "initial_loss": float(loss[0]),
                "final_loss": float(loss[-1]),
                "rate": math.nan if diverged else rate * (1 + 1e-4 * rng.standard_normal()),
                "predicted_rate": math.nan if diverged else rate,
                "rate_r2": 0.99,
                "lambda_0": 0.05,
                "min_lambda_ratio": 0.85,
                "max_w_norm": 0.81,
                "max_w_norm_exact": 0.81,
                "mean_fwd_iters": 6.0,
                "mean_bwd_iters": 10.0,
                "final_move_W": 0.3 / math.sqrt(width),
                "final_move_U": 0.5 / math.sqrt(width),
                "final_move_a": 2.0 / math.sqrt(width),
                "precision": "float32",
                "device": "cpu: synthetic",
                "wall_time_s": 100.0 + width / 10,
                # numpy differs from its pin on purpose: the paper must name it
                "versions": f"numpy=0.0.1 python=3.11.7 snakemake={_locked_snakemake()} torch=2.13.0+cpu",
                "lr_scale": 0.5,
                "patience": 3,
                "max_readout_error": float(rng.uniform(0.5, 5)) if legacy else math.nan,
            }
        )
    return pd.DataFrame(runs), pd.concat(history, ignore_index=True)


def _gradient_error() -> pd.DataFrame:
    tols = (1e-1, 1e-2, 1e-3, 1e-4, 1e-6, 1e-8)
    rows = [
        {
            "method": method,
            "tol": tol,
            "block": block,
            "rel_error": tol * (0.3 if method == "released" else 0.1),
            "fwd_iters": int(-3 * math.log10(tol)),
            "bwd_iters": 2,
        }
        for method in ("released", "exact")
        for tol in tols
        for block in ("W", "U", "a", "all")
    ]
    return pd.DataFrame(rows)


def _e1(rng: np.random.Generator) -> tuple[pd.DataFrame, pd.DataFrame]:
    rows, summary = [], []
    base = {"experiment": "e1", "n": 50, "sigma_w": 0.4}
    for data in ("identity", "gaussian"):
        for m in (125, 250, 500, 1000, 2000):
            for seed in range(3):
                err = 0.6 / math.sqrt(m) * (1 + 0.05 * rng.standard_normal())
                rows.append(
                    {
                        **base,
                        "data": data,
                        "network": "deq",
                        "width": m,
                        "seed": seed,
                        "depth": math.nan,
                        "reference": "deq_kernel",
                        "converged": True,
                        "err_rms": err,
                    }
                )
        for m in (250, 1000):
            for depth in range(1, 21):
                for ref in ("deq_kernel", "untied_kernel"):
                    err = 0.6 / math.sqrt(m) * (1 + (0.4 / depth if ref == "deq_kernel" else 0))
                    rows.append(
                        {
                            **base,
                            "data": data,
                            "network": "untied",
                            "width": m,
                            "seed": 0,
                            "depth": depth,
                            "reference": ref,
                            "converged": True,
                            "err_rms": err,
                        }
                    )
        for metric, slope in (("err_rms", -0.5), ("err_lambda", -0.4)):
            summary.append(
                {
                    "experiment": "e1",
                    "data": data,
                    "metric": metric,
                    "slope": slope,
                    "intercept": math.log(0.6),
                }
            )
    return pd.DataFrame(rows), pd.DataFrame(summary)


def _e2() -> tuple[pd.DataFrame, pd.DataFrame]:
    rows, cells = [], []
    ratios = (1, 2, 4, 8, 16, 32)
    for data in ("identity", "gaussian"):
        star = 12.0 if data == "identity" else 5.0
        for n in (15, 30, 60):
            for r in ratios:
                mp = (1 - math.sqrt(1 / r)) ** 2
                median = mp if data == "identity" else min(1.0, 1.4 * mp + 0.05)
                for seed in range(4):
                    rows.append(
                        {
                            "experiment": "e2",
                            "data": data,
                            "n": n,
                            "ratio": r,
                            "width": r * n,
                            "seed": seed,
                            "sigma_w": 0.4,
                            "fraction": 0.5,
                        }
                    )
                cells.append(
                    {
                        "experiment": "e2",
                        "data": data,
                        "n": n,
                        "ratio": float(r),
                        "width": r * n,
                        "probability": float(r >= star),
                        "ratio_median": median,
                        "ratio_min": 0.8 * median,
                        "ratio_max": min(1.0, 1.2 * median),
                        "mp_prediction": mp,
                        "threshold_probability": 0.9,
                        "ratio_star": star,
                        "m_star": star * n,
                        "exponent": 1.0,
                        "fit_points": 3,
                    }
                )
    return pd.DataFrame(rows), pd.DataFrame(cells)


def _e3() -> tuple[pd.DataFrame, pd.DataFrame]:
    sigmas = [round(0.1 * k, 1) for k in range(1, 16)]

    def regime(sw: float) -> str:
        return "contraction" if 2 * sw < 1 else ("mean-field" if sw**2 < 2 else "divergent")

    rows = [
        {
            "experiment": "e3",
            "data": "gaussian",
            "n": 50,
            "width": 500,
            "sigma_w": sw,
            "regime": regime(sw),
            "seed": seed,
            "w_norm": 2 * sw * (1 + 0.01 * seed),
            "converged": sw < 1.25,
            "iterations": 1000 if sw >= 1.25 else int(10 / (1.3 - sw)),
        }
        for sw in sigmas
        for seed in range(3)
    ]
    rows = pd.DataFrame(rows)
    summary = rows.groupby(["sigma_w", "regime"], as_index=False).agg(
        converged_fraction=("converged", "mean"), iterations_median=("iterations", "median")
    )
    return rows, summary


def _e10() -> pd.DataFrame:
    rows = [
        {
            "experiment": "e10",
            "data": data,
            "n": 100,
            "sigma_w": sw,
            "sigma_u": 1.0,
            "sigma_a": 1.0,
            "lambda_K": scale * (0.2 + sw),
            "lambda_Theta": scale * (0.2 + sw) * 1.5,
        }
        for data, scale in (("identity", 1.0), ("gaussian", 0.5), ("digits", 0.01))
        for sw in (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.8, 1.0)
    ]
    return pd.DataFrame(rows)


def _verify(tier: str) -> dict:
    claims = yaml.safe_load((REPO / "config" / "claims.yaml").read_text())["claims"]
    checks = [
        {
            "check": k["id"],
            "claim": c["id"],
            "experiment": k["experiment"],
            "what": k["what"],
            "value": 0.5,
            "condition": f"{k['expect']} {k['threshold']}",
            "status": "PASS",
        }
        for c in claims
        for k in c["checks"]
    ]
    return {
        "tier": tier,
        "claims": {c["id"]: "PASS" for c in claims},
        "statements": {c["id"]: c["statement"] for c in claims},
        "checks": checks,
    }


def write_results(root: Path, tier: str) -> None:
    """Write every table the scripts read under ``root`` for ``tier``."""
    rng = np.random.default_rng(0)
    res = root / "results" / tier
    runs, history = _training(rng)
    _write(runs, res / "aggregate" / "train_runs.csv")
    _write(history, res / "aggregate" / "train_history.csv")
    _write(_gradient_error(), res / "ablations" / "gradient_error.csv")
    for name, df in zip(("rows", "summary"), _e1(rng), strict=True):
        _write(df, res / "random_deq" / "e1" / f"{name}.csv")
    for name, df in zip(("rows", "summary"), _e2(), strict=True):
        _write(df, res / "random_deq" / "e2" / f"{name}.csv")
    for name, df in zip(("rows", "summary"), _e3(), strict=True):
        _write(df, res / "random_deq" / "e3" / f"{name}.csv")
    (res / "random_deq" / "e3" / "meta.json").write_text(json.dumps({"params": {"tol": 1e-8}}))
    _write(_e10(), res / "random_deq" / "e10" / "rows.csv")
    (res / "verify.json").write_text(json.dumps(_verify(tier)))
    bench = pd.DataFrame({"s": [3.5, 1.25], "max_rss": [300.0, 250.0]})
    _write(bench, root / "benchmarks" / tier / "random_deq" / "e1.tsv", sep="\t")
    # a training job redone on a finished run: 0.5 s of checking, the run took 100 + m / 10 s
    quick = pd.DataFrame({"s": [0.5], "max_rss": [200.0]})
    _write(quick, root / "benchmarks" / tier / "train/identity/calibrated/m160/seed0.tsv", sep="\t")
