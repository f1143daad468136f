"""Time one full-batch GD epoch: paper mode against the released algorithm, same process.

    python benchmarks/bench_epoch.py --n 200 --m 2000                 # 2-core CPU goal
    python benchmarks/bench_epoch.py --n 1000 --m 19000 --device cuda --precision float32
    python benchmarks/bench_epoch.py --n 1000 --m 4000 --paper-lr calibrated --mixed --runs 300

Three timings per configuration, each the median over ``--epochs`` epochs after warm-up
(the variants take turns epoch by epoch, so a drifting load on a shared machine hits all
alike):
- paper: exact implicit gradient, warm-started Picard (tol 1e-6), and the per-epoch
  monitoring the trainer does (float64 lambda_min of Z Z^T, power-iteration ||W||_2, solver
  statistics); with the calibrated step (its default: large steps, so warm starts help less)
  or with the released step (the same trajectory speed as the released runs);
- released (no logging): biases, Anderson (history 5, ridge 1e-4, global tol 1e-2,
  25 iterations, cold start), one extra layer application, hook-based backward;
- released (with logging): the same plus its per-epoch logging -- non-symmetric eig of the
  (n, n) Gram and a dense eig of the (m, m) matrix (W/sqrt m)^T (W/sqrt m).
With ``--mixed``, a fourth timing: the paper-mode epoch in mixed precision (overdeq.mixed:
fp32 residuals and tests, bfloat16 correction sweeps), with ratios float32 / mixed and
released / mixed. With ``--runs STEPS``, whole calibrated runs through the trainer (logging
every 10th step), float32 and then mixed, compared by final loss, status and fitted rate.
With ``--gradient-error DELTA``, two more epoch timings: float32 and mixed with the adjoint
solved only as tightly as a certified relative gradient error DELTA needs
(implicit.GradientTolerance), and the ``--runs`` comparison trains those too.
The ratios are released / paper (higher is better for paper mode). Dense eig at large m is
slow, so ``--logged-epochs`` (default 2) times fewer epochs for that variant.
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import time
from collections.abc import Callable
from dataclasses import replace

import torch
from _timing import interleaved, timings  # benchmarks/_timing.py (this folder is on sys.path)

from overdeq.config import LEGACY_SOLVER, TrainConfig, make_run_config
from overdeq.data import DataSpec, load_dataset
from overdeq.implicit import (
    GradientTolerance,
    SolveStats,
    WarmStart,
    deq_output,
    released_output,
)
from overdeq.mixed import MixedConfig
from overdeq.model import DEQ
from overdeq.monitor import PowerNorm, legacy_readouts
from overdeq.provenance import device_name
from overdeq.seeding import MODEL_OBJECTS
from overdeq.train import calibrate, log_row, set_precision, train

RELEASED_LR = 1e-6  # the released random-data script's learning rate


def _paper_stepper(
    model: DEQ,
    X: torch.Tensor,
    y: torch.Tensor,
    cfg: TrainConfig,
    lr: float,
    m: int,
    mixed: MixedConfig | None,
    tolerance: GradientTolerance | None = None,
) -> tuple[Callable[[], None], dict[str, list[float]]]:
    """One paper-mode GD epoch with its per-epoch monitoring, and the solvers' counts.

    ``iters``: map applications of the forward and adjoint solves, and (mixed) the fp32
    evaluations among them; with ``tolerance`` also each step's gradient-error certificate
    (``cert``) and adjoint tolerance (``tol``).
    """
    opt = torch.optim.SGD(model.parameters(), lr=lr)
    init = {k: v.detach().clone() for k, v in model.weight_blocks().items()}
    warm, power = WarmStart(), PowerNorm(m, iters=cfg.power_iters)
    iters: dict[str, list[float]] = {"fwd": [], "bwd": [], "fwd_fp32": [], "bwd_fp32": []}
    if tolerance is not None:
        iters.update(cert=[], tol=[])

    def step() -> None:
        stats = SolveStats()
        out = deq_output(
            model, X, forward=cfg.forward, backward=cfg.backward, warm=warm, stats=stats,
            mixed=mixed, tolerance=tolerance,
        )  # fmt: skip
        loss = 0.5 * ((out - y) ** 2).sum()
        log_row(model, stats, init, power, float(loss.detach()), 0, False, cfg)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        for key, res in (("fwd", stats.forward), ("bwd", stats.backward)):
            iters[key].append(res.iterations)
            iters[f"{key}_fp32"].append(res.iterations - res.low_iterations)
        if tolerance is not None:
            iters["cert"].append(stats.extra["gradient_certificate"])
            iters["tol"].append(stats.extra["adjoint_tol"])

    return step, iters


def bench(
    n: int,
    m: int,
    d: int | None,
    precision: str,
    device: str,
    epochs: int,
    warmup: int,
    logged_epochs: int,
    data: str,
    paper_lr: str,
    mixed: bool = False,
    gradient_error: float | None = None,
) -> dict:
    dev = torch.device(device)
    dtype = set_precision(precision)
    spec = DataSpec(data, n=n, d=d)
    ds = load_dataset(spec)
    X, y = ds.tensors(dtype=dtype, device=dev)

    # --- paper mode -------------------------------------------------------------------
    run = make_run_config(data=spec, width=m, precision=precision, device=device)
    cfg = run.train
    model_cfg = replace(run.model, d=ds.d)
    seeds = {k: run.seeds[k] for k in MODEL_OBJECTS}
    model = DEQ(model_cfg, seeds=seeds, dtype=dtype, device=dev)
    twin = DEQ(model_cfg, seeds=seeds, dtype=torch.float64, device=dev)
    lr = calibrate(twin, X, y, cfg, 1.0)["calibrated_lr"]
    del twin
    if paper_lr == "released":
        lr = 2 * RELEASED_LR  # the released sum loss has twice the gradient of the 1/2 loss
    paper_step, iters = _paper_stepper(model, X, y, cfg, lr, m, None)
    steps = {"paper": paper_step}
    if mixed:  # the same epoch with bfloat16 corrections (overdeq.mixed), same process
        mmodel = DEQ(model_cfg, seeds=seeds, dtype=dtype, device=dev)
        steps["mixed"], miters = _paper_stepper(mmodel, X, y, cfg, lr, m, MixedConfig())
    counted = [iters, *([miters] if mixed else [])]
    certified: dict[str, dict[str, list[float]]] = {}
    if gradient_error is not None:  # the adjoint only as tight as the gradient needs
        for name, mcfg in (("fp32_cert", None), ("mixed_cert", MixedConfig())):
            cmodel = DEQ(model_cfg, seeds=seeds, dtype=dtype, device=dev)
            tol = GradientTolerance(gradient_error, floor=cfg.backward.tol)
            steps[name], certified[name] = _paper_stepper(cmodel, X, y, cfg, lr, m, mcfg, tol)
        counted += list(certified.values())

    # --- released algorithm -----------------------------------------------------------
    legacy = DEQ(replace(model_cfg, biases=True), seeds=seeds, dtype=dtype, device=dev)
    lopt = torch.optim.SGD(legacy.parameters(), lr=RELEASED_LR)
    liters: dict[str, list[int]] = {"fwd": [], "bwd": []}

    def released_step(logging: bool) -> None:
        stats = SolveStats()
        out = released_output(legacy, X, forward=LEGACY_SOLVER, backward=LEGACY_SOLVER, stats=stats)
        loss = ((out - y) ** 2).sum()
        lopt.zero_grad(set_to_none=True)
        loss.backward()
        lopt.step()
        liters["fwd"].append(stats.forward.iterations)
        liters["bwd"].append(stats.backward.iterations)
        if logging:
            legacy_readouts(stats.z, legacy.W, m, max_dense=10**9)

    steps["released"] = lambda: released_step(False)
    # Each variant warms up, then they take turns, so a drifting load hits all alike.
    interleaved(steps, warmup, dev)
    for counts in (liters, *counted):
        for key in counts:
            counts[key].clear()
    times = interleaved(steps, epochs, dev)
    paper, released = times["paper"], times["released"]
    paper_iters = (statistics.mean(iters["fwd"]), statistics.mean(iters["bwd"]))
    rel_iters = (statistics.mean(liters["fwd"]), statistics.mean(liters["bwd"]))
    mixed_row: dict = {}
    if mixed:
        mixed_row = {
            "mixed_s": statistics.median(times["mixed"]),
            "mixed_iters": tuple(statistics.mean(miters[k]) for k in miters),
        }
    for name, counts in certified.items():
        mixed_row[f"{name}_s"] = statistics.median(times[name])
        mixed_row[f"{name}_iters"] = tuple(
            statistics.mean(counts[k]) for k in ("fwd", "bwd", "fwd_fp32", "bwd_fp32")
        )
        mixed_row[f"{name}_max_cert"] = max(counts["cert"])
        mixed_row[f"{name}_median_tol"] = statistics.median(counts["tol"])
    logged = timings(lambda: released_step(True), logged_epochs, dev) or [math.nan]

    p, r, rl = (statistics.median(t) for t in (paper, released, logged))
    for name in ("mixed", *certified):
        if f"{name}_s" in mixed_row:
            mixed_row[f"x_fp32_over_{name}"] = p / mixed_row[f"{name}_s"]
            mixed_row[f"x_released_over_{name}"] = r / mixed_row[f"{name}_s"]
    return {
        **mixed_row,
        "n": n,
        "m": m,
        "precision": precision,
        "device": device_name(dev),
        "lr": paper_lr,
        "threads": torch.get_num_threads(),
        "paper_s": p,
        "released_s": r,
        "released_logged_s": rl,
        "ratio_no_logging": r / p,
        "ratio_logged": rl / p,
        "paper_iters": paper_iters,
        "epoch_s": {name: list(t) for name, t in times.items()},
        "released_iters": rel_iters,
    }


def compare_runs(
    n: int, m: int, steps: int, data: str, device: str, gradient_error: float | None = None
) -> dict:
    """(c) Whole calibrated paper-mode runs (the trainer, log every 10th step), float32
    against mixed (and with ``gradient_error`` both with the certified adjoint tolerance),
    one after the other in this process: final loss, status, rate, time."""
    variants = {"float32": ("float32", None), "mixed": ("mixed", None)}
    if gradient_error is not None:
        variants.update(
            float32_cert=("float32", gradient_error), mixed_cert=("mixed", gradient_error)
        )
    out: dict = {}
    for name, (precision, ge) in variants.items():
        run = make_run_config(
            data=DataSpec(data, n=n), width=m, steps=steps, log_every=10,
            precision=precision, device=device, gradient_error=ge,
        )  # fmt: skip
        t0 = time.perf_counter()
        s = train(run).summary
        a, f = out.get("float32", {}).get("final_loss"), s["final_loss"]
        out[name] = {
            "wall_s": time.perf_counter() - t0,
            **{k: s[k] for k in ("status", "final_loss", "initial_loss", "rate")},
            **{k: s[k] for k in ("mean_fwd_iters", "mean_bwd_iters")},
            "certificate": s.get("gradient_error"),
            "final_loss_rel_diff": abs(a - f) / abs(a) if a else 0.0,
            "rate_rel_diff": abs(out.get("float32", {}).get("rate", s["rate"]) - s["rate"])
            / s["rate"],
        }
    for name in out:
        out[name]["x_time"] = out["float32"]["wall_s"] / out[name]["wall_s"]
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, nargs="+", default=[200])
    ap.add_argument("--m", type=int, nargs="+", default=[2000])
    ap.add_argument("--d", type=int, default=None, help="input dimension (default: n)")
    ap.add_argument("--data", default="identity", choices=["identity", "gaussian"])
    ap.add_argument(
        "--precision", nargs="+", default=["float32"], choices=["float32", "tf32", "float64"]
    )
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument(
        "--logged-epochs", type=int, default=2, help="released epochs with logging (0: none)"
    )
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument(
        "--mixed",
        action="store_true",
        help="also time the paper-mode epoch in mixed precision (overdeq.mixed) against "
        "float32 and the released algorithm, in this process",
    )
    ap.add_argument(
        "--runs",
        type=int,
        default=0,
        metavar="STEPS",
        help="also train whole calibrated runs of STEPS steps, float32 against mixed",
    )
    ap.add_argument(
        "--gradient-error",
        type=float,
        default=None,
        metavar="DELTA",
        help="also time (and with --runs, train) float32 and mixed with the adjoint solved "
        "only as tightly as a certified relative gradient error DELTA needs",
    )
    ap.add_argument("--run-n", type=int, default=None, help="n of those runs (default: --n)")
    ap.add_argument("--run-m", type=int, default=None, help="m of those runs (default: --m)")
    ap.add_argument(
        "--paper-lr",
        nargs="+",
        default=["calibrated", "released"],
        choices=["calibrated", "released"],
        help="step of the paper-mode epochs: calibrated (its default) or the "
        "released 1e-6 (same trajectory speed as the released runs)",
    )
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    print("load average at start: {:.2f} {:.2f} {:.2f}".format(*os.getloadavg()))
    rows = [
        bench(
            n,
            m,
            args.d,
            prec,
            args.device,
            args.epochs,
            args.warmup,
            args.logged_epochs,
            args.data,
            lr,
            args.mixed,
            args.gradient_error,
        )
        for n in args.n
        for m in args.m
        for prec in args.precision
        for lr in args.paper_lr
    ]
    print(f"device: {rows[0]['device']}, torch {torch.__version__}, threads {rows[0]['threads']}")
    head = (
        f"{'n':>5} {'m':>6} {'precision':>9} {'paper lr':>10} {'paper ms':>9} {'released ms':>11} "
        f"{'+logging ms':>11} {'x (no log)':>10} {'x (log)':>8} {'iters fwd/bwd':>14} "
        f"{'released it':>12}"
    )
    print(head)
    for r in rows:
        print(
            f"{r['n']:>5} {r['m']:>6} {r['precision']:>9} {r['lr']:>10} {1e3 * r['paper_s']:>9.1f} "
            f"{1e3 * r['released_s']:>11.1f} {1e3 * r['released_logged_s']:>11.1f} "
            f"{r['ratio_no_logging']:>10.2f} {r['ratio_logged']:>8.1f} "
            f"{r['paper_iters'][0]:>6.1f}/{r['paper_iters'][1]:<6.1f} "
            f"{r['released_iters'][0]:>5.1f}/{r['released_iters'][1]:<5.1f}"
        )

    for r in rows:
        if "mixed_s" in r:
            it = r["mixed_iters"]
            print(
                f"mixed n={r['n']} m={r['m']} lr={r['lr']}: {1e3 * r['mixed_s']:.1f} ms "
                f"(float32 {1e3 * r['paper_s']:.1f} ms, released {1e3 * r['released_s']:.1f} ms); "
                f"x vs float32 {r['x_fp32_over_mixed']:.2f}, x vs released "
                f"{r['x_released_over_mixed']:.2f}; map applications fwd/bwd {it[0]:.1f}/"
                f"{it[1]:.1f}, fp32 among them {it[2]:.1f}/{it[3]:.1f}"
            )
        for name in ("fp32_cert", "mixed_cert"):
            if f"{name}_s" in r:
                it = r[f"{name}_iters"]
                print(
                    f"{name} (gradient error {args.gradient_error}) n={r['n']} m={r['m']} "
                    f"lr={r['lr']}: {1e3 * r[f'{name}_s']:.1f} ms; x vs float32 "
                    f"{r[f'x_fp32_over_{name}']:.2f}, x vs released "
                    f"{r[f'x_released_over_{name}']:.2f}; map applications fwd/bwd {it[0]:.1f}/"
                    f"{it[1]:.1f}, fp32 among them {it[2]:.1f}/{it[3]:.1f}; max certificate "
                    f"{r[f'{name}_max_cert']:.3g}, median adjoint tol {r[f'{name}_median_tol']:.3g}"
                )
    for r in rows:  # every timed epoch, to judge the spread behind the medians
        for name, t in r["epoch_s"].items():
            print(f"epochs n={r['n']} m={r['m']} {name:>10}: " + " ".join(f"{x:.2f}" for x in t))
    if args.runs:
        n, m = args.run_n or args.n[0], args.run_m or args.m[0]
        c = compare_runs(n, m, args.runs, args.data, args.device, args.gradient_error)
        for p, r in c.items():
            print(
                f"{args.runs}-step run n={n} m={m} {p:>12}: {r['wall_s']:.1f} s, status "
                f"{r['status']}, final loss {r['final_loss']:.6e} (initial "
                f"{r['initial_loss']:.6e}), rate {r['rate']:.6f}, iterations fwd/bwd "
                f"{r['mean_fwd_iters']:.2f}/{r['mean_bwd_iters']:.2f}; vs float32: final loss "
                f"{r['final_loss_rel_diff']:.2e}, rate {r['rate_rel_diff']:.2e}, time x "
                f"{r['x_time']:.2f}; certificate {r['certificate']}"
            )
    print("load average at end: {:.2f} {:.2f} {:.2f}".format(*os.getloadavg()))


if __name__ == "__main__":
    main()
