"""Experiment jobs on random DEQs (E1, E2, E3, E10 of docs/science.md).

Each experiment has one frozen parameter dataclass (:class:`E1Params`, ...): its fields,
their defaults and their checks (in ``__post_init__``; a bad value raises a ValueError that
names the key, the value and what is allowed). ``run_eX(params) -> rows`` is a pure
function of those parameters returning one dict per measurement, ready for
:func:`write_rows` as a tidy CSV; ``summarize_eX(rows, params)`` turns the rows into the
small derived tables (fitted slopes, probabilities, thresholds). :data:`EXPERIMENTS` maps
each name to its (params, run, summarize).

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

import json
import math
import os
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass, field, fields
from typing import Any, ClassVar, NamedTuple

import numpy as np
import torch

from . import checks
from .data import DATASETS, DataSpec, load_dataset
from .io import write_csv
from .kernels import (
    SIGMA_W2_MAX,
    deq_conjugate_kernel,
    deq_tangent_kernel,
    lambda_min,
    untied_conjugate_kernels,
)
from .model import DEQConfig
from .random_deq import MAX_ITER, W_NORMS, default_solver, random_deq_grams, untied_grams
from .solvers import SolverConfig
from .theory import loglog_slope

__all__ = [
    "EXPERIMENTS",
    "Experiment",
    "RandomDEQParams",
    "E1Params",
    "E2Params",
    "E3Params",
    "E10Params",
    "DTYPES",
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
]

REGIMES = ("contraction", "mean-field", "divergent")
_DTYPES = {"float64": torch.float64, "float32": torch.float32}
DTYPES = tuple(_DTYPES)
_SIGMA_W = checks.number(
    0.0, math.sqrt(SIGMA_W2_MAX), hi_label="sqrt(2) (where the DEQ kernel exists)"
)
_POSITIVE = checks.number(0.0, lo_open=True)


def regime(sigma_w: float) -> str:
    """contraction (2 sigma_w < 1), mean-field (sigma_w^2 < 2) or divergent (sigma_w^2 >= 2).

    2 sigma_w ~ ||W/sqrt(m)||_2 at init; sigma_w^2 < 2 is where the kernel fixed point exists.
    """
    if 2 * sigma_w < 1:
        return "contraction"
    return "mean-field" if sigma_w**2 < SIGMA_W2_MAX else "divergent"


def _knob(default: Any, check: checks.Check) -> Any:
    """A parameter: its default and its check (run by RandomDEQParams.__post_init__)."""
    return field(default=default, metadata={"check": check})


def _count(default: Any) -> Any:
    return _knob(default, checks.integer(1))


def _counts(default: tuple[int, ...]) -> Any:
    return _knob(default, checks.list_of(checks.integer(1)))


def _data_sets(default: str | tuple[str, ...] = ("identity", "gaussian")) -> Any:
    """The data set(s) of an experiment: one name, or several (each its own rows)."""
    return _knob(default, checks.choice(DATASETS, many=not isinstance(default, str)))


def _show(value: Any) -> str:
    try:
        return json.dumps(value)
    except TypeError:
        return repr(value)


@dataclass(frozen=True)
class RandomDEQParams:
    """The parameters every random-DEQ experiment has; subclasses add their own.

    Lists are stored as tuples. ``from_mapping`` builds one from a job's JSON object.
    """

    name: ClassVar[str] = "random-deq"

    sigma_u: float = _knob(DEQConfig.sigma_u, _POSITIVE)  # U ~ N(0, sigma_u^2)
    d: int | None = _knob(None, checks.optional_integer(1))  # Gaussian dimension (None: n)
    data_seed: int = _knob(0, checks.integer(0))
    dtype: str = _knob("float64", checks.choice(DTYPES, many=False))
    device: str = _knob("cpu", checks.device)
    budget_bytes: int | None = _knob(None, checks.optional_integer(1))  # refuse larger widths
    data_root: str = _knob(DataSpec.root, checks.folder)  # where raw MNIST / CIFAR-10 live

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            allowed = f.metadata["check"](value)
            if allowed is not None:
                raise ValueError(
                    f"{self.name}: parameter {f.name!r} must be {allowed}, got {_show(value)}"
                )
            if isinstance(value, list):
                object.__setattr__(self, f.name, tuple(value))

    @classmethod
    def from_mapping(cls, params: Any) -> RandomDEQParams:
        """The parameters of a JSON object; an unknown key is an error that lists the valid."""
        if not isinstance(params, Mapping):
            raise ValueError(
                f"{cls.name}: parameters must be a JSON object, got {type(params).__name__}"
            )
        valid = sorted(f.name for f in fields(cls))
        unknown = sorted(set(params) - set(valid))
        if unknown:
            raise ValueError(
                f"{cls.name}: unknown parameter(s) {unknown}; valid parameters: {valid}"
            )
        return cls(**params)

    def to_dict(self) -> dict[str, Any]:
        """Every parameter, JSON-ready (tuples as lists)."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}

    @property
    def torch_dtype(self) -> torch.dtype:
        return _DTYPES[self.dtype]


@dataclass(frozen=True)
class SampledParams(RandomDEQParams):
    """What the experiments that sample random DEQs (E1, E2, E3) add: seeds and a solver."""

    seeds: int | tuple[int, ...] = _knob(3, checks.seeds)  # a count k: seeds 0..k-1
    tol: float | None = _knob(None, checks.optional_number(_POSITIVE))  # None: dtype's reach
    max_iter: int = _count(MAX_ITER)

    @property
    def seed_list(self) -> list[int]:
        return list(range(self.seeds)) if isinstance(self.seeds, int) else list(self.seeds)

    def solver(self) -> SolverConfig:
        """Picard at ``tol`` (None: the tolerance the dtype can reach) and ``max_iter``."""
        return default_solver(self.torch_dtype, tol=self.tol, max_iter=self.max_iter)

    def sampling(self) -> dict[str, Any]:
        """The keywords random_deq's samplers share."""
        return {
            "sigma_u": self.sigma_u,
            "dtype": self.torch_dtype,
            "device": self.device,
            "budget_bytes": self.budget_bytes,
        }


@dataclass(frozen=True)
class E1Params(SampledParams):
    """E1 kernel limit: ||Z Z^T - K|| vs width (tied DEQ) and vs depth (untied networks)."""

    name: ClassVar[str] = "e1"

    data: str | tuple[str, ...] = _data_sets()
    n: int = _count(50)
    sigma_w: float = _knob(DEQConfig.sigma_w, _SIGMA_W)
    widths: tuple[int, ...] = _counts((125, 250, 500, 1000, 2000))
    untied_widths: tuple[int, ...] = _counts((250, 1000))
    max_depth: int = _count(50)


@dataclass(frozen=True)
class E2Params(SampledParams):
    """E2 initial condition: lambda_0 / lambda_* on a grid of n and m/n."""

    name: ClassVar[str] = "e2"

    data: str | tuple[str, ...] = _data_sets()
    ns: tuple[int, ...] = _counts((15, 30, 60))
    sigma_w: float = _knob(DEQConfig.sigma_w, _SIGMA_W)
    ratios: tuple[float, ...] = _knob(
        (1, 2, 3, 4, 6, 8, 12, 16, 24, 32), checks.list_of(_POSITIVE)
    )  # widths m = ratio * n
    seeds: int | tuple[int, ...] = _knob(10, checks.seeds)
    fraction: float = _knob(0.5, checks.number(0.0, 1.0, lo_open=True, hi_open=False))
    probability: float = _knob(0.9, checks.number(0.0, 1.0, lo_open=True, hi_open=False))


@dataclass(frozen=True)
class E3Params(SampledParams):
    """E3 well-posedness vs sigma_w: ||W/sqrt(m)||_2, iterations, convergence."""

    name: ClassVar[str] = "e3"

    data: str = _data_sets("gaussian")
    n: int = _count(50)
    width: int = _count(500)
    sigma_ws: tuple[float, ...] = _knob(
        tuple(round(0.1 * k, 1) for k in range(1, 16)), checks.list_of(_POSITIVE)
    )
    tol: float | None = _knob(1e-8, checks.optional_number(_POSITIVE))
    w_norm: str = _knob("exact", checks.choice(W_NORMS, many=False))


@dataclass(frozen=True)
class E10Params(RandomDEQParams):
    """E10 kernel table: extreme eigenvalues of K and Theta per data set and sigma_w."""

    name: ClassVar[str] = "e10"

    data: str | tuple[str, ...] = _data_sets()
    n: int = _count(100)
    sigma_a: float = _knob(DEQConfig.sigma_a, _POSITIVE)  # a ~ N(0, sigma_a^2), enters Theta
    sigma_ws: tuple[float, ...] = _knob(
        tuple(round(0.1 * k, 1) for k in range(1, 15)), checks.list_of(_SIGMA_W)
    )


def _names(data: str | Iterable[str]) -> list[str]:
    return [data] if isinstance(data, str) else list(data)


def _inputs(name: str, n: int, d: int | None, seed: int, root: str) -> tuple[np.ndarray, int]:
    """Unit-norm inputs X (n, d) of data set ``name`` (raw files of real data under ``root``).

    ``d`` is the Gaussian input dimension (None: d = n); identity rows always use d = n (more
    columns would not change any Gram); other data sets have their own d.
    """
    dims = {"identity": n, "gaussian": d or n}
    spec = DataSpec(name, n=n, d=dims.get(name), seed=seed, root=root)
    ds = load_dataset(spec)
    return ds.X, ds.d


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


def run_e1(p: E1Params) -> list[dict[str, Any]]:
    """E1 rows: one per (data, network, width, seed[, depth, reference kernel])."""
    rows: list[dict[str, Any]] = []
    for name in _names(p.data):
        X, d = _inputs(name, p.n, p.d, p.data_seed, p.data_root)
        kw = {"sigma_w": p.sigma_w, "sigma_u": p.sigma_u}
        K = deq_conjugate_kernel(X, **kw)
        lam_K = lambda_min(K)
        base = {"experiment": "e1", "data": name, "n": p.n, "d": d, **kw}
        for m in p.widths:
            for s in random_deq_grams(
                X,
                width=m,
                seeds=p.seed_list,
                sigma_w=p.sigma_w,
                solver=p.solver(),
                **p.sampling(),
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
        Kl = untied_conjugate_kernels(X, p.max_depth, **kw)  # (L, n, n)
        lam_l = [lambda_min(k) for k in Kl]
        for m in p.untied_widths:
            for s in untied_grams(
                X,
                width=m,
                depth=p.max_depth,
                seeds=p.seed_list,
                sigma_w=p.sigma_w,
                **p.sampling(),
            ):
                for layer in range(p.max_depth):
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


def summarize_e1(
    rows: Iterable[Mapping[str, Any]], params: E1Params | None = None
) -> list[dict[str, Any]]:
    """Log-log slope of the seed-mean error vs width for the tied DEQ (theory: -1/2).

    (``params`` is not needed: the rows carry every width.)
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


def run_e2(p: E2Params) -> list[dict[str, Any]]:
    """E2 rows: one per (data, n, m/n, seed) with lambda_0 / lambda_* and the MP-edge guess."""
    rows: list[dict[str, Any]] = []
    for name in _names(p.data):
        for n in p.ns:
            X, d = _inputs(name, n, p.d, p.data_seed, p.data_root)
            lam_star = lambda_min(deq_conjugate_kernel(X, sigma_w=p.sigma_w, sigma_u=p.sigma_u))
            for ratio in p.ratios:
                m = max(1, round(ratio * n))
                mp = max(0.0, 1 - math.sqrt(n / m)) ** 2
                for s in random_deq_grams(
                    X,
                    width=m,
                    seeds=p.seed_list,
                    sigma_w=p.sigma_w,
                    solver=p.solver(),
                    **p.sampling(),
                ):
                    lam0 = lambda_min(s.gram) if s.converged else math.nan
                    rows.append({
                        "experiment": "e2", "data": name, "n": n, "d": d, "ratio": ratio,
                        "width": m, "seed": s.seed, "sigma_w": p.sigma_w,
                        "converged": s.converged, "iterations": s.iterations,
                        "lambda_0": lam0, "lambda_star": lam_star,
                        "lambda_ratio": lam0 / lam_star, "mp_prediction": mp,
                        "holds": bool(lam0 >= p.fraction * lam_star),
                        "fraction": p.fraction,
                    })  # fmt: skip
    return rows


def summarize_e2(
    rows: Iterable[Mapping[str, Any]], params: E2Params | None = None
) -> list[dict[str, Any]]:
    """Per (data, n, m/n): probability that lambda_0 >= fraction * lambda_*, ratio quantiles,
    and the threshold fit of its (data, n) at ``params.probability`` (fit_e2_threshold).

    Unconverged solves count as failures (they are not evidence that the condition holds).
    """
    cells = _e2_cells(rows)
    probability = (params or E2Params()).probability
    fits = {(f["data"], f["n"]): f for f in fit_e2_threshold(cells, probability)}
    keep = ("ratio_star", "m_star", "exponent", "fit_points")
    return [
        {
            **c,
            "threshold_probability": probability,
            **{k: fits[(c["data"], c["n"])][k] for k in keep},
        }
        for c in cells
    ]


def _e2_cells(rows: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
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
    cells: Iterable[Mapping[str, Any]], probability: float
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


def run_e3(p: E3Params) -> list[dict[str, Any]]:
    """E3 rows: one per (sigma_w, seed): ||W/sqrt(m)||_2, forward iterations, convergence."""
    X, d = _inputs(p.data, p.n, p.d, p.data_seed, p.data_root)
    solver = p.solver()
    rows: list[dict[str, Any]] = []
    for sw in p.sigma_ws:
        diag = 1 / (2 - sw**2) if sw**2 < 2 else math.inf  # K_ii for unit inputs
        for s in random_deq_grams(
            X,
            width=p.width,
            seeds=p.seed_list,
            sigma_w=sw,
            solver=solver,
            w_norm=p.w_norm,
            **p.sampling(),
        ):
            rows.append({
                "experiment": "e3", "data": p.data, "n": p.n, "d": d, "width": p.width,
                "sigma_w": sw, "regime": regime(sw), "seed": s.seed, "w_norm": s.w_norm,
                "contraction_bound": 2 * sw, "converged": s.converged,
                "iterations": s.iterations, "residual": s.residual,
                "feature_norm": s.feature_norm, "kernel_feature_norm": math.sqrt(diag),
            })  # fmt: skip
    return rows


def summarize_e3(
    rows: Iterable[Mapping[str, Any]], params: E3Params | None = None
) -> list[dict[str, Any]]:
    """Per sigma_w: converged fraction (1 - divergence rate), median iterations, mean norm.

    (``params`` is not needed: the rows carry every sigma_w.)
    """
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


def run_e10(p: E10Params) -> list[dict[str, Any]]:
    """E10 rows: one per (data, sigma_w): extreme eigenvalues of K and Theta (no biases)."""
    rows: list[dict[str, Any]] = []
    for name in _names(p.data):
        X, d = _inputs(name, p.n, p.d, p.data_seed, p.data_root)
        for sw in p.sigma_ws:
            K = deq_conjugate_kernel(X, sigma_w=sw, sigma_u=p.sigma_u)
            T = deq_tangent_kernel(X, sigma_w=sw, sigma_u=p.sigma_u, sigma_a=p.sigma_a, K=K)
            eK, eT = torch.linalg.eigvalsh(K), torch.linalg.eigvalsh(T)
            rows.append(
                {
                    "experiment": "e10",
                    "data": name,
                    "n": p.n,
                    "d": d,
                    "sigma_w": sw,
                    "sigma_u": p.sigma_u,
                    "sigma_a": p.sigma_a,
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


class Experiment(NamedTuple):
    """One random-DEQ experiment: its parameters, its job, its summary table (or None)."""

    params: type[RandomDEQParams]
    run: Callable[[Any], list[dict[str, Any]]]
    summarize: Callable[[list[dict[str, Any]], Any], list[dict[str, Any]]] | None


# E10 has no summary: its rows are the table.
EXPERIMENTS: dict[str, Experiment] = {
    "e1": Experiment(E1Params, run_e1, summarize_e1),
    "e2": Experiment(E2Params, run_e2, summarize_e2),
    "e3": Experiment(E3Params, run_e3, summarize_e3),
    "e10": Experiment(E10Params, run_e10, None),
}
