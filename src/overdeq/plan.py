"""A tier's cost before anything runs: FLOP counts per job over throughputs measured here.

The workflow expands a tier's jobs (training grids into runs, the random-DEQ experiments,
the gradient-error ablation) and hands them over as JSON (rule ``plan``,
``workflow/rules/plan.smk``); this module never reads the config itself. The estimate is

    time(job) = sum over kinds k of  work_k(job) / rate_k

with work counted by kind: GEMM FLOPs per precision (``gemm:float64``, ``gemm:float32``,
``gemm:tf32``, ``gemm:bf16``), nominal FLOPs of dense eigensolvers on the device (``eigh``,
symmetric, values only: 4/3 k^3; with vectors 9 k^3) and on the host (``eigh_host``;
``eig_host``: non-symmetric values, 10 k^3, which torch computes on the host even for a CUDA
tensor; ``eig_host_large`` the same from k = ``EIG_LARGE`` on, whose FLOP rate is several times
higher), and normal draws on the host (``rng_host``: every m x m weight is drawn in float64 by
a CPU generator). The rates come from a short calibration on the current device
(:func:`measure_throughput`); the solver iterations per step from a few steps of a small run
of each distinct setting (:func:`measure_train_iterations`), at ``CALIBRATION_SIZE``.

A training run of width m on n samples of dimension d, with I_f forward and I_b adjoint
iterations per step, costs per GD step (I_f + I_b + 1) * 2 n m^2 FLOPs (one GEMM with the
(m, m) weight per iteration, one for dL/dW = V^T Z), plus one for the extra layer application
of the released gradient, plus 4 n d m for the input injection and its gradient. Each logged
step adds lambda_min(Z Z^T) (2 n^2 m float64 + eigh(n)) and the power iteration
(4 m^2 per product); each audit ||W||_2 (2 m^3 float64 + eigh(m)); the released readouts
eig(Z Z^T) and, for m <= ``LEGACY_DENSE_MAX``, eig((W/sqrt m)^T (W/sqrt m)) on the host. Once
per run: the weights (twice: the model and its float64 twin) and the step calibration in
float64 (``train.CALIBRATION_SOLVER``: two forward solves and one adjoint, the tangent Gram,
eigh(n) with vectors).

Precision ``mixed`` is counted from a second small run of each paper-mode setting in mixed
precision: its low-precision sweeps per step are bf16 GEMMs, its float32 evaluations and
dL/dW float32 ones (defect correction takes more map applications than float32 Picard, most
of them cheap). Without that run (``Iterations.forward_low`` None) every solver iteration but
the last ``MIXED_FP32_ITERS`` of each solve is counted as bf16. Mixed applies to the exact
implicit gradient only: the trainer runs the released gradient (Anderson to a global 1e-2,
no fp32 residual test to anchor a correction) in float32 under ``mixed``, and so does this
count.

The H100 figures are estimates, never measurements: published dense peak throughputs
(``H100_PEAK``) times an assumed GEMM efficiency (``H100_GEMM_EFFICIENCY``), an assumed rate
for the dense symmetric eigensolver, and assumed host rates (``H100_HOST_RATES``); they do not
depend on the machine the plan runs on, only on the iterations its small runs measure.
"""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from functools import partial
from typing import Any

import torch

from .ablations import REFERENCE_SOLVER, TOLS, gradient_method_output
from .config import ConfigError, RunConfig, make_run_config
from .data import DataSpec, load_dataset
from .implicit import SolveStats, adjoint, equilibrium
from .model import DEQ, DEQConfig
from .provenance import device_name
from .random_deq import default_solver, random_deq_grams
from .seeding import model_seeds
from .train import CALIBRATION_SOLVER, train

__all__ = [
    "GEMM_KINDS",
    "H100_PEAK",
    "Throughput",
    "Work",
    "train_work",
    "random_deq_work",
    "gradient_error_work",
    "measure_throughput",
    "h100_throughput",
    "estimate",
    "format_plan",
]

GEMM_KINDS = ("gemm:float64", "gemm:float32", "gemm:tf32", "gemm:bf16")
KINDS = (*GEMM_KINDS, "eigh", "eigh_host", "eig_host", "eig_host_large", "rng_host")
# LAPACK's non-symmetric eig runs far faster per FLOP on large matrices (measured on the 2-core
# development CPU, idle: 3.3 GFLOP/s nominal at k = 512, 25 at k = 1000, 44 at k = 2000), so a
# rate timed at one size cannot serve both the quick tier's readouts and the paper tier's:
# eigs from this size on are their own kind, timed at this size.
EIG_LARGE = 1024
PRECISION_GEMM = {  # training precision -> the kind of its bulk GEMMs
    "float64": "gemm:float64",
    "float32": "gemm:float32",
    "tf32": "gemm:tf32",
    "mixed": "gemm:bf16",
}
PRECISIONS = tuple(PRECISION_GEMM)
MIXED_FP32_ITERS = 1  # mixed precision: the last iteration of each solve runs in float32
LEGACY_DENSE_MAX = 4096  # monitor.legacy_readouts' default max_dense (the (m, m) eig above it)

# Published dense peak throughput of an H100 PCIe (NVIDIA datasheet), FLOP/s; float64 is
# its tensor-core figure. Estimates only: nothing here was measured on an H100.
H100_PEAK = {
    "gemm:float64": 51e12,
    "gemm:float32": 51e12,
    "gemm:tf32": 378e12,
    "gemm:bf16": 756e12,
}
H100_GEMM_EFFICIENCY = 0.7  # assumed fraction of peak a large (1000 x m) @ (m x m) GEMM reaches
H100_EIGH_RATE = 1e12  # assumed nominal FLOP/s of cuSOLVER's dense symmetric eigensolver
# Host-side work of an H100 node (the weights' draws, torch's non-symmetric eig, E10's kernels):
# assumed at the rates the 2-core development CPU reaches when idle (LAPACK eig at k = 512 and
# k = 1000, torch's float64 normal draws; benchmarks/RESULTS.md), not at whatever load the
# machine that runs the plan has, so that the estimate does not move with it.
H100_HOST_RATES = {"eig_host": 5e9, "eig_host_large": 2.5e10, "eigh_host": 1e10, "rng_host": 7e7}

# The small runs that measure iterations: (n, m, steps) on a CPU and on a GPU.
CALIBRATION_SIZE = {"cpu": (40, 400, 12), "cuda": (200, 2000, 20)}
H100_COLUMNS = ("float32", "tf32", "mixed")  # the precisions the H100 estimate is given at
TF32_FLOOR = 1e-4  # about the smallest relative fixed-point residual a tf32 solve reaches
TARGET_H100_HOURS = 2.0  # issue 11: the paper tier should fit in 2 H100-hours (mixed)


# --- work and rates ---------------------------------------------------------------------


@dataclass
class Work:
    """Amounts of work by kind (FLOPs, nominal eigensolver FLOPs, or normal draws)."""

    amounts: dict[str, float] = field(default_factory=dict)

    def add(self, kind: str, amount: float) -> None:
        if kind not in KINDS:
            raise ValueError(f"unknown kind of work {kind!r}; valid: {list(KINDS)}")
        self.amounts[kind] = self.amounts.get(kind, 0.0) + float(amount)

    def __iadd__(self, other: Work) -> Work:
        for kind, amount in other.amounts.items():
            self.add(kind, amount)
        return self

    def scaled(self, factor: float) -> Work:
        return Work({k: v * factor for k, v in self.amounts.items()})

    @property
    def flops(self) -> float:
        """Every floating-point operation (GEMMs and eigensolvers), draws excluded."""
        return sum(v for k, v in self.amounts.items() if k != "rng_host")


@dataclass(frozen=True)
class Throughput:
    """Rates per kind of work (FLOP/s, or draws/s for rng_host) and where they came from."""

    rates: dict[str, float]
    device: str
    source: str  # "measured" or "estimate: ..."
    notes: tuple[str, ...] = ()

    def seconds(self, work: Work) -> float:
        """sum_k work_k / rate_k."""
        missing = sorted(k for k in work.amounts if k not in self.rates)
        if missing:
            raise ValueError(f"no rate for {missing} in the throughput of {self.device}")
        return sum(v / self.rates[k] for k, v in work.amounts.items())

    def seconds_by_kind(self, work: Work) -> dict[str, float]:
        return {k: v / self.rates[k] for k, v in work.amounts.items()}


def sym_eig_flops(k: int, vectors: bool = False) -> float:
    """Nominal FLOPs of a dense symmetric eigensolver: 4/3 k^3 (values), 9 k^3 (vectors)."""
    return (9.0 if vectors else 4.0 / 3.0) * k**3


def gen_eig_flops(k: int) -> float:
    """Nominal FLOPs of the eigenvalues of a dense non-symmetric matrix: 10 k^3."""
    return 10.0 * k**3


def host_eig_kind(k: int) -> str:
    """The kind of work of a host eig of size k (``eig_host`` or ``eig_host_large``)."""
    return "eig_host_large" if k >= EIG_LARGE else "eig_host"


def deq_gemm(n: int, m: int) -> float:
    """One application of the (m, m) weight to n states: 2 n m^2 FLOPs."""
    return 2.0 * n * m * m


# --- the FLOP model of each job ---------------------------------------------------------


@dataclass(frozen=True)
class Iterations:
    """Solver iterations of a training setting: per GD step, and of the step calibration."""

    forward: float
    backward: float
    calib_forward: float
    calib_backward: float
    measured_at: str = ""  # e.g. "n=40, m=400, 12 steps, identity"
    ended: str = ""  # status of the small run ("done", "diverged: ...")
    # the same setting's small run in mixed precision (paper mode only): all map
    # applications per step and the low-precision sweeps among them (None: not measured,
    # then counted as the float32 ones with MIXED_FP32_ITERS of each solve in float32)
    forward_mixed: float | None = None
    backward_mixed: float | None = None
    forward_low: float | None = None
    backward_low: float | None = None

    @property
    def mixed_counts(self) -> list[float] | None:
        """[forward, backward, forward low, backward low] of the mixed small run, or None."""
        if self.forward_low is None or self.backward_low is None:
            return None
        return [self.forward_mixed, self.backward_mixed, self.forward_low, self.backward_low]


def log_count(steps: int, log_every: int) -> int:
    """Logged steps t in 0..steps: every log_every-th and the last."""
    return steps // log_every + 1 + (1 if steps % log_every else 0)


def audit_count(n_logs: int, audit_every: int) -> int:
    """Logs with an exact ||W||_2: the first, the last and every audit_every-th."""
    return sum(
        1
        for k in range(n_logs)
        if k == 0 or k == n_logs - 1 or (audit_every and k % audit_every == 0)
    )


def step_gemms(it: Iterations, released_gradient: bool) -> float:
    """GEMMs with the (m, m) weight per GD step: the solves, dL/dW, the extra application."""
    return it.forward + it.backward + 1 + (1 if released_gradient else 0)


def train_work(run: RunConfig, n: int, d: int, it: Iterations, precision: str) -> dict[str, Work]:
    """The work of one training run, by part (setup, calibration, steps, logs, audits)."""
    if precision not in PRECISION_GEMM:
        raise ValueError(f"precision {precision!r} is not one of {list(PRECISIONS)}")
    m, cfg = run.model.width, run.train
    steps = cfg.steps
    released = cfg.gradient == "released"
    if precision == "mixed" and cfg.gradient != "implicit":
        precision = "float32"  # as the trainer runs it: mixed only changes implicit solves
    bulk = PRECISION_GEMM[precision]
    parts: dict[str, Work] = {}

    w = Work()  # the weights, drawn on the host in float64 for the model and its twin
    w.add("rng_host", 2 * (m * m + m * d + m + (2 * m + 1 if run.model.biases else 0)))
    parts["setup"] = w

    w = Work()  # float64 step calibration: two forward solves, one adjoint, Theta_0, eigh
    solves = 2 * it.calib_forward + it.calib_backward if it.calib_backward else it.calib_forward
    w.add("gemm:float64", solves * deq_gemm(n, m))  # (no adjoint: no equilibrium at init)
    w.add("gemm:float64", 3 * 2.0 * n * n * m + 2.0 * n * n * d)
    w.add("eigh", sym_eig_flops(n, vectors=True))
    parts["calibration"] = w

    w = Work()  # GD steps: the last logged step is only a forward pass
    per_step = step_gemms(it, released)
    if precision == "mixed":
        if it.mixed_counts is not None:  # as measured in mixed precision
            fwd, bwd, fwd_low, bwd_low = it.mixed_counts
            low, fp32 = fwd_low + bwd_low, fwd + bwd + 1 - fwd_low - bwd_low
        else:
            fp32 = min(per_step, 2 * MIXED_FP32_ITERS + 1)
            low = per_step - fp32
        w.add("gemm:bf16", steps * low * deq_gemm(n, m))
        w.add("gemm:float32", steps * fp32 * deq_gemm(n, m))
        w.add("gemm:bf16", steps * 4.0 * n * d * m)
    else:
        w.add(bulk, steps * per_step * deq_gemm(n, m) + steps * 4.0 * n * d * m)
    w.add(bulk if precision != "mixed" else "gemm:float32", it.forward * deq_gemm(n, m))
    parts["steps"] = w

    n_logs = log_count(steps, cfg.log_every)
    w = Work()  # per logged step: lambda_min(Z Z^T) and the power iteration
    w.add("gemm:float64", n_logs * 2.0 * n * n * m)
    w.add("eigh", n_logs * sym_eig_flops(n))
    w.add(
        "gemm:float32" if precision == "mixed" else bulk,
        (n_logs * cfg.power_iters + 100) * 4.0 * m * m,
    )
    if cfg.legacy_readouts:  # the released readouts: non-symmetric eigs, on the host
        reads = audit_count(n_logs, cfg.readout_every)  # first, last and every k-th log
        w.add("gemm:float64", reads * 2.0 * n * n * m)
        w.add(host_eig_kind(n), reads * gen_eig_flops(n))
        if m <= LEGACY_DENSE_MAX:
            w.add("gemm:float64", reads * 2.0 * m**3)
            w.add(host_eig_kind(m), reads * gen_eig_flops(m))
    parts["logging"] = w

    w = Work()  # exact ||W||_2: W^T W in float64 and its symmetric eigenvalues
    audits = audit_count(n_logs, cfg.audit_every)
    w.add("gemm:float64", audits * 2.0 * m**3)
    w.add("eigh", audits * sym_eig_flops(m))
    parts["audits"] = w
    return parts


def sample_work(n: int, d: int, m: int, iterations: float, gemm: str, w_norm: str) -> Work:
    """One random DEQ: draw W, U on the host, solve, the Gram, lambda_min, ||W||_2."""
    w = Work()
    w.add("rng_host", m * m + m * d + m)
    w.add(gemm, iterations * deq_gemm(n, m) + 2.0 * n * d * m)
    w.add("gemm:float64", 2.0 * n * n * m)
    w.add("eigh", sym_eig_flops(n))
    if w_norm == "exact":
        w.add("gemm:float64", 2.0 * m**3)
        w.add("eigh", sym_eig_flops(m))
    elif w_norm == "power":
        w.add(gemm, 200 * 4.0 * m * m)
    return w


def _as_list(value: Any) -> list:
    return [value] if isinstance(value, str | int | float) else list(value)


def _seed_count(seeds: Any) -> int:
    return int(seeds) if isinstance(seeds, int) else len(seeds)


def random_deq_work(
    experiment: str, p: Mapping[str, Any], iterations: Callable[[float], float]
) -> Work:
    """The work of one random-DEQ experiment; ``iterations(sigma_w)`` per forward solve."""
    gemm = "gemm:float64" if p.get("dtype", "float64") == "float64" else "gemm:float32"
    w = Work()
    data = _as_list(p["data"])
    if experiment == "e1":
        n = p["n"]
        d = p.get("d") or n
        seeds = _seed_count(p["seeds"])
        for _ in data:
            for m in p["widths"]:
                w += sample_work(n, d, m, iterations(p["sigma_w"]), gemm, "none").scaled(seeds)
            depth = p["max_depth"]
            for m in p["untied_widths"]:
                u = Work()
                u.add("rng_host", (depth - 1) * m * m + m * d)
                u.add(gemm, (depth - 1) * deq_gemm(n, m) + 2.0 * n * d * m)
                u.add("gemm:float64", depth * 2.0 * n * n * m)
                u.add("eigh", depth * sym_eig_flops(n))
                w += u.scaled(seeds)
    elif experiment == "e2":
        seeds = _seed_count(p["seeds"])
        for _ in data:
            for n in p["ns"]:
                d = p.get("d") or n
                for ratio in p["ratios"]:
                    m = int(ratio * n)
                    w += sample_work(n, d, m, iterations(p["sigma_w"]), gemm, "none").scaled(seeds)
    elif experiment == "e3":
        n, m = p["n"], p["width"]
        d = p.get("d") or n
        seeds = _seed_count(p["seeds"])
        for sw in p["sigma_ws"]:
            w += sample_work(n, d, m, iterations(sw), gemm, p.get("w_norm", "exact")).scaled(seeds)
    elif experiment == "e10":  # kernels only, on the CPU: two symmetric eigensolves each
        # (the kernels' own O(n^2) fixed point, elementwise, is left out: far smaller)
        n = p["n"]
        w.add("eigh_host", len(data) * len(p["sigma_ws"]) * 2 * sym_eig_flops(n))
    else:
        raise ValueError(f"unknown random-DEQ experiment {experiment!r}; valid: e1, e2, e3, e10")
    return w


def gradient_error_work(
    n: int, d: int, m: int, reference: tuple[float, float], per_tol: Iterable[float]
) -> Work:
    """E7's gradient error at init: the reference solves, then both methods at every tol.

    ``reference`` is (forward, adjoint) iterations at ablations.REFERENCE_SOLVER; ``per_tol``
    the forward + adjoint iterations of each (tol, method) pair.
    """
    per_tol = list(per_tol)
    w = Work()
    w.add("rng_host", m * m + m * d + 3 * m + 1)
    # every solve pair also applies the layer once more and forms dL/dW
    gemms = sum(reference) + sum(per_tol) + 2 * (1 + len(per_tol))
    w.add("gemm:float64", gemms * deq_gemm(n, m))
    return w


# --- measuring ----------------------------------------------------------------------------


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _best_time(fn: Callable[[], object], device: torch.device, repeats: int) -> float:
    """The fastest of ``repeats`` calls after a warm-up: the least disturbed by other load."""
    fn()  # warm-up (allocations, kernel selection)
    times = []
    for _ in range(repeats):
        _sync(device)
        t0 = time.perf_counter()
        fn()
        _sync(device)
        times.append(time.perf_counter() - t0)
    return min(times)


def _gemm_rate(device: torch.device, dtype: torch.dtype, tf32: bool, n: int, m: int) -> float:
    """FLOP/s of an (n, m) @ (m, m) product, the shape of a DEQ iteration."""
    g = torch.Generator(device=device).manual_seed(0)
    A = torch.randn(n, m, generator=g, device=device).to(dtype)
    B = torch.randn(m, m, generator=g, device=device).to(dtype)
    old = (torch.backends.cuda.matmul.allow_tf32, torch.get_float32_matmul_precision())
    torch.backends.cuda.matmul.allow_tf32 = tf32
    torch.set_float32_matmul_precision("high" if tf32 else "highest")
    try:
        t = _best_time(lambda: A @ B, device, repeats=3)
    finally:
        torch.backends.cuda.matmul.allow_tf32 = old[0]
        torch.set_float32_matmul_precision(old[1])
    return deq_gemm(n, m) / t


def _sym_matrix(k: int, device: torch.device) -> torch.Tensor:
    g = torch.Generator(device=device).manual_seed(1)
    A = torch.randn(k, k, generator=g, device=device, dtype=torch.float64)
    return A @ A.T


def measure_throughput(device: torch.device | str) -> Throughput:
    """Rates of every kind of work on ``device`` (and its host), from a few timed calls.

    Sizes are small on a CPU (about a second in all) and larger on a GPU, where small calls
    measure latency rather than throughput.
    """
    dev = torch.device(device)
    cpu = torch.device("cpu")
    gpu = dev.type == "cuda"
    n, m = (1024, 8192) if gpu else (128, 768)
    rates: dict[str, float] = {
        "gemm:float64": _gemm_rate(dev, torch.float64, False, n, m),
        "gemm:float32": _gemm_rate(dev, torch.float32, False, n, m),
        "gemm:bf16": _gemm_rate(dev, torch.bfloat16, False, n, m),
    }
    notes = []
    if gpu:
        rates["gemm:tf32"] = _gemm_rate(dev, torch.float32, True, n, m)
    else:
        rates["gemm:tf32"] = rates["gemm:float32"]
        notes.append("tf32 does not exist on a CPU: tf32 GEMMs are counted at the float32 rate")
    k = 2048 if gpu else 512
    S = _sym_matrix(k, dev)
    rates["eigh"] = sym_eig_flops(k) / _best_time(lambda: torch.linalg.eigvalsh(S), dev, 2)
    kh = 512
    Sh = _sym_matrix(kh, cpu)
    rates["eigh_host"] = sym_eig_flops(kh) / _best_time(lambda: torch.linalg.eigvalsh(Sh), cpu, 2)
    G = torch.randn(kh, kh, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    rates["eig_host"] = gen_eig_flops(kh) / _best_time(lambda: torch.linalg.eigvals(G), cpu, 3)
    GL = torch.randn(EIG_LARGE, EIG_LARGE, generator=torch.Generator().manual_seed(4),
                     dtype=torch.float64)  # fmt: skip
    rates["eig_host_large"] = gen_eig_flops(EIG_LARGE) / _best_time(
        lambda: torch.linalg.eigvals(GL), cpu, 2
    )
    draws = 2_000_000
    gen = torch.Generator().manual_seed(3)
    t = _best_time(lambda: torch.randn(draws, generator=gen, dtype=torch.float64), cpu, 3)
    rates["rng_host"] = draws / t
    notes.append(
        f"GEMMs timed at ({n} x {m}) @ ({m} x {m}); eigensolvers at k = {k} (device) and "
        f"{kh} (host), extrapolated as k^3 (larger eigensolves run faster per FLOP, so their "
        f"times are upper bounds); {torch.get_num_threads()} CPU threads"
    )
    return Throughput(rates=rates, device=device_name(dev), source="measured", notes=tuple(notes))


def h100_throughput() -> Throughput:
    """An H100 estimate: published peaks x H100_GEMM_EFFICIENCY, the rest assumed."""
    rates = {k: v * H100_GEMM_EFFICIENCY for k, v in H100_PEAK.items()}
    rates["eigh"] = H100_EIGH_RATE
    rates.update(H100_HOST_RATES)
    notes = (
        f"published dense peak (H100 PCIe: fp64 tensor core 51, fp32 51, tf32 378, bf16 756 "
        f"TFLOP/s) x an assumed efficiency of {H100_GEMM_EFFICIENCY}",
        f"dense symmetric eigensolver assumed at {H100_EIGH_RATE / 1e12:g} TFLOP/s (nominal)",
        "host-side work assumed at "
        + ", ".join(f"{k} {v:.3g}/s" for k, v in H100_HOST_RATES.items())
        + " (the development CPU's rates when idle)",
    )
    return Throughput(rates=rates, device="NVIDIA H100 (estimate)", source="estimate", notes=notes)


def _small_options(
    options: Mapping[str, Any], width: int, m: int, steps: int, precision: str = "float32"
) -> dict:
    """A job's run options shrunk to a small run of width m: only the solver behaviour kept."""
    small = {k: v for k, v in options.items() if k not in ("seed", "data_seed", "device")}
    small.update(
        steps=steps,
        log_every=1,
        audit_every=0,
        checkpoint_every=steps + 1,
        legacy_readouts=False,
        precision=precision,
        patience=steps + 1,  # measure iterations even where a solve does not converge
    )
    if small.get("width_scale"):  # the width-scale bug: keep the ratio width / scale
        small["width_scale"] = max(1, round(m * small["width_scale"] / width))
    return small


def _small_data(data: str, n: int) -> DataSpec:
    """Synthetic stand-ins for the small runs (no downloads): identity, else Gaussian."""
    if data == "identity":
        return DataSpec("identity", n=n)
    return DataSpec("gaussian", n=n, d=n)


def _calibration_iterations(run: RunConfig, device: torch.device) -> tuple[float, float]:
    """Forward and adjoint iterations of the float64 step calibration (capped on failure)."""
    ds = load_dataset(run.data)
    X, _ = ds.tensors(torch.float64, device)
    model = DEQ(
        replace(run.model, d=ds.d), seeds=model_seeds(0), dtype=torch.float64, device=device
    )
    _, mask, fwd = equilibrium(model, X, CALIBRATION_SOLVER)
    if not fwd.converged:
        return float(CALIBRATION_SOLVER.max_iter), 0.0
    _, bwd = adjoint(model, mask, CALIBRATION_SOLVER)
    return float(fwd.iterations), float(bwd.iterations)


def measure_train_iterations(
    data: str, options: Mapping[str, Any], width: int, device: torch.device, size: tuple,
    precision: str = "float32",
) -> Iterations:  # fmt: skip
    """Iterations per GD step of a setting, from ``size`` = (n, m, steps) of a small run
    (in ``precision``: float32, or mixed to count its low-precision sweeps)."""
    n, m, steps = size
    small = _small_options(options, width, m, steps, precision)
    try:
        run = make_run_config(data=_small_data(data, n), width=m, **small)
    except ConfigError as exc:
        raise ConfigError(f"plan: the run options {dict(options)} are not valid: {exc}") from None
    run = replace(run, train=replace(run.train, device=str(device)))
    result = train(run, None, progress=False)
    rows = result.history[1:] or result.history  # the first step has no warm start yet
    fwd = [r["fwd_iters"] for r in rows if r.get("fwd_iters") is not None]
    bwd = [r["bwd_iters"] for r in rows if r.get("bwd_iters") is not None]
    low = [(r["fwd_low_iters"], r["bwd_low_iters"]) for r in rows if "bwd_low_iters" in r]
    cf, cb = _calibration_iterations(run, device)
    status = result.summary.get("status", "?")
    reason = result.summary.get("reason")
    return Iterations(
        forward=statistics.mean(fwd) if fwd else float(run.train.forward.max_iter),
        backward=statistics.mean(bwd) if bwd else float(run.train.backward.max_iter),
        calib_forward=cf,
        calib_backward=cb,
        measured_at=f"n={n}, m={m}, {len(rows)} steps, {run.data.name}"
        + (", mixed" if low else ""),
        ended=f"{status}: {reason}" if reason else status,
        forward_low=statistics.mean(f for f, _ in low) if low else None,
        backward_low=statistics.mean(b for _, b in low) if low else None,
    )


def measure_random_iterations(
    sigma_w: float, p: Mapping[str, Any], device: torch.device, size: tuple
) -> float:
    """Picard iterations of one small random DEQ at ``sigma_w`` with the job's solver."""
    n, m, _ = size
    n, m = min(n, 30), min(m, 200)
    dtype = torch.float64 if p.get("dtype", "float64") == "float64" else torch.float32
    solver = default_solver(dtype, tol=p.get("tol"), max_iter=p.get("max_iter", 1000))
    X = torch.nn.functional.normalize(
        torch.randn(n, n, generator=torch.Generator().manual_seed(0), dtype=torch.float64), dim=1
    )
    (s,) = random_deq_grams(
        X, width=m, seeds=[0], sigma_w=sigma_w, solver=solver, dtype=dtype, device=device
    )
    return float(s.iterations)


def measure_gradient_error_iterations(
    g: Mapping[str, Any], device: torch.device, size: tuple
) -> tuple[tuple[float, float], list[float]]:
    """Reference and per-(tol, method) iterations of E7's gradient error, at a small size."""
    n, m, _ = size
    X = torch.eye(n, dtype=torch.float64, device=device)
    cfg = DEQConfig(d=n, width=m, biases=True)
    model = DEQ(cfg, seeds=model_seeds(0), dtype=torch.float64, device=device)
    _, mask, fwd = equilibrium(model, X, REFERENCE_SOLVER)
    _, bwd = adjoint(model, mask, REFERENCE_SOLVER)
    per_tol = []
    for tol in g.get("tols", TOLS):
        for method in ("released", "exact"):
            stats = SolveStats()
            gradient_method_output(model, X, method, tol, stats).sum().backward()
            per_tol.append(stats.forward.iterations + stats.backward.iterations)
    return (float(fwd.iterations), float(bwd.iterations)), [float(i) for i in per_tol]


# --- the plan -----------------------------------------------------------------------------


@dataclass
class JobEstimate:
    """One job's work, by part, and what the estimate rests on."""

    experiment: str
    job: str
    parts: dict[str, Work]
    info: dict[str, Any]
    recount: Callable[[str], dict[str, Work]] | None = None  # training: work at a precision

    @property
    def work(self) -> Work:
        total = Work()
        for w in self.parts.values():
            total += w
        return total

    def at_precision(self, precision: str) -> JobEstimate:
        """The same job with its GEMMs counted at ``precision`` (training runs only)."""
        if self.recount is None:
            return self
        return replace(self, parts=self.recount(precision))


def _work_at(
    run: RunConfig, n: int, d: int, it: Iterations, own: str | None, precision: str
) -> dict[str, Work]:
    """:func:`train_work` at ``precision``, or at the setting's ``own`` precision if it has one."""
    return train_work(run, n, d, it, own or precision)


def _train_estimates(
    jobs: Mapping[str, Any], device: torch.device, size: tuple, precision: str
) -> tuple[list[JobEstimate], dict[str, Any]]:
    """Training runs: iterations measured once per distinct small run, then counted."""
    cache: dict[str, Iterations] = {}
    out = []
    for job in jobs.get("train", []):
        options = {k: v for k, v in job["options"].items() if k not in ("device", "precision")}
        n, width, data = int(job["n"]), int(job["width"]), job["data"]
        d = int(job.get("d") or n)
        try:
            run = make_run_config(data=DataSpec("identity", n=n), width=width, **options)
        except ConfigError as exc:
            raise ConfigError(f"plan: job {job['job']}: {exc}") from None
        small = _small_options(options, width, size[1], size[2])
        key = f"{_small_data(data, size[0]).name} {sorted(small.items())}"
        if key not in cache:
            cache[key] = measure_train_iterations(data, options, width, device, size)
            # under mixed precision only the exact implicit gradient solves by defect
            # correction (the released one runs in float32): the mixed column counts its sweeps
            if run.train.gradient == "implicit":
                mixed = measure_train_iterations(data, options, width, device, size, "mixed")
                cache[key] = replace(
                    cache[key],
                    forward_mixed=mixed.forward,
                    backward_mixed=mixed.backward,
                    forward_low=mixed.forward_low,
                    backward_low=mixed.backward_low,
                )
        it = cache[key]
        info = {
            "n": n,
            "d": d,
            "width": width,
            "steps": run.train.steps,
            "tol": min(run.train.forward.tol, run.train.backward.tol),
            "iterations_per_step": [it.forward, it.backward],
            # mixed precision's small run: forward, backward, and the low sweeps among them
            "iterations_per_step_mixed": it.mixed_counts,
            "iterations_measured_at": it.measured_at,
            "small_run_ended": it.ended,
        }
        own = job.get("setting_precision")  # the setting's own precision, if it has one
        if own is not None:
            info["precision"] = own
        recount = partial(_work_at, run, n, d, it, own)
        parts = recount(precision)
        out.append(JobEstimate(job["experiment"], job["job"], parts, info, recount))
    classes = {
        key: {
            "forward": v.forward,
            "backward": v.backward,
            "calibration_forward_backward": [v.calib_forward, v.calib_backward],
            "mixed_forward_backward_low": v.mixed_counts,
            "measured_at": v.measured_at,
            "ended": v.ended,
        }
        for key, v in cache.items()
    }
    return out, classes


def _random_estimates(
    jobs: Mapping[str, Any], device: torch.device, size: tuple
) -> list[JobEstimate]:
    """E1, E2, E3, E10: Picard iterations measured once per sigma_w of each experiment."""
    out = []
    for exp, p in jobs.get("random_deq", {}).items():
        cache: dict[float, float] = {}

        def iterations(sw: float, p: Mapping[str, Any] = p, cache: dict = cache) -> float:
            if sw not in cache:
                cache[sw] = measure_random_iterations(sw, p, device, size)
            return cache[sw]

        w = random_deq_work(exp, p, iterations)
        info = {"iterations_by_sigma_w": {str(k): v for k, v in sorted(cache.items())}}
        out.append(JobEstimate(f"E{exp[1:]}", f"random_deq/{exp}", {"all": w}, info))
    return out


def _gradient_error_estimates(
    jobs: Mapping[str, Any], device: torch.device, size: tuple
) -> list[JobEstimate]:
    g = jobs.get("gradient_error")
    if not g:
        return []
    reference, per_tol = measure_gradient_error_iterations(g, device, size)
    n, m = int(g["n"]), int(g["width"])
    w = gradient_error_work(n, int(g.get("d") or n), m, reference, per_tol)
    info = {"reference_iterations": list(reference), "iterations_per_tol": per_tol}
    return [JobEstimate("E7-gradient", "ablations/gradient_error", {"all": w}, info)]


def summarize(est: Iterable[JobEstimate], thr: Throughput) -> dict[str, Any]:
    """Jobs, FLOPs and seconds per experiment and in total, at the rates of ``thr``."""
    by_exp: dict[str, dict[str, float]] = {}
    for e in est:
        s = by_exp.setdefault(e.experiment, {"jobs": 0, "flops": 0.0, "seconds": 0.0})
        s["jobs"] += 1
        s["flops"] += e.work.flops
        s["seconds"] += thr.seconds(e.work)
    total = {key: sum(s[key] for s in by_exp.values()) for key in ("jobs", "flops", "seconds")}
    return {"experiments": by_exp, "total": total}


def parts_seconds(est: Iterable[JobEstimate], thr: Throughput) -> dict[str, float]:
    """Seconds by part of a job (steps, logging, audits, ...) summed over the jobs."""
    out: dict[str, float] = {}
    for e in est:
        for part, w in e.parts.items():
            key = part if e.recount is not None else e.experiment
            out[key] = out.get(key, 0.0) + thr.seconds(w)
    return out


def kinds_seconds(est: Iterable[JobEstimate], thr: Throughput) -> dict[str, float]:
    """Seconds by kind of work (GEMMs per precision, eigensolvers, draws) over the jobs."""
    out: dict[str, float] = {}
    for e in est:
        for kind, seconds in thr.seconds_by_kind(e.work).items():
            out[kind] = out.get(kind, 0.0) + seconds
    return out


def plan_from_estimates(
    est: list[JobEstimate], thr: Throughput, precision: str, tier: str | None
) -> dict[str, Any]:
    """The plan's JSON: this device at the tier's precision, the H100 estimate at each."""
    h100 = h100_throughput()
    variants = {p: [e.at_precision(p) for e in est] for p in H100_COLUMNS}
    variants[precision] = est
    here = summarize(est, thr)
    total_s = here["total"]["seconds"]
    ranked = sorted(est, key=lambda e: thr.seconds(e.work), reverse=True)
    mixed = variants["mixed"]
    mixed_h = summarize(mixed, h100)["total"]["seconds"] / 3600
    return {
        "tier": tier,
        "precision": precision,
        "device": thr.device,
        "throughput": {"source": thr.source, "rates": thr.rates, "notes": list(thr.notes)},
        "this_device": here,
        "this_device_parts_seconds": parts_seconds(est, thr),
        "this_device_kinds_seconds": kinds_seconds(est, thr),
        "h100_estimate": {
            "label": "ESTIMATE from published H100 throughput, not a measurement",
            "assumptions": list(h100.notes),
            "rates": h100.rates,
            "by_precision": {p: summarize(v, h100) for p, v in variants.items()},
            "mixed_parts_seconds": parts_seconds(mixed, h100),
            "mixed_kinds_seconds": kinds_seconds(mixed, h100),
        },
        "target": {
            "h100_hours": TARGET_H100_HOURS,
            "precision": "mixed",
            "h100_hours_estimate": mixed_h,
            "fits": mixed_h <= TARGET_H100_HOURS,
        },
        "dominant": [
            {
                "job": e.job,
                "experiment": e.experiment,
                "seconds": thr.seconds(e.work),
                "share": thr.seconds(e.work) / total_s if total_s else math.nan,
            }
            for e in ranked[:5]
        ],
        # tf32 cannot reach a relative residual much below 1e-4: the tf32 column counts the
        # runs that solve tighter as if they converged, which they would not
        "tf32_unreachable": [
            e.job
            for e in est
            if e.recount is not None
            and e.info.get("tol", 1.0) < TF32_FLOOR
            and e.info.get("precision") in (None, "tf32")
        ],  # fmt: skip
        "dominant_h100_mixed": [
            {"job": e.job, "experiment": e.experiment, "seconds": h100.seconds(e.work)}
            for e in sorted(mixed, key=lambda e: h100.seconds(e.work), reverse=True)[:5]
        ],
        "jobs": [
            {
                "experiment": e.experiment,
                "job": e.job,
                "flops": e.work.flops,
                "seconds": thr.seconds(e.work),
                "h100_seconds_estimate": h100.seconds(e.work),
                "work": e.work.amounts,
                "parts_seconds": {k: thr.seconds(w) for k, w in e.parts.items()},
                "h100_parts_seconds_estimate": {k: h100.seconds(w) for k, w in e.parts.items()},
                **e.info,
            }
            for e in est
        ],
    }


def estimate(
    jobs: Mapping[str, Any],
    *,
    device: torch.device | str = "cpu",
    throughput: Throughput | None = None,
    size: tuple | None = None,
) -> dict[str, Any]:
    """The plan of a tier's ``jobs`` (the JSON of rule plan): time per job, experiment, total.

    ``throughput`` replaces the measurement (tests pass a fake one); ``size`` the small runs'
    (n, m, steps) (default ``CALIBRATION_SIZE`` of the device type).
    """
    dev = torch.device(device)
    t0 = time.perf_counter()
    precision = jobs.get("precision", "float32")
    if precision not in PRECISION_GEMM:
        raise ConfigError(f"plan: compute.precision {precision!r} is not one of {list(PRECISIONS)}")
    thr = throughput or measure_throughput(dev)
    size = tuple(size or CALIBRATION_SIZE["cuda" if dev.type == "cuda" else "cpu"])
    train_est, classes = _train_estimates(jobs, dev, size, precision)
    est = [
        *train_est,
        *_random_estimates(jobs, dev, size),
        *_gradient_error_estimates(jobs, dev, size),
    ]
    plan = plan_from_estimates(est, thr, precision, jobs.get("tier"))
    plan["calibration"] = {
        "seconds": time.perf_counter() - t0,
        "small_runs": {"n": size[0], "m": size[1], "steps": size[2]},
        "iteration_classes": classes,
    }
    return plan


# --- printing -----------------------------------------------------------------------------


def _hms(seconds: float) -> str:
    if not math.isfinite(seconds):
        return "n/a"
    if seconds < 60:
        return f"{seconds:.1f} s"
    if seconds < 3600:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.2f} h"


def _flops(x: float) -> str:
    for unit, scale in (("EFLOP", 1e18), ("PFLOP", 1e15), ("TFLOP", 1e12)):
        if x >= scale:
            return f"{x / scale:.3g} {unit}"
    return f"{x / 1e9:.3g} GFLOP"


def format_plan(plan: Mapping[str, Any]) -> str:
    """The plan as a table: per experiment, this device and the H100 estimate; dominant jobs."""
    h = plan["h100_estimate"]["by_precision"]
    here = plan["this_device"]
    lines = [
        f"plan of tier {plan.get('tier')} (precision {plan['precision']}): "
        f"{here['total']['jobs']} jobs",
        f"this device: {plan['device']} (rates measured"
        + (f" in {plan['calibration']['seconds']:.1f} s" if "calibration" in plan else "")
        + ")",
        "H100 columns: ESTIMATE from published throughput, not a measurement "
        "(a setting with its own precision keeps it in every column)",
        "",
        f"{'experiment':<12} {'jobs':>4} {'work':>11} {'this device':>12} "
        f"{'H100 fp32':>10} {'H100 tf32':>10} {'H100 mixed':>10}",
    ]
    rows = [*here["experiments"].items(), ("total", here["total"])]
    for name, s in rows:
        hs = [h[p]["total"] if name == "total" else h[p]["experiments"][name] for p in H100_COLUMNS]
        lines.append(
            f"{name:<12} {s['jobs']:>4} {_flops(s['flops']):>11} {_hms(s['seconds']):>12} "
            + " ".join(f"{_hms(x['seconds']):>10}" for x in hs)
        )
    t = plan["target"]
    verdict = "fits" if t["fits"] else "does NOT fit"
    if plan.get("tf32_unreachable"):
        lines += [
            "",
            f"tf32 column: {len(plan['tf32_unreachable'])} runs solve to a tolerance below "
            f"{TF32_FLOOR:g}, under the residual tf32 reaches: counted as if they converged, "
            "they would not (mixed keeps float32 answers)",
        ]
    lines += [
        "",
        f"goal (issue 11, for the paper tier): <= {t['h100_hours']:g} H100-hours with mixed "
        f"precision; estimate "
        f"{t['h100_hours_estimate']:.2f} h: {verdict}",
        "dominant jobs on this device: "
        + ", ".join(f"{d['job']} ({100 * d['share']:.0f}%)" for d in plan["dominant"][:3]),
        "dominant jobs on an H100 (mixed, estimate): "
        + ", ".join(f"{d['job']} ({_hms(d['seconds'])})" for d in plan["dominant_h100_mixed"][:3]),
        "H100 (mixed, estimate) by kind of work: "
        + ", ".join(
            f"{k} {_hms(v)}"
            for k, v in sorted(
                plan["h100_estimate"]["mixed_kinds_seconds"].items(), key=lambda kv: -kv[1]
            )
        ),
        "H100 (mixed, estimate) by part: "
        + ", ".join(
            f"{k} {_hms(v)}"
            for k, v in sorted(
                plan["h100_estimate"]["mixed_parts_seconds"].items(), key=lambda kv: -kv[1]
            )
        ),
    ]
    return "\n".join(lines) + "\n"
