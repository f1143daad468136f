import math
import os
import random
import re
import signal
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from overdeq.config import ConfigError, make_run_config
from overdeq.data import DataSpec
from overdeq.io import read_csv, read_json
from overdeq.theory import fit_rate
from overdeq.train import train

SMALL = dict(data=DataSpec("identity", n=20), width=80)


def test_default_run_converges_and_keeps_the_invariants():
    run = make_run_config(**SMALL, steps=300, log_every=10)
    res = train(run)
    s = res.summary
    assert s["status"] == "finished"
    assert s["final_loss"] < 1e-3 * s["initial_loss"]
    assert 0 < s["rate"] < 1
    assert s["lr_source"] == "calibrated"
    assert s["lr"] == pytest.approx(0.5 / s["theta0_lambda_max"])
    assert s["max_w_norm"] < 1  # contraction throughout (claim C2)
    assert s["min_lambda_min"] > 0.5 * s["lambda_0"]
    steps = [r["step"] for r in res.history]
    assert steps == list(range(0, 301, 10))
    assert res.history[0]["w_norm_exact"] is not None and res.history[-1]["w_norm_exact"]
    assert abs(res.history[0]["w_norm"] - res.history[0]["w_norm_exact"]) < 1e-2


def test_run_directory_contents(tmp_path):
    run = make_run_config(**SMALL, steps=20, log_every=5)
    train(run, tmp_path)
    hist = read_csv(tmp_path / "history.csv")
    for col in ("step", "loss", "lambda_min", "w_norm", "fwd_iters", "bwd_iters"):
        assert col in hist[0]
    assert len(hist) == 5
    s = read_json(tmp_path / "summary.json")
    for key in (
        "status",
        "final_loss",
        "lambda_0",
        "min_lambda_min",
        "max_w_norm",
        "rate",
        "provenance",
    ):
        assert key in s
    prov = s["provenance"]
    for key in (
        "git",
        "config_hash",
        "versions",
        "device",
        "precision",
        "seeds",
        "wall_time_s",
        "peak_memory_mb",
    ):
        assert key in prov
    assert prov["seeds"]["W"] != prov["seeds"]["U"]
    assert (tmp_path / "checkpoint.pt").is_file() and (tmp_path / "spectrum.npz").is_file()


def test_finished_run_is_not_redone(tmp_path):
    run = make_run_config(**SMALL, steps=10, log_every=5)
    first = train(run, tmp_path)
    mtime = (tmp_path / "summary.json").stat().st_mtime_ns
    again = train(run, tmp_path)
    assert again.skipped and not first.skipped
    assert (tmp_path / "summary.json").stat().st_mtime_ns == mtime


def test_different_config_in_the_same_directory_is_refused(tmp_path):
    train(make_run_config(**SMALL, steps=10), tmp_path)
    other = make_run_config(**SMALL, steps=11)
    with pytest.raises(ConfigError, match="different configuration"):
        train(other, tmp_path)
    assert train(other, tmp_path, overwrite=True).summary["steps_done"] == 11


def test_in_process_resume_is_bit_identical(tmp_path):
    run = make_run_config(**SMALL, steps=40, log_every=4, checkpoint_every=6)
    full = train(run, tmp_path / "full")
    part = train(run, tmp_path / "part", stop_after=17)
    assert part.summary["status"] == "interrupted"
    resumed = train(run, tmp_path / "part")
    assert resumed.resumed_from == 17
    assert resumed.history == full.history
    a = torch.load(tmp_path / "full" / "checkpoint.pt", weights_only=False)["params"]
    b = torch.load(tmp_path / "part" / "checkpoint.pt", weights_only=False)["params"]
    assert all(torch.equal(a[k], b[k]) for k in a)


def _cli(out: Path, steps: int) -> list[str]:
    return [
        sys.executable,
        "-m",
        "overdeq.cli",
        "train",
        "--n",
        "20",
        "--width",
        "80",
        "--steps",
        str(steps),
        "--log-every",
        "3",
        "--checkpoint-every",
        "5",
        "--threads",
        "1",
        "--quiet",
        "--out",
        str(out),
    ]


@pytest.mark.slow  # about 70 s: many kill-and-resume cycles
def test_sigkill_at_any_moment_then_resume_is_bit_identical(tmp_path):
    steps = 150
    ref = tmp_path / "ref"
    subprocess.run(_cli(ref, steps), check=True, timeout=300)
    rng = random.Random(0)
    for trial in range(3):
        out = tmp_path / f"killed{trial}"
        proc = subprocess.Popen(_cli(out, steps))
        deadline = time.time() + 120
        while not (out / "checkpoint.pt").exists() and time.time() < deadline:
            time.sleep(0.01)
        time.sleep(rng.uniform(0.0, 1.5))  # anywhere from the first checkpoint to the end
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        subprocess.run(_cli(out, steps), check=True, timeout=300)
        assert (out / "history.csv").read_text() == (ref / "history.csv").read_text()
        a = torch.load(ref / "checkpoint.pt", weights_only=False)
        b = torch.load(out / "checkpoint.pt", weights_only=False)
        assert a["step"] == b["step"] == steps
        assert all(torch.equal(a["params"][k], b["params"][k]) for k in a["params"])
        assert not [p for p in os.listdir(out) if p.endswith(".tmp")]
        s = read_json(out / "summary.json")
        assert s["status"] == "finished"


def test_width_scale_bug_diverges_with_a_status_not_a_traceback(tmp_path):
    # the released random script uses 1/sqrt(256) at width 7000, a ratio of 27: here 81 vs 3
    run = make_run_config(
        mode="legacy", data=SMALL["data"], width=81, width_scale=3, steps=50, lr=1e-3
    )
    s = train(run, tmp_path).summary
    assert s["status"] == "diverged"
    assert re.search(r"(did not converge|non-finite loss) .*at step \d+", s["reason"])
    assert s["steps_done"] < 50
    assert read_json(tmp_path / "summary.json")["status"] == "diverged"


def test_too_large_a_step_diverges():
    run = make_run_config(**SMALL, steps=200, lr_scale=50.0)
    s = train(run).summary
    assert s["status"] == "diverged"
    assert s["steps_done"] < 200


def test_legacy_mode_trains_with_the_released_settings():
    run = make_run_config(mode="legacy", **SMALL, steps=60, lr=0.01, legacy_readouts=True)
    assert run.model.biases and run.train.loss == "sse"
    assert run.train.forward.name == "anderson" and run.train.forward.tol == 1e-2
    res = train(run)
    assert res.summary["status"] == "finished"
    assert res.summary["final_loss"] < res.summary["initial_loss"]
    assert "lambda_min_legacy" in res.history[0]


def test_expansive_sigma_w_needs_an_override():
    with pytest.raises(ConfigError, match="--sigma-w"):
        make_run_config(**SMALL, sigma_w=0.6)
    run = make_run_config(**SMALL, sigma_w=0.6, allow_expansive=True)
    assert run.allow_expansive


@pytest.mark.parametrize(
    "bad, match",
    [
        (dict(steps=-1), "--steps"),
        (dict(lr=-1.0), "--lr"),
        (dict(loss="mae"), "--loss"),
        (dict(precision="fp8"), "--precision"),
        (dict(log_every=0), "--log-every"),
    ],
)
def test_bad_training_options_name_the_flag(bad, match):
    with pytest.raises(ConfigError, match=match):
        make_run_config(**SMALL, **bad)


def test_seeds_are_independent_per_object():
    a = make_run_config(**SMALL, seed=0)
    b = make_run_config(**{**SMALL, "width": 160}, seed=0)
    assert a.seeds == b.seeds  # the width does not change any seed
    assert a.data == replace(b.data)
    c = make_run_config(**SMALL, seed=1)
    assert c.seeds["W"] != a.seeds["W"] and c.data == a.data  # model seed leaves data alone


def test_fit_rate_recovers_a_geometric_decay():
    steps = torch.arange(0, 200, 5).double().numpy()
    losses = 3.0 * 0.97**steps
    rate, r2, npts = fit_rate(steps, losses)
    assert rate == pytest.approx(0.97, rel=1e-9)
    assert r2 == pytest.approx(1.0)
    assert npts >= 3
    assert math.isnan(fit_rate(steps[:2], losses[:2])[0])


def test_killed_after_the_final_checkpoint_resumes_without_a_duplicate_row(tmp_path):
    # the last checkpoint is written before summary.json: a kill in between leaves a
    # finished checkpoint and no summary; the rerun must not log the last step twice
    run = make_run_config(**SMALL, steps=12, log_every=4, checkpoint_every=5)
    full = train(run, tmp_path / "full")
    train(run, tmp_path / "cut")
    (tmp_path / "cut" / "summary.json").unlink()
    again = train(run, tmp_path / "cut")
    assert again.resumed_from == 12
    assert again.history == full.history
    assert (tmp_path / "cut" / "history.csv").read_text() == (
        tmp_path / "full" / "history.csv"
    ).read_text()


def test_divergence_on_a_logged_step_is_a_status_not_a_traceback(tmp_path):
    run = make_run_config(data=DataSpec("identity", n=10), width=50, steps=30, lr=3.0, log_every=1)
    s = train(run, tmp_path).summary
    assert s["status"] == "diverged" and "non-finite loss" in s["reason"]
    rows = read_csv(tmp_path / "history.csv")
    assert rows[-1]["loss"] == "nan" and len(rows) == s["steps_done"] + 1


def test_other_data_with_the_same_flags_does_not_resume(tmp_path):
    from overdeq.data import Dataset, load_dataset

    run = make_run_config(**SMALL, steps=10, checkpoint_every=5)
    ds = load_dataset(run.data)
    first = train(run, tmp_path, dataset=ds)
    (tmp_path / "summary.json").unlink()  # as Snakemake does before rerunning a job
    other = Dataset(X=ds.X, y=ds.y[::-1].copy(), name=ds.name, meta=ds.meta)
    with pytest.raises(ConfigError, match="different configuration"):
        train(run, tmp_path, dataset=other)
    again = train(run, tmp_path, dataset=other, overwrite=True)
    assert again.resumed_from is None
    assert again.summary["initial_loss"] != first.summary["initial_loss"]


def test_provenance_records_every_process_that_worked_on_the_run(tmp_path):
    run = make_run_config(**SMALL, steps=20, checkpoint_every=5)
    train(run, tmp_path, stop_after=7)
    s = train(run, tmp_path).summary
    segs = s["provenance"]["segments"]
    assert [(g["from_step"], g["to_step"]) for g in segs] == [(0, 7), (7, 20)]
    assert s["lambda_star"] > 0 and 0 < s["lambda_0_over_star"] < 1.5


def test_readout_every_thins_the_released_readouts_and_keeps_the_hash_when_unset(tmp_path):
    base = dict(**SMALL, mode="legacy", lr=1e-4, steps=20, log_every=2, legacy_readouts=True)
    assert make_run_config(**base).hash == make_run_config(**base, readout_every=1).hash
    run = make_run_config(**base, readout_every=4)
    assert run.hash != make_run_config(**base).hash
    train(run, tmp_path)
    hist = read_csv(tmp_path / "history.csv")
    read = [int(r["step"]) for r in hist if r.get("lambda_min_legacy") not in (None, "")]
    assert read == [0, 8, 16, 20]  # logs 0, 4, 8 (every 4th) and the last
