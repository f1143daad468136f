"""One GPU check (issue 11): epoch times, one short paper-tier job, and the plan against both.

    PYTHONPATH=src python benchmarks/gpu_check.py                   # n=1000, m=19000 (GPU)
    GPU_CHECK_SCALE=small PYTHONPATH=src python benchmarks/gpu_check.py   # seconds, on a CPU

No Snakemake needed: everything goes through the package. Three parts:

1. Epoch times at (n, m) = (1000, 19000) of the trainer's own step (``overdeq.train``:
   forward solve, loss, per-epoch monitoring, backward, update) for paper mode at float32,
   tf32 and mixed precision (also with ``gradient_error: 0.1``, the paper tier's calibrated
   setting), and for the released algorithm (legacy mode, released lr) at float32 and tf32,
   with the two released runs' losses after the same steps compared. The median over ``EPOCHS`` epochs after ``WARMUP``. A precision the library refuses
   (``mixed`` before it exists) is skipped with the library's message.
2. One short paper-tier training job, ``overdeq train`` as the workflow calls it (identity,
   n = 1000, m = 3000, the calibrated setting, the paper tier's monitoring): the run's own
   wall time (summary.json; the process with its start-up is recorded beside it).
3. ``overdeq.plan``'s prediction for each, calibrated on this device in this process, and its
   H100 estimate (published throughput, not a measurement).

The table is printed last and written to ``$OUT/gpu_check.txt`` (or
``benchmarks/gpu_check.out``), with the numbers as JSON beside it.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from overdeq.config import ConfigError, make_run_config
from overdeq.data import DataSpec
from overdeq.plan import estimate, h100_throughput, measure_throughput
from overdeq.provenance import device_name
from overdeq.train import _Run

# (n, m, epochs, warm-up, short job: width, steps) per scale
SCALES = {
    "full": {"n": 1000, "m": 19000, "epochs": 10, "warmup": 3, "job_m": 3000, "job_steps": 2000},
    "small": {"n": 40, "m": 300, "epochs": 5, "warmup": 2, "job_m": 200, "job_steps": 60},
}
# the paper tier's monitoring and calibrated setting (config/paper.yaml, training.settings)
PAPER_MONITORING = {"log_every": 50, "audit_every": 40, "checkpoint_every": 500}
CALIBRATED = {"mode": "paper", "lr_scale": 0.5, "tol": 1e-6}
RELEASED = {"mode": "legacy", "lr": 1e-6}  # the released identity setting (legacy_readouts off)
VARIANTS = (
    ("fp32", {**CALIBRATED, "precision": "float32"}),
    ("tf32", {**CALIBRATED, "precision": "tf32"}),
    ("mixed", {**CALIBRATED, "precision": "mixed"}),
    # the paper tier's calibrated setting: mixed with the certified adjoint tolerance
    ("mixed-cert", {**CALIBRATED, "precision": "mixed", "gradient_error": 0.1}),
    ("legacy", {**RELEASED, "precision": "float32"}),
    # the released algorithm on tensor cores (training.settings.released.precision: tf32);
    # its loss after the same steps is compared with the float32 run's (an overlay check)
    ("legacy-tf32", {**RELEASED, "precision": "tf32"}),
)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def epoch_time(n: int, m: int, options: dict, device: str, epochs: int, warmup: int) -> dict:
    """Median seconds of the trainer's step (monitoring every epoch) and its iterations."""
    run = make_run_config(
        data=DataSpec("identity", n=n),
        width=m,
        steps=epochs + warmup + 1,
        log_every=1,
        audit_every=10**6,
        checkpoint_every=10**6,
        patience=10**6,  # time every epoch even where a solve cannot converge (tf32 at 1e-6)
        device=device,
        **options,
    )
    r = _Run(run, None, None, False)
    r.setup()
    r.calibrate()
    dev = torch.device(device)
    times = []
    for k in range(warmup + epochs):
        _sync(dev)
        t0 = time.perf_counter()
        ended = r.step()
        _sync(dev)
        if k >= warmup:
            times.append(time.perf_counter() - t0)
        if ended:
            raise RuntimeError(f"the run ended at step {r.t}: {r.status} {r.reason}")
    rows = r.history[warmup:]
    return {
        "seconds": statistics.median(times),
        "fwd_iters": statistics.mean(x["fwd_iters"] for x in rows),
        "bwd_iters": statistics.mean(x["bwd_iters"] or 0 for x in rows),
        "loss": r.history[-1]["loss"],  # the loss at the last step, for the overlay check
        "unconverged": sum(1 for x in rows if not x["fwd_converged"]),
        "steps": len(rows),
    }


def short_job(n: int, m: int, steps: int, device: str, out: Path) -> dict:
    """`overdeq train` as the workflow runs it, timed end to end (subprocess)."""
    flags = {**PAPER_MONITORING, **CALIBRATED, "steps": steps, "precision": "float32"}
    cmd = [sys.executable, "-m", "overdeq.cli", "train", "--data", "identity", "--n", str(n)]
    cmd += ["--width", str(m), "--device", device, "--out", str(out), "--quiet", "--overwrite"]
    for key, value in flags.items():
        cmd += [f"--{key.replace('_', '-')}", str(value)]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise RuntimeError(f"overdeq train failed ({proc.returncode}): {proc.stderr[-800:]}")
    summary = json.loads((out / "summary.json").read_text())
    inside = summary.get("provenance", {}).get("wall_time_s")  # the run itself, no start-up
    return {"seconds": inside or wall, "process_s": wall, "status": summary.get("status"),
            "options": flags}  # fmt: skip


def job_entry(name: str, n: int, m: int, options: dict) -> dict:
    """A job of the plan's JSON (what rule plan writes for a training run)."""
    return {"experiment": name, "job": name, "data": "identity", "n": n, "d": None,
            "width": m, "options": options}  # fmt: skip


def predict(jobs: list, precision: str, device: str, thr) -> dict:
    """The plan of ``jobs`` on this device (rates ``thr``) and its H100 estimate, by job."""
    plan = estimate({"tier": "gpu-check", "precision": precision, "train": jobs}, device=device,
                    throughput=thr)  # fmt: skip
    return {j["job"]: j for j in plan["jobs"]}


def main() -> int:
    scale = os.environ.get("GPU_CHECK_SCALE", "full")
    if scale not in SCALES:
        print(f"GPU_CHECK_SCALE={scale!r}: choose one of {list(SCALES)}", file=sys.stderr)
        return 2
    s = SCALES[scale]
    device = "cuda" if torch.cuda.is_available() else "cpu"
    out_dir = Path(os.environ["OUT"]) if os.environ.get("OUT") else Path(__file__).parent
    out_txt = out_dir / ("gpu_check.txt" if os.environ.get("OUT") else "gpu_check.out")
    t_start = time.perf_counter()
    print(f"gpu_check: scale {scale}, device {device_name(device)}, torch {torch.__version__}")
    thr = measure_throughput(device)
    h100 = h100_throughput()  # recorded beside the table: the rates the plan assumes
    rows = []
    n, m, steps = s["n"], s["m"], s["epochs"] + s["warmup"] + 1
    for name, options in VARIANTS:
        label = f"epoch {name} n={n} m={m}"
        try:
            res = epoch_time(n, m, options, device, s["epochs"], s["warmup"])
            opts = {**options, "steps": steps, "log_every": 1, "audit_every": 10**6}
            prec = opts.pop("precision")
            job = predict([job_entry(label, n, m, opts)], prec, device, thr)[label]
        except ConfigError as exc:  # e.g. --precision mixed before the library has it
            rows.append({"what": label, "skipped": f"the library refuses it: {exc}"})
            print(f"{label}: skipped ({exc})", flush=True)
            continue
        except (RuntimeError, ValueError) as exc:  # out of memory, a solve that fails, ...
            rows.append({"what": label, "skipped": f"FAILED: {exc}"[:300]})
            print(f"{label}: FAILED ({exc})", flush=True)
            continue
        parts, h100_parts = job["parts_seconds"], job["h100_parts_seconds_estimate"]
        rows.append({
            "what": label, "measured_s": res["seconds"],
            "plan_s": (parts["steps"] + parts["logging"]) / steps,
            "h100_s": (h100_parts["steps"] + h100_parts["logging"]) / steps,
            "iters_measured": [res["fwd_iters"], res["bwd_iters"]],
            "iters_plan": job["iterations_per_step"], "loss": res["loss"],
            "unconverged": f"{res['unconverged']} of {res['steps']}",
        })  # fmt: skip
        print(f"{label}: {1e3 * res['seconds']:.1f} ms", flush=True)
        write(rows, thr, h100, out_txt, scale, device, t_start)  # what is done, if cut short
    label = f"paper-tier job: identity n={n} m={s['job_m']}, {s['job_steps']} steps, fp32"
    try:
        with tempfile.TemporaryDirectory() as tmp:
            res = short_job(n, s["job_m"], s["job_steps"], device, Path(tmp) / "run")
        opts = {k: v for k, v in res["options"].items() if k != "precision"}
        job = predict([job_entry(label, n, s["job_m"], opts)], "float32", device, thr)[label]
        rows.append({"what": label, "measured_s": res["seconds"], "plan_s": job["seconds"],
                     "h100_s": job["h100_seconds_estimate"], "process_s": res["process_s"],
                     "status": res["status"], "iters_plan": job["iterations_per_step"]})  # fmt: skip
    except (RuntimeError, ValueError) as exc:
        rows.append({"what": label, "skipped": f"FAILED: {exc}"[:300]})
    table = write(rows, thr, h100, out_txt, scale, device, t_start)
    print(table, end="")
    print(f"(written to {out_txt})")
    return 1 if any("FAILED" in r.get("skipped", "") for r in rows) else 0


def write(rows: list, thr, h100, out_txt: Path, scale: str, device: str, t_start: float) -> str:
    """The table and the JSON beside it, written now (again after every row)."""
    table = format_table(rows, device_name(device), scale, time.perf_counter() - t_start)
    out_txt.parent.mkdir(parents=True, exist_ok=True)
    out_txt.write_text(table)
    out_txt.with_suffix(".json").write_text(
        json.dumps({"rows": rows, "rates": thr.rates, "h100_rates": h100.rates}, indent=1) + "\n"
    )
    return table


def _ms(x: float | None) -> str:
    return "-" if x is None else (f"{1e3 * x:.1f} ms" if x < 10 else f"{x:.1f} s")


def format_table(rows: list, device: str, scale: str, wall: float) -> str:
    losses = {r["what"].split()[1]: r["loss"] for r in rows if "loss" in r}
    overlay = []
    if "legacy" in losses and "legacy-tf32" in losses:
        rel = abs(losses["legacy-tf32"] - losses["legacy"]) / abs(losses["legacy"])
        overlay.append(
            f"released algorithm, tf32 against float32: loss after the same steps "
            f"{losses['legacy-tf32']:.6e} / {losses['legacy']:.6e}, {rel:.1e} relative"
        )
    lines = [
        f"GPU check on {device} (scale {scale}, {wall:.0f} s in all); plan = overdeq.plan "
        "calibrated on this device; H100 est. = its H100 ESTIMATE (published throughput)",
        f"{'what':<58} {'measured':>10} {'plan':>10} {'plan/meas':>9} {'H100 est.':>10}  "
        "iterations meas / plan",
    ]
    for r in rows:
        if "skipped" in r:
            lines.append(f"{r['what']:<58} skipped: {r['skipped']}")
            continue
        ratio = r["plan_s"] / r["measured_s"] if r["measured_s"] else float("nan")
        im = r.get("iters_measured")
        it = f"{im[0]:.1f}/{im[1]:.1f}" if im else "-"
        ip = r.get("iters_plan")
        it += f" / {ip[0]:.1f}/{ip[1]:.1f}" if ip else ""
        lines.append(
            f"{r['what']:<58} {_ms(r['measured_s']):>10} {_ms(r['plan_s']):>10} "
            f"{ratio:>9.2f} {_ms(r.get('h100_s')):>10}  {it}"
            + (f"  (forward solve unconverged at {r['unconverged']} steps)"
               if r.get("unconverged", "0").split()[0] != "0" else "")
        )  # fmt: skip
    return "\n".join(lines + overlay) + "\n"


if __name__ == "__main__":
    sys.exit(main())
