"""overdeq plan: the FLOP model, the plan's JSON with a fake throughput, the command line,
and (slow) the workflow's `snakemake plan` on the default tier."""

from __future__ import annotations

import functools
import json
import math
import subprocess
from pathlib import Path

import pytest

from overdeq import plan as P
from overdeq.cli import main
from overdeq.config import make_run_config
from overdeq.data import DataSpec
from overdeq.train import train

from workflow_helpers import BIN, REPO, scratch_repo, workflow_env

# every kind of work at 1e9 per second: seconds are work / 1e9
FAKE = P.Throughput(rates={k: 1e9 for k in P.KINDS}, device="fake", source="test")
IT = P.Iterations(forward=3, backward=4, calib_forward=20, calib_backward=10)


def _run(width: int = 400, **kw):
    opts = {"steps": 100, "log_every": 10, "audit_every": 0, **kw}
    return make_run_config(data=DataSpec("identity", n=50), width=width, **opts)


def test_a_gd_step_costs_the_solver_iterations_plus_the_weight_gradient():
    n, m, d = 50, 400, 50
    parts = P.train_work(_run(), n, d, IT, "float32")
    steps = parts["steps"].amounts["gemm:float32"]
    # 100 steps of (3 + 4 + 1) GEMMs, the input injection, and the last logged forward pass
    expected = 100 * ((3 + 4 + 1) * 2 * n * m * m + 4 * n * d * m) + 3 * 2 * n * m * m
    assert steps == pytest.approx(expected)
    # the released gradient applies the layer once more per step
    released = P.train_work(_run(mode="legacy", lr=1e-6), n, d, IT, "float32")["steps"]
    assert released.amounts["gemm:float32"] - steps == pytest.approx(100 * 2 * n * m * m)


def test_step_work_is_quadratic_in_the_width_and_linear_in_the_steps():
    a = P.train_work(_run(width=400), 50, 50, IT, "float32")["steps"].flops
    b = P.train_work(_run(width=800), 50, 50, IT, "float32")["steps"].flops
    c = P.train_work(_run(width=400, steps=200), 50, 50, IT, "float32")["steps"].flops
    assert 3.8 < b / a < 4.0  # 4x but the O(n d m) injection
    assert c / a == pytest.approx(2, rel=0.02)


def test_mixed_precision_moves_the_bulk_to_bf16_and_keeps_the_total():
    fp32 = P.train_work(_run(), 50, 50, IT, "float32")["steps"]
    mixed = P.train_work(_run(), 50, 50, IT, "mixed")["steps"]
    assert mixed.flops == pytest.approx(fp32.flops)
    per_step = IT.forward + IT.backward + 1
    fp32_share = (2 * P.MIXED_FP32_ITERS + 1) / per_step
    bf16 = mixed.amounts["gemm:bf16"]
    assert mixed.amounts["gemm:float32"] < bf16
    assert 1 - bf16 / mixed.flops == pytest.approx(fp32_share, rel=0.05)
    with pytest.raises(ValueError, match="precision 'half'"):
        P.train_work(_run(), 50, 50, IT, "half")


def test_measured_mixed_sweeps_are_counted_as_measured():
    # a small mixed run found 8 forward and 7 adjoint map applications per step, 7 and 6 of
    # them low-precision sweeps: 7 + 6 bf16 GEMMs and 1 + 1 + 1 (dL/dW) float32 ones
    it = P.Iterations(
        3, 4, 20, 10, forward_mixed=8, backward_mixed=7, forward_low=7, backward_low=6
    )
    run = _run()
    steps = run.train.steps
    gemm = P.deq_gemm(50, 400)
    mixed = P.train_work(run, 50, 50, it, "mixed")["steps"]
    injection = steps * 4.0 * 50 * 50 * 400
    assert mixed.amounts["gemm:bf16"] == pytest.approx(steps * 13 * gemm + injection)
    last_forward = it.forward * gemm  # the last logged step: a forward pass only
    assert mixed.amounts["gemm:float32"] == pytest.approx(steps * 3 * gemm + last_forward)
    # float32 and tf32 keep the float32 small run's counts
    fp32 = P.train_work(run, 50, 50, it, "float32")["steps"]
    assert fp32.flops == pytest.approx(P.train_work(run, 50, 50, IT, "float32")["steps"].flops)


def test_mixed_precision_leaves_the_released_gradient_in_float32():
    # The trainer solves only the implicit gradient by defect correction; a legacy run under
    # compute.precision mixed is a float32 run, and the plan must not count it as bf16.
    run = _run(mode="legacy", lr=1e-6)
    mixed = P.train_work(run, 50, 50, IT, "mixed")
    fp32 = P.train_work(run, 50, 50, IT, "float32")
    for part in ("steps", "logging"):
        assert "gemm:bf16" not in mixed[part].amounts
        assert mixed[part].amounts == fp32[part].amounts


def test_log_and_audit_counts_are_those_of_a_real_run():
    run = make_run_config(
        data=DataSpec("identity", n=8),
        width=40,
        steps=23,
        log_every=5,
        audit_every=2,
        checkpoint_every=100,
    )
    history = train(run, None).history
    n_logs = P.log_count(23, 5)
    assert len(history) == n_logs
    audits = sum(1 for row in history if row["w_norm_exact"] is not None)
    assert audits == P.audit_count(n_logs, 2)


def test_the_released_readouts_cost_a_dense_eig_only_up_to_the_library_limit():
    small = P.train_work(_run(legacy_readouts=True, width=400), 50, 50, IT, "float32")
    large = P.train_work(_run(legacy_readouts=True, width=5000), 50, 50, IT, "float32")
    assert small["logging"].amounts["eig_host"] == pytest.approx(
        11 * (P.gen_eig_flops(50) + P.gen_eig_flops(400))
    )
    assert large["logging"].amounts["eig_host"] == pytest.approx(11 * P.gen_eig_flops(50))
    # from EIG_LARGE on, an eig is its own kind of work (LAPACK runs it faster per FLOP)
    big = P.train_work(_run(legacy_readouts=True, width=2000), 50, 50, IT, "float32")
    assert big["logging"].amounts["eig_host"] == pytest.approx(11 * P.gen_eig_flops(50))
    assert big["logging"].amounts["eig_host_large"] == pytest.approx(11 * P.gen_eig_flops(2000))
    assert P.host_eig_kind(P.EIG_LARGE - 1) == "eig_host"
    assert P.host_eig_kind(P.EIG_LARGE) == "eig_host_large"


def test_random_deq_work_counts_every_sample():
    p = {"data": ["identity", "gaussian"], "n": 20, "widths": [100, 200], "seeds": 3,
         "sigma_w": 0.4, "untied_widths": [], "max_depth": 5}  # fmt: skip
    w = P.random_deq_work("e1", p, lambda sw: 10.0)
    draws = 2 * 3 * sum(m * m + m * 20 + m for m in (100, 200))
    assert w.amounts["rng_host"] == draws
    solves = 2 * 3 * sum(10 * 2 * 20 * m * m + 2 * 20 * 20 * m for m in (100, 200))
    assert w.amounts["gemm:float64"] == pytest.approx(
        solves + 2 * 3 * sum(2 * 400 * m for m in (100, 200))
    )
    with pytest.raises(ValueError, match="unknown random-DEQ experiment 'e9'"):
        P.random_deq_work("e9", p, lambda sw: 1.0)


def test_gradient_error_work_counts_the_reference_and_every_tolerance():
    n, m = 20, 100
    w = P.gradient_error_work(n, n, m, (30, 28), iter([5, 4, 9, 8]))  # an iterator is fine
    # 58 + 26 solver iterations, and per solve pair one more layer application and dL/dW
    assert w.amounts["gemm:float64"] == pytest.approx((58 + 26 + 2 * 5) * 2 * n * m * m)


def test_a_throughput_without_a_rate_for_some_work_says_which():
    thr = P.Throughput(rates={"gemm:float32": 1e9}, device="x", source="test")
    w = P.Work()
    w.add("gemm:float32", 2e9)
    assert thr.seconds(w) == pytest.approx(2.0)
    w.add("eig_host", 1.0)
    with pytest.raises(ValueError, match=r"no rate for \['eig_host'\]"):
        thr.seconds(w)
    with pytest.raises(ValueError, match="unknown kind of work 'gpu'"):
        w.add("gpu", 1.0)


def test_the_h100_estimate_does_not_depend_on_the_machine_that_plans():
    run = _run(legacy_readouts=True)
    recount = functools.partial(P.train_work, run, 50, 50, IT)
    est = [P.JobEstimate("E4-E6", "a", recount("float32"), {}, recount)]
    slow = P.Throughput(rates={k: 1e6 for k in P.KINDS}, device="slow", source="test")
    a = P.plan_from_estimates(est, FAKE, "float32", "t")
    b = P.plan_from_estimates(est, slow, "float32", "t")
    assert a["h100_estimate"] == b["h100_estimate"]
    assert b["this_device"]["total"]["seconds"] == pytest.approx(
        1000 * a["this_device"]["total"]["seconds"]
    )


JOBS = {
    "tier": "test",
    "precision": "float32",
    "train": [
        {
            "experiment": "E4-E6",
            "job": f"train/identity/calibrated/m{m}/seed0",
            "data": "identity",
            "n": 20,
            "d": None,
            "width": m,
            "options": {"mode": "paper", "steps": 50, "log_every": 10, "seed": 0},
        }
        for m in (100, 300)
    ]
    + [
        {
            "experiment": "E7",
            "job": "train/identity/released/m100/seed0",
            "data": "identity",
            "n": 20,
            "d": None,
            "width": 100,
            "options": {"mode": "legacy", "lr": 1e-6, "steps": 50, "log_every": 10},
        }
    ],
    "random_deq": {
        "e3": {
            "data": "gaussian",
            "n": 20,
            "d": None,
            "width": 100,
            "seeds": 2,
            "sigma_ws": [0.2, 0.4],
            "tol": 1e-8,
            "max_iter": 200,
            "w_norm": "exact",
            "dtype": "float64",
        },  # fmt: skip
    },
    "gradient_error": {"dataset": "identity", "n": 20, "width": 100, "tols": [1e-2, 1e-4]},
}


@pytest.fixture(scope="module")
def fake_plan():
    return P.estimate(JOBS, device="cpu", throughput=FAKE, size=(10, 40, 4))


def test_the_plan_groups_jobs_by_experiment_and_adds_them_up(fake_plan):
    here = fake_plan["this_device"]
    assert set(here["experiments"]) == {"E4-E6", "E7", "E3", "E7-gradient"}
    assert here["experiments"]["E4-E6"]["jobs"] == 2
    jobs = fake_plan["jobs"]
    assert here["total"]["seconds"] == pytest.approx(sum(j["seconds"] for j in jobs))
    # with every rate 1e9/s, a job's seconds are its work / 1e9
    for j in jobs:
        assert j["seconds"] == pytest.approx(sum(j["work"].values()) / 1e9)
    # the wider run costs more; the dominant job is the most expensive one
    wide = next(j for j in jobs if j["job"].endswith("m300/seed0"))
    assert fake_plan["dominant"][0]["job"] == max(jobs, key=lambda j: j["seconds"])["job"]
    assert (
        wide["seconds"]
        > next(j for j in jobs if j["job"].endswith("calibrated/m100/seed0"))["seconds"]
    )


def test_the_h100_figures_are_labelled_estimates_with_their_assumptions(fake_plan):
    h = fake_plan["h100_estimate"]
    assert "ESTIMATE" in h["label"] and "not a measurement" in h["label"]
    assert any("published" in a for a in h["assumptions"])
    by = h["by_precision"]
    # bf16 and tf32 GEMMs are faster than float32 ones (mixed keeps a few in float32)
    assert by["mixed"]["total"]["seconds"] < by["float32"]["total"]["seconds"]
    assert by["tf32"]["total"]["seconds"] < by["float32"]["total"]["seconds"]
    kinds = h["mixed_kinds_seconds"]
    assert kinds["gemm:bf16"] > 0 and kinds["gemm:float32"] > 0 and "gemm:tf32" not in kinds
    t = fake_plan["target"]
    assert t["h100_hours_estimate"] == pytest.approx(by["mixed"]["total"]["seconds"] / 3600)
    assert t["fits"] == (t["h100_hours_estimate"] <= t["h100_hours"])
    text = P.format_plan(fake_plan)
    assert "ESTIMATE" in text and "E7-gradient" in text and "total" in text
    # the paper-mode runs solve to 1e-6, below what tf32 reaches; the released one to 1e-2
    assert sorted(fake_plan["tf32_unreachable"]) == [
        "train/identity/calibrated/m100/seed0",
        "train/identity/calibrated/m300/seed0",
    ]
    assert "tf32 column: 2 runs solve to a tolerance below 0.0001" in text


def test_iterations_are_measured_from_small_runs(fake_plan):
    classes = fake_plan["calibration"]["iteration_classes"]
    assert len(classes) == 2  # calibrated paper mode (both widths share it), released
    for c in classes.values():
        assert c["forward"] >= 1 and c["backward"] >= 1
        assert "n=10, m=40" in c["measured_at"]
    # paper mode also ran in mixed precision (its sweeps are counted); released did not
    paper = next(c for k, c in classes.items() if "'paper'" in k)
    released = next(c for k, c in classes.items() if "'legacy'" in k)
    fwd, bwd, fwd_low, bwd_low = paper["mixed_forward_backward_low"]
    assert 1 <= fwd_low < fwd and 0 <= bwd_low < bwd
    assert released["mixed_forward_backward_low"] is None
    e3 = next(j for j in fake_plan["jobs"] if j["job"] == "random_deq/e3")
    assert set(e3["iterations_by_sigma_w"]) == {"0.2", "0.4"}


def test_a_setting_with_its_own_precision_keeps_it_in_every_column():
    # training.settings.<name>.precision (e.g. tf32 for the released algorithm) replaces
    # compute.precision for that setting's runs: the plan counts them at it, in every column.
    released = {**JOBS["train"][-1], "setting_precision": "tf32"}
    plan = P.estimate({"train": [released]}, device="cpu", throughput=FAKE, size=(10, 40, 4))
    (job,) = plan["jobs"]
    assert job["precision"] == "tf32" and job["work"].get("gemm:tf32", 0) > 0
    assert "gemm:float32" not in job["work"] and "gemm:bf16" not in job["work"]
    by = plan["h100_estimate"]["by_precision"]
    assert by["float32"]["total"] == by["tf32"]["total"] == by["mixed"]["total"]


@pytest.mark.slow  # about 30 s: a real calibration of this device
def test_cli_writes_the_plan_and_shows_it(tmp_path, capsys):
    jobs = tmp_path / "jobs.json"
    jobs.write_text(json.dumps({**JOBS, "random_deq": {}, "gradient_error": None}))
    out = tmp_path / "plan.json"
    assert main(["plan", "--jobs", str(jobs), "--out", str(out), "--size", "8", "30", "3"]) == 0
    printed = capsys.readouterr().out
    data = json.loads(out.read_text())
    assert data["tier"] == "test" and math.isfinite(data["this_device"]["total"]["seconds"])
    assert main(["plan", "--show", str(out)]) == 0
    assert capsys.readouterr().out == printed  # the table is the JSON's
    data["h100_estimate"].pop("by_precision")  # a plan of another version, or edited
    out.write_text(json.dumps(data))
    with pytest.raises(SystemExit) as exc:
        main(["plan", "--show", str(out)])
    assert exc.value.code == 2
    assert "is not a plan this overdeq can read" in capsys.readouterr().err


def test_cli_refuses_a_precision_it_cannot_count(tmp_path, capsys):
    jobs = tmp_path / "jobs.json"
    jobs.write_text(json.dumps({**JOBS, "precision": "float16"}))
    with pytest.raises(SystemExit) as exc:
        main(["plan", "--jobs", str(jobs), "--size", "8", "30", "3"])
    assert exc.value.code == 2
    assert "compute.precision 'float16'" in capsys.readouterr().err


@pytest.mark.slow
def test_snakemake_plan_on_the_default_tier(tmp_path):
    repo = scratch_repo(tmp_path / "repo", REPO / "config" / "config.yaml")
    out = subprocess.run(
        [str(BIN / "overdeq"), "plan", "--configfile", "config/config.yaml"],
        cwd=repo,
        env=workflow_env(),
        text=True,
        capture_output=True,
        timeout=600,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    assert "ESTIMATE" in out.stdout and "total" in out.stdout
    plan = json.loads((repo / "results" / "quick" / "plan.json").read_text())
    assert set(plan["this_device"]["experiments"]) == {
        "E1", "E2", "E3", "E10", "E4-E6", "E7", "E7-gradient"
    }  # fmt: skip
    jobs = json.loads((repo / "results" / "quick" / "plan_jobs.json").read_text())
    assert len(plan["jobs"]) == len(jobs["train"]) + len(jobs["random_deq"]) + 1
    assert plan["calibration"]["seconds"] < 120  # "seconds on a CPU"
    assert Path(repo / "logs" / "quick" / "plan.log").exists()


@pytest.mark.slow
def test_gpu_check_runs_on_a_cpu_at_small_scale(tmp_path):
    env = workflow_env(
        {"GPU_CHECK_SCALE": "small", "OUT": str(tmp_path), "PYTHON": str(BIN / "python")}
    )
    out = subprocess.run(
        ["bash", str(REPO / "benchmarks" / "gpu_check.sh")],
        env=env,
        text=True,
        capture_output=True,
        timeout=600,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    table = (tmp_path / "gpu_check.txt").read_text()
    assert out.stdout.rstrip().endswith(f"(written to {tmp_path / 'gpu_check.txt'})")
    expected = ("epoch fp32", "epoch tf32", "epoch mixed", "epoch mixed-cert", "epoch legacy",
                "epoch legacy-tf32", "paper-tier job", "released algorithm, tf32 against float32")  # fmt: skip
    for row in expected:
        assert row in table, row
    rows = json.loads((tmp_path / "gpu_check.json").read_text())["rows"]
    timed = [r for r in rows if "skipped" not in r]
    # every epoch variant and the job ran (the last line of the table is not a row)
    assert len(timed) == len(expected) - 1
    assert all(r["measured_s"] > 0 and r["plan_s"] > 0 for r in timed)
