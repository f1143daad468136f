"""Experiment jobs on random DEQs (E1, E2, E3, E10 of shared/science.md section 5).

Each ``run_eX(params) -> rows`` is a pure function of its parameters (a dict; missing keys
take the quick-grid defaults in :data:`DEFAULTS`, unknown keys are an error) returning one
dict per measurement, ready for :func:`write_rows` as a tidy CSV. ``summarize_eX`` turns
those rows into the small derived tables (fitted slopes, probabilities, thresholds).

- E1 kernel limit: max|Z Z^T - K|, ||Z Z^T - K||_F / n and |lambda_min(Z Z^T) - lambda_*| vs
  width m (tied DEQ)
  and vs depth l (untied networks, against their depth-l kernel and the DEQ kernel).
- E2 initial condition: lambda_0 / lambda_* on a grid of n and m/n; P(lambda_0 >= lambda_*/2);
  threshold width m*(n) and its log-log exponent.
- E3 well-posedness vs sigma_w: ||W/sqrt(m)||_2, forward iterations, converged fraction.
- E10 kernel table: lambda_min and lambda_max of K and Theta per data set and sigma_w.

Inputs come from overdeq.data (unit-norm rows); the data seed is fixed within a job, so the
randomness measured is the weights' only.
"""

from __future__ import annotations

import math
import os
from collections import defaultdict
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np
import torch

from .data import DataSpec, load_dataset
from .io import write_csv
from .kernels import (
    deq_conjugate_kernel,
    deq_tangent_kernel,
    lambda_min,
    untied_conjugate_kernels,
)
from .random_deq import random_deq_grams, untied_grams
from .solvers import SolverConfig

__all__ = [
    "DEFAULTS",
    "REGIMES",
    "regime",
    "run_e1",
    "summarize_e1",
    "run_e2",
    "summarize_e2",
    "fit_e2_threshold",
    "run_e3",
    "summarize_e3",
    "run_e10",
    "write_rows",
    "loglog_slope",
]

_COMMON = {
    "sigma_u": 1.0,
    "d": None,
    "data_seed": 0,
    "dtype": "float64",
    "device": "cpu",
    "budget_bytes": None,
}
DEFAULTS: dict[str, dict[str, Any]] = {
    "e1": {
        **_COMMON,
        "data": ["identity", "gaussian"],
        "n": 50,
        "sigma_w": 0.4,
        "widths": [125, 250, 500, 1000, 2000],
        "seeds": 3,
        "untied_widths": [250, 1000],
        "max_depth": 50,
    },
    "e2": {
        **_COMMON,
        "data": ["identity", "gaussian"],
        "ns": [15, 30, 60],
        "sigma_w": 0.4,
        "ratios": [1, 2, 3, 4, 6, 8, 12, 16, 24, 32],
        "seeds": 10,
        "fraction": 0.5,
        "probability": 0.9,
    },
    "e3": {
        **_COMMON,
        "data": "gaussian",
        "n": 50,
        "width": 500,
        "seeds": 3,
        "sigma_ws": [round(0.1 * k, 1) for k in range(1, 16)],
        "tol": 1e-8,
        "max_iter": 1000,
        "w_norm": "exact",
    },
    "e10": {
        **_COMMON,
        "data": ["identity", "gaussian"],
        "n": 100,
        "sigma_a": 1.0,
        "sigma_ws": [round(0.1 * k, 1) for k in range(1, 15)],
    },
}
REGIMES = ("contraction", "mean-field", "divergent")
_DTYPES = {"float64": torch.float64, "float32": torch.float32}


def regime(sigma_w: float) -> str:
    """contraction (2 sigma_w < 1), mean-field (sigma_w^2 < 2) or divergent (sigma_w^2 >= 2).

    2 sigma_w ~ ||W/sqrt(m)||_2 at init; sigma_w^2 < 2 is where the kernel fixed point exists.
    """
    if 2 * sigma_w < 1:
        return "contraction"
    return "mean-field" if sigma_w**2 < 2 else "divergent"


for _defaults in DEFAULTS.values():
    _defaults.setdefault("data_root", "data")  # where raw MNIST / CIFAR-10 files live


def _params(name: str, params: Mapping[str, Any]) -> dict[str, Any]:
    defaults = DEFAULTS[name]
    unknown = sorted(set(params) - set(defaults))
    if unknown:
        raise ValueError(
            f"{name}: unknown parameter(s) {unknown}; valid parameters: {sorted(defaults)}"
        )
    p = {**defaults, **params}
    if p["dtype"] not in _DTYPES:
        raise ValueError(f"{name}: dtype must be one of {list(_DTYPES)}, got {p['dtype']!r}")
    p["torch_dtype"] = _DTYPES[p["dtype"]]
    if "seeds" in p:  # a count (seeds 0..k-1) or an explicit list
        seeds = p["seeds"]
        p["seed_list"] = list(range(seeds)) if isinstance(seeds, int) else list(seeds)
        if not p["seed_list"]:
            raise ValueError(f"{name}: seeds must be a positive count or a non-empty list")
    return p


def _names(data: str | Iterable[str]) -> list[str]:
    return [data] if isinstance(data, str) else list(data)


def _inputs(
    name: str, n: int, d: int | None, seed: int, root: str = "data"
) -> tuple[np.ndarray, int]:
    """Unit-norm inputs X (n, d) of data set ``name`` (raw files of real data under ``root``).

    ``d`` is the Gaussian input dimension (None: d = n); identity rows always use d = n (more
    columns would not change any Gram); other data sets have their own d.
    """
    dims = {"identity": n, "gaussian": d or n}
    spec = DataSpec(name, n=n, d=dims.get(name), seed=seed, root=root)
    ds = load_dataset(spec)
    return ds.X, ds.d


def _solver(p: dict[str, Any], tol: float | None = None, max_iter: int = 1000) -> SolverConfig:
    if tol is None:
        tol = 1e-10 if p["torch_dtype"] == torch.float64 else 1e-5
    return SolverConfig(name="picard", tol=tol, max_iter=max_iter)


def _sampling(p: dict[str, Any]) -> dict[str, Any]:
    return {
        "sigma_u": p["sigma_u"],
        "dtype": p["torch_dtype"],
        "device": p["device"],
        "budget_bytes": p["budget_bytes"],
    }


def _errors(G: torch.Tensor, K: torch.Tensor, lam_star: float) -> dict[str, float]:
    lam = lambda_min(G)
    diff = G - K
    err = float(diff.abs().max())
    return {
        "err_max": err,
        "err_max_rel": err / float(K.abs().max()),
        "err_rms": float(diff.norm()) / K.shape[0],
        "lambda_min": lam,
        "lambda_star": lam_star,
        "err_lambda": abs(lam - lam_star),
        "err_lambda_rel": abs(lam - lam_star) / lam_star,
    }


_NAN_ERRORS = dict.fromkeys(
    ("err_max", "err_max_rel", "err_rms", "lambda_min", "err_lambda", "err_lambda_rel"), math.nan
)


def run_e1(params: Mapping[str, Any]) -> list[dict[str, Any]]:
    """E1 rows: one per (data, network, width, seed[, depth, reference kernel])."""
    p = _params("e1", params)
    rows: list[dict[str, Any]] = []
    for name in _names(p["data"]):
        X, d = _inputs(name, p["n"], p["d"], p["data_seed"], p["data_root"])
        kw = {"sigma_w": p["sigma_w"], "sigma_u": p["sigma_u"]}
        K = deq_conjugate_kernel(X, **kw)
        lam_K = lambda_min(K)
        base = {"experiment": "e1", "data": name, "n": p["n"], "d": d, **kw}
        for m in p["widths"]:
            for s in random_deq_grams(
                X,
                width=m,
                seeds=p["seed_list"],
                sigma_w=p["sigma_w"],
                solver=_solver(p),
                **_sampling(p),
            ):
                errs = (
                    _errors(s.gram, K, lam_K)
                    if s.converged
                    else {**_NAN_ERRORS, "lambda_star": lam_K}
                )
                rows.append(
                    {
                        **base,
                        "network": "deq",
                        "width": m,
                        "seed": s.seed,
                        "depth": None,
                        "reference": "deq_kernel",
                        "converged": s.converged,
                        "iterations": s.iterations,
                        **errs,
                    }
                )
        Kl = untied_conjugate_kernels(X, p["max_depth"], **kw)  # (L, n, n)
        lam_l = [lambda_min(k) for k in Kl]
        for m in p["untied_widths"]:
            for s in untied_grams(
                X,
                width=m,
                depth=p["max_depth"],
                seeds=p["seed_list"],
                sigma_w=p["sigma_w"],
                **_sampling(p),
            ):
                for layer in range(p["max_depth"]):
                    G = s.grams[layer]
                    common = {
                        **base,
                        "network": "untied",
                        "width": m,
                        "seed": s.seed,
                        "depth": layer + 1,
                        "converged": True,
                        "iterations": None,
                    }
                    rows.append(
                        {
                            **common,
                            "reference": "untied_kernel",
                            **_errors(G, Kl[layer], lam_l[layer]),
                        }
                    )
                    rows.append({**common, "reference": "deq_kernel", **_errors(G, K, lam_K)})
    return rows


def loglog_slope(x: Iterable[float], y: Iterable[float]) -> tuple[float, float]:
    """Least-squares (slope, intercept) of log y against log x; NaN with < 2 usable points."""
    pts = [
        (math.log(a), math.log(b))
        for a, b in zip(x, y, strict=True)
        if a > 0 and b > 0 and math.isfinite(b)
    ]
    if len(pts) < 2:
        return math.nan, math.nan
    lx, ly = np.array(pts).T
    slope, intercept = np.polyfit(lx, ly, 1)
    return float(slope), float(intercept)


def summarize_e1(rows: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Log-log slope of the seed-mean error vs width for the tied DEQ (theory: -1/2).

    err_rms is the stable estimate; err_max is a maximum over n^2 entries (noisy), and for
    orthonormal inputs err_lambda ~ lambda_* (2 sqrt(n/m) - n/m) is shallower until m >> n.
    """
    groups: dict[tuple, dict[int, list[float]]] = defaultdict(lambda: defaultdict(list))
    for r in rows:
        if r["network"] != "deq" or not r["converged"]:
            continue
        for metric in ("err_max", "err_rms", "err_lambda"):
            groups[(r["data"], metric)][int(r["width"])].append(float(r[metric]))
    out = []
    for (name, metric), by_width in sorted(groups.items()):
        widths = sorted(by_width)
        means = [float(np.mean(by_width[m])) for m in widths]
        slope, intercept = loglog_slope(widths, means)
        out.append(
            {
                "experiment": "e1",
                "data": name,
                "metric": metric,
                "slope": slope,
                "intercept": intercept,
                "theory_slope": -0.5,
                "widths": len(widths),
                "min_width": widths[0],
                "max_width": widths[-1],
            }
        )
    return out


def run_e2(params: Mapping[str, Any]) -> list[dict[str, Any]]:
    """E2 rows: one per (data, n, m/n, seed) with lambda_0 / lambda_* and the MP-edge guess."""
    p = _params("e2", params)
    rows: list[dict[str, Any]] = []
    for name in _names(p["data"]):
        for n in p["ns"]:
            X, d = _inputs(name, n, p["d"], p["data_seed"], p["data_root"])
            lam_star = lambda_min(
                deq_conjugate_kernel(X, sigma_w=p["sigma_w"], sigma_u=p["sigma_u"])
            )
            for ratio in p["ratios"]:
                m = max(1, round(ratio * n))
                mp = max(0.0, 1 - math.sqrt(n / m)) ** 2
                for s in random_deq_grams(
                    X,
                    width=m,
                    seeds=p["seed_list"],
                    sigma_w=p["sigma_w"],
                    solver=_solver(p),
                    **_sampling(p),
                ):
                    lam0 = lambda_min(s.gram) if s.converged else math.nan
                    rows.append({
                        "experiment": "e2", "data": name, "n": n, "d": d, "ratio": ratio,
                        "width": m, "seed": s.seed, "sigma_w": p["sigma_w"],
                        "converged": s.converged, "iterations": s.iterations,
                        "lambda_0": lam0, "lambda_star": lam_star,
                        "lambda_ratio": lam0 / lam_star, "mp_prediction": mp,
                        "holds": bool(lam0 >= p["fraction"] * lam_star),
                        "fraction": p["fraction"],
                    })  # fmt: skip
    return rows


def summarize_e2(rows: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Per (data, n, m/n): probability that lambda_0 >= fraction * lambda_* and ratio quantiles.

    Unconverged solves count as failures (they are not evidence that the condition holds).
    """
    cells: dict[tuple, list[Mapping[str, Any]]] = defaultdict(list)
    for r in rows:
        cells[(r["data"], int(r["n"]), float(r["ratio"]))].append(r)
    out = []
    for (name, n, ratio), rs in sorted(cells.items()):
        vals = np.array([float(r["lambda_ratio"]) for r in rs if r["converged"]])
        out.append({
            "experiment": "e2", "data": name, "n": n, "ratio": ratio, "width": int(rs[0]["width"]),
            "seeds": len(rs), "converged": int(sum(bool(r["converged"]) for r in rs)),
            "probability": float(np.mean([bool(r["holds"]) and bool(r["converged"]) for r in rs])),
            "ratio_median": float(np.median(vals)) if vals.size else math.nan,
            "ratio_min": float(vals.min()) if vals.size else math.nan,
            "ratio_max": float(vals.max()) if vals.size else math.nan,
            "mp_prediction": float(rs[0]["mp_prediction"]),
        })  # fmt: skip
    return out


def fit_e2_threshold(
    cells: Iterable[Mapping[str, Any]], probability: float = 0.9
) -> list[dict[str, Any]]:
    """m*(n): the width where P(lambda_0 >= f lambda_*) crosses ``probability``; m* ~ n^b.

    The crossing is interpolated linearly in log(m/n) between the last grid ratio below the
    probability and the first one at or above it, so the exponent is not quantised to the
    grid. One row per (data, n) with m* (NaN when no grid value reaches the probability:
    censored, left out of the fit; the smallest ratio when even it does) and the data set's
    fitted exponent b repeated on each row.
    """
    by_data: dict[str, dict[int, list[Mapping[str, Any]]]] = defaultdict(lambda: defaultdict(list))
    for c in cells:
        by_data[c["data"]][int(c["n"])].append(c)
    out = []
    for name, by_n in sorted(by_data.items()):
        stars = {}
        for n, cs in sorted(by_n.items()):
            grid = sorted(cs, key=lambda c: float(c["ratio"]))
            ratios = [float(c["ratio"]) for c in grid]
            probs = [float(c["probability"]) for c in grid]
            hit = next((k for k, p in enumerate(probs) if p >= probability), None)
            if hit is None:
                stars[n] = (math.nan, math.nan)
                continue
            star = ratios[hit]
            if hit > 0 and probs[hit] > probs[hit - 1]:
                frac = (probability - probs[hit - 1]) / (probs[hit] - probs[hit - 1])
                lo, hi = math.log(ratios[hit - 1]), math.log(ratios[hit])
                star = math.exp(lo + frac * (hi - lo))
            stars[n] = (star, star * n)
        ns = sorted(stars)
        slope, _ = loglog_slope(ns, [stars[n][1] for n in ns])
        used = sum(math.isfinite(stars[n][1]) for n in ns)
        for n in ns:
            out.append(
                {
                    "experiment": "e2",
                    "data": name,
                    "n": n,
                    "ratio_star": stars[n][0],
                    "m_star": stars[n][1],
                    "probability": probability,
                    "exponent": slope,
                    "fit_points": used,
                }
            )
    return out


def run_e3(params: Mapping[str, Any]) -> list[dict[str, Any]]:
    """E3 rows: one per (sigma_w, seed): ||W/sqrt(m)||_2, forward iterations, convergence."""
    p = _params("e3", params)
    X, d = _inputs(p["data"], p["n"], p["d"], p["data_seed"], p["data_root"])
    solver = _solver(p, tol=p["tol"], max_iter=p["max_iter"])
    rows: list[dict[str, Any]] = []
    for sw in p["sigma_ws"]:
        diag = 1 / (2 - sw**2) if sw**2 < 2 else math.inf  # K_ii for unit inputs
        for s in random_deq_grams(
            X,
            width=p["width"],
            seeds=p["seed_list"],
            sigma_w=sw,
            solver=solver,
            w_norm=p["w_norm"],
            **_sampling(p),
        ):
            rows.append({
                "experiment": "e3", "data": p["data"], "n": p["n"], "d": d, "width": p["width"],
                "sigma_w": sw, "regime": regime(sw), "seed": s.seed, "w_norm": s.w_norm,
                "contraction_bound": 2 * sw, "converged": s.converged,
                "iterations": s.iterations, "residual": s.residual,
                "feature_norm": s.feature_norm, "kernel_feature_norm": math.sqrt(diag),
            })  # fmt: skip
    return rows


def summarize_e3(rows: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Per sigma_w: converged fraction (1 - divergence rate), median iterations, mean norm."""
    groups: dict[float, list[Mapping[str, Any]]] = defaultdict(list)
    for r in rows:
        groups[float(r["sigma_w"])].append(r)
    out = []
    for sw, rs in sorted(groups.items()):
        out.append(
            {
                "experiment": "e3",
                "sigma_w": sw,
                "regime": regime(sw),
                "seeds": len(rs),
                "converged_fraction": float(np.mean([bool(r["converged"]) for r in rs])),
                "iterations_median": float(np.median([int(r["iterations"]) for r in rs])),
                "w_norm_mean": float(np.mean([float(r["w_norm"]) for r in rs])),
            }
        )
    return out


def run_e10(params: Mapping[str, Any]) -> list[dict[str, Any]]:
    """E10 rows: one per (data, sigma_w): extreme eigenvalues of K and Theta (no biases)."""
    p = _params("e10", params)
    rows: list[dict[str, Any]] = []
    for name in _names(p["data"]):
        X, d = _inputs(name, p["n"], p["d"], p["data_seed"], p["data_root"])
        for sw in p["sigma_ws"]:
            K = deq_conjugate_kernel(X, sigma_w=sw, sigma_u=p["sigma_u"])
            T = deq_tangent_kernel(X, sigma_w=sw, sigma_u=p["sigma_u"], sigma_a=p["sigma_a"], K=K)
            eK, eT = torch.linalg.eigvalsh(K), torch.linalg.eigvalsh(T)
            rows.append(
                {
                    "experiment": "e10",
                    "data": name,
                    "n": p["n"],
                    "d": d,
                    "sigma_w": sw,
                    "sigma_u": p["sigma_u"],
                    "sigma_a": p["sigma_a"],
                    "regime": regime(sw),
                    "lambda_K": float(eK[0]),
                    "lambda_max_K": float(eK[-1]),
                    "lambda_Theta": float(eT[0]),
                    "lambda_max_Theta": float(eT[-1]),
                    "K_diag_max": float(K.diagonal().max()),
                }
            )
    return rows


def write_rows(rows: Iterable[Mapping[str, Any]], path: str | os.PathLike) -> None:
    """Write rows as a tidy CSV (atomic; columns in first-seen order, floats at full precision)."""
    write_csv(path, rows)
