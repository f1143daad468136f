"""Time the kernel computations of the random-DEQ analysis (E1, E2, E3, E10).

    python benchmarks/bench_kernels.py                          # n=1000, m=8000, 2 threads
    python benchmarks/bench_kernels.py --dtypes float32 --device cuda

Rows (median over ``--repeats`` runs where cheap, a single run for the finite-width Gram):
- DEQ kernel K: fixed point of K = kappa1(sigma_w^2 K + XX^T), float64 (goal < 1 s at n=1000);
- tangent kernel Theta given K; untied kernels at depths 1..50; lambda_min by eigvalsh;
- finite-width Gram Z* Z*^T of one random DEQ (draw W, U in float64 on the CPU, Picard
  tol 1e-10 in float64 / 1e-5 in float32), goal < 60 s at n=1000, m=8000 on 2 CPU threads.
"""

from __future__ import annotations

import argparse
import statistics
from collections.abc import Callable

import torch
from _timing import timings  # benchmarks/_timing.py (this folder is on sys.path)

from overdeq.data import DataSpec, load_dataset
from overdeq.kernels import (
    deq_conjugate_kernel,
    deq_tangent_kernel,
    lambda_min,
    untied_conjugate_kernels,
)
from overdeq.random_deq import random_deq_grams

_DTYPES = {"float32": torch.float32, "float64": torch.float64}


def _median_time(fn: Callable[[], object], repeats: int, device: str = "cpu") -> float:
    return statistics.median(timings(fn, repeats, device))


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=1000)
    ap.add_argument("--m", type=int, default=8000)
    ap.add_argument("--d", type=int, default=64, help="Gaussian input dimension")
    ap.add_argument("--data", default="gaussian")
    ap.add_argument("--sigma-w", type=float, default=0.4)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--depth", type=int, default=50)
    ap.add_argument("--dtypes", nargs="+", default=["float32", "float64"], choices=list(_DTYPES))
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)

    ds = load_dataset(DataSpec(args.data, n=args.n, d=args.d if args.data == "gaussian" else None))
    X = torch.as_tensor(ds.X, dtype=torch.float64)
    sw = args.sigma_w
    K = deq_conjugate_kernel(X, sigma_w=sw)
    rows: list[tuple[str, float, str, str]] = []

    t = _median_time(lambda: deq_conjugate_kernel(X, sigma_w=sw), args.repeats)
    rows.append((f"DEQ kernel K, n={args.n}, float64", t, "< 1 s", "ok" if t < 1 else "SLOW"))
    t = _median_time(lambda: deq_tangent_kernel(X, sigma_w=sw, K=K), args.repeats)
    rows.append((f"tangent kernel Theta given K, n={args.n}", t, "", ""))
    t = _median_time(lambda: untied_conjugate_kernels(X, args.depth, sigma_w=sw), args.repeats)
    rows.append((f"untied kernels, depths 1..{args.depth}", t, "", ""))
    t = _median_time(lambda: lambda_min(K), args.repeats)
    rows.append((f"lambda_min(K), eigvalsh n={args.n}", t, "", ""))

    for name in args.dtypes:
        dtype = _DTYPES[name]
        samples = []

        def sample(dtype: torch.dtype = dtype, samples: list = samples) -> None:
            samples.extend(
                random_deq_grams(
                    X, width=args.m, seeds=[0], sigma_w=sw, dtype=dtype, device=args.device
                )
            )

        (t,) = timings(sample, 1, args.device)
        (s,) = samples
        err = float((s.gram - K).norm() / K.norm()) if s.converged else float("nan")
        label = (
            f"finite-width Gram, n={args.n}, m={args.m}, {name} "
            f"({s.iterations} it, rel. err vs K {err:.3f})"
        )
        rows.append((label, t, "< 60 s", "ok" if t < 60 and s.converged else "FAIL"))

    where = args.device if args.device != "cpu" else f"cpu, {torch.get_num_threads()} threads"
    print(
        f"bench_kernels: {where}, torch {torch.__version__}, data {args.data} d={ds.d}, "
        f"sigma_w={sw}"
    )
    width = max(len(r[0]) for r in rows)
    print(f"{'what':<{width}}  {'seconds':>9}  {'goal':>7}  status")
    for what, secs, goal, status in rows:
        print(f"{what:<{width}}  {secs:9.3f}  {goal:>7}  {status}")


if __name__ == "__main__":
    main()
