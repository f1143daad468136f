"""Fault injection on ``overdeq train`` (docs/reliability.md, "Training runs").

Each test breaks one thing -- a second run on the same folder, an --out that cannot hold a
run, a width that cannot fit, a damaged run file, an option that would do nothing -- and
checks both halves of "no corrupted number reaches the paper": the run ends in a clear error
(what, which file or flag, how to fix it) or in correct behaviour, AND nothing already
computed changed (a snapshot of the run folder before and after).
"""

from __future__ import annotations

import json
import os
import pickle
import random
import re
import runpy
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import filelock
import numpy as np
import pytest
import torch

from overdeq import DataSpec, cli, make_run_config, preflight, train
from overdeq.io import read_csv
from overdeq.preflight import DIMS, LOCK_NAME, OWNER_NAME, run_lock, training_bytes

from workflow_helpers import BIN, REPO, snapshot, workflow_env

# A run of a few seconds at most: 6 rows of the identity, width 16, 6 steps.
SMALL = ["--n", "6", "--width", "16", "--steps", "6", "--log-every", "2"]
SMALL += ["--checkpoint-every", "2", "--threads", "1", "--quiet"]


def small_run(width: int = 16, **knobs):
    """The RunConfig ``overdeq train SMALL`` builds (same hash), for library-level faults."""
    knobs = {"steps": 6, "log_every": 2, "checkpoint_every": 2, **knobs}
    return make_run_config(data=DataSpec(name="identity", n=6), width=width, **knobs)


def run(capsys, *argv) -> tuple[int, str]:
    """``overdeq train ARGV`` in-process -> (exit status, stderr)."""
    capsys.readouterr()
    try:
        code = cli.main(["train", *map(str, argv)])
    except SystemExit as exc:
        code = exc.code
    return code, capsys.readouterr().err


@pytest.fixture
def finished(tmp_path, capsys):
    """A finished small run, made by the command line."""
    out = tmp_path / "run"
    assert run(capsys, *SMALL, "--out", out)[0] == 0
    return out


@pytest.fixture
def interrupted(tmp_path):
    """A small run stopped after 3 of its 6 steps: checkpoint.pt and history.csv, no summary."""
    out = tmp_path / "part"
    train(small_run(), out, stop_after=3)
    assert (out / "checkpoint.pt").is_file() and not (out / "summary.json").exists()
    return out


# ---------------------------------------------------------------- the run folder lock


@contextmanager
def held_by_another(folder: Path, owner: str | None):
    """The lock of ``folder`` held as another run holds it: its own flock, its owner file."""
    lock = filelock.FileLock(folder / LOCK_NAME, timeout=0)
    lock.acquire()
    if owner is not None:
        (folder / OWNER_NAME).write_text(owner)
    try:
        yield
    finally:
        lock.release()
        (folder / OWNER_NAME).unlink(missing_ok=True)
        (folder / LOCK_NAME).unlink(missing_ok=True)


OTHER = json.dumps({"pid": 4242, "host": "node7", "started": time.time()})


@pytest.mark.parametrize("overwrite", [[], ["--overwrite"]], ids=["plain", "overwrite"])
def test_a_run_folder_in_use_is_refused_naming_the_holder(finished, capsys, overwrite):
    before = snapshot(finished)
    with held_by_another(finished, OTHER):
        code, err = run(capsys, *SMALL, "--width", "24", "--out", finished, *overwrite)
    assert code == 2
    assert f"--out {finished} is in use by another overdeq train (pid 4242 on node7" in err
    assert "stop it (kill 4242)" in err and "--overwrite does not take over" in err
    assert snapshot(finished) == before


def test_a_run_records_its_pid_beside_the_lock_while_it_runs(tmp_path):
    out = tmp_path / "run"
    with run_lock(out):
        assert json.loads((out / OWNER_NAME).read_text())["pid"] == os.getpid()
        assert (out / LOCK_NAME).is_file()
    assert not out.exists()  # nothing else was written: no empty run folder left


def test_a_lock_whose_owner_file_is_garbage_still_refuses(finished, capsys):
    with held_by_another(finished, "{not json"):
        code, err = run(capsys, *SMALL, "--out", finished, "--overwrite")
    assert code == 2 and "in use by another overdeq train (a process that has not" in err


def test_a_new_folder_in_use_is_refused_too(tmp_path, capsys):
    out = tmp_path / "run"
    out.mkdir()
    with held_by_another(out, None):
        code, err = run(capsys, *SMALL, "--out", out)
    assert code == 2 and "is in use by another overdeq train" in err


def test_a_killed_runs_lock_files_do_not_block(finished, capsys):
    """flock dies with its process: the files a killed run leaves are no lock."""
    (finished / LOCK_NAME).write_text("")
    (finished / OWNER_NAME).write_text(json.dumps({"pid": 999999, "host": "x", "started": 0}))
    code, err = run(capsys, *SMALL, "--out", finished)
    assert code == 0 and "already holds this run" in err


@pytest.mark.slow
def test_two_overwrite_runs_three_seconds_apart_do_not_mix_the_folder(tmp_path):
    """The issue's case: two --overwrite runs of different widths on one --out."""
    out = tmp_path / "run"
    argv = [str(BIN / "overdeq"), "train", *SMALL, "--out", str(out), "--overwrite"]
    first = subprocess.Popen(
        [*argv, "--width", "64", "--steps", "20000"], env=workflow_env(), stderr=subprocess.DEVNULL
    )
    try:
        for _ in range(600):  # until the first holds the folder
            if (out / OWNER_NAME).is_file():
                break
            time.sleep(0.1)
        time.sleep(3)
        second = subprocess.run(
            [*argv, "--width", "32"], env=workflow_env(), capture_output=True, text=True
        )
    finally:
        first.kill()
        first.wait()
    assert second.returncode == 2
    assert f"is in use by another overdeq train (pid {first.pid}" in second.stderr
    ckpt = out / "checkpoint.pt"
    state = torch.load(ckpt, weights_only=False) if ckpt.exists() else None
    assert state is None or state["params"]["W"].shape == (64, 64)  # the first's, only


def test_overwrite_removes_the_old_run_before_writing_anything(finished):
    """A crash right after --overwrite started must not leave two runs in one folder."""
    old_hash = json.loads((finished / "summary.json").read_text())["config_hash"]
    train(small_run(width=24), finished, overwrite=True, stop_after=1)  # "crashes" at step 1
    assert not (finished / "summary.json").exists()  # the old run's summary is gone
    state = torch.load(finished / "checkpoint.pt", weights_only=False)
    assert state["params"]["W"].shape == (24, 24) and state["config_hash"] != old_hash
    assert [r["step"] for r in read_csv(finished / "history.csv")] == ["0"]  # the new run's


def test_overwrite_of_another_configuration_gives_a_clean_new_run(finished, tmp_path, capsys):
    code, err = run(capsys, *SMALL, "--width", "24", "--out", finished, "--overwrite")
    assert code == 0 and "another configuration" in err and "starting over" in err
    fresh = tmp_path / "fresh"
    assert run(capsys, *SMALL, "--width", "24", "--out", fresh)[0] == 0
    for name in ("history.csv", "spectrum.npz"):
        assert (finished / name).read_bytes() == (fresh / name).read_bytes()


def test_another_configuration_without_overwrite_is_refused(finished, capsys):
    before = snapshot(finished)
    code, err = run(capsys, *SMALL, "--width", "24", "--out", finished)
    assert code == 2 and "already holds a run with a different configuration" in err
    assert "pass --overwrite to replace it" in err and snapshot(finished) == before


# ---------------------------------------------------------------- --out


def test_out_that_is_a_file_is_refused_before_any_work(tmp_path, capsys):
    target = tmp_path / "results.txt"
    target.write_text("keep me")
    code, err = run(capsys, *SMALL, "--out", target)
    assert code == 2 and f"--out {target} is a file, not a folder" in err
    assert target.read_text() == "keep me"


def test_out_under_a_file_is_refused(tmp_path, capsys):
    (tmp_path / "file").write_text("keep me")
    out = tmp_path / "file" / "sub" / "run"
    code, err = run(capsys, *SMALL, "--out", out)
    assert code == 2 and f"{tmp_path / 'file'} is a file, so no folder can be made" in err


def _writable(folder: Path) -> bool:
    try:
        (folder / ".probe").write_text("")
    except OSError:
        return False
    (folder / ".probe").unlink()
    return True


def test_out_on_a_read_only_folder_is_refused_before_calibrating(tmp_path, capsys):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    try:
        if _writable(ro):
            pytest.skip("this user (root?) can write to a chmod 555 folder")
        code, err = run(capsys, *SMALL, "--out", ro / "run")
    finally:
        ro.chmod(0o755)
    assert code == 2 and "cannot be written to (Permission denied)" in err
    assert list(ro.iterdir()) == []


def test_out_on_a_file_system_root_cannot_write_is_refused(capsys):
    """/proc takes no new files, not even from root: a read-only file system for anyone."""
    if _writable(Path("/proc")):
        pytest.skip("/proc is writable here")
    code, err = run(capsys, *SMALL, "--out", "/proc/overdeq-run")
    assert code == 2 and "--out /proc/overdeq-run: its parent /proc cannot be written to" in err


@pytest.mark.parametrize("name", ["checkpoint.pt", "summary.json", "history.csv"])
def test_a_folder_in_place_of_a_run_file_is_refused_before_any_work(tmp_path, capsys, name):
    """Before: trained to the end, then failed writing (all the work lost)."""
    out = tmp_path / "run"
    (out / name).mkdir(parents=True)
    code, err = run(capsys, *SMALL, "--out", out)
    assert code == 2 and f"{out / name} is a folder, but the run writes its {name}" in err
    assert sorted(p.name for p in out.iterdir()) == [name]


# ---------------------------------------------------------------- memory


def test_a_width_that_cannot_fit_is_refused_before_allocating(tmp_path, capsys):
    out = tmp_path / "run"
    code, err = run(capsys, *SMALL, "--width", "10000000", "--out", out)
    assert code == 2
    assert re.search(r"--width 10000000 needs about 4,[0-9]{3},[0-9]{3} GB on cpu", err)
    assert "available memory" in err or "container's limit" in err
    assert "Lower --width (about" in err and "--memory-budget-gb" in err
    assert not out.exists()  # no empty run folder left behind


def test_a_memory_budget_refuses_what_exceeds_it(tmp_path, capsys):
    out = tmp_path / "run"
    code, err = run(capsys, *SMALL, "--width", "2000", "--memory-budget-gb", "0.3", "--out", out)
    assert (
        code == 2 and "needs about 0.39 GB" in err and "--memory-budget-gb 0.3 allows 0.3 GB" in err
    )
    assert not out.exists()
    assert run(capsys, *SMALL, "--memory-budget-gb", "0.3", "--out", out)[0] == 0


def test_the_memory_estimate_grows_with_width_squared_and_precision():
    small, big = training_bytes(40, 40, 1000, "float32"), training_bytes(40, 40, 2000, "float32")
    growth = (big - preflight.RUNTIME) / (small - preflight.RUNTIME)
    assert 3.5 < growth < 4.0  # the m^2 terms dominate
    assert training_bytes(40, 40, 1000, "float64") > small
    # W (m x m floats), its gradient and copies alone exceed 36 m^2 bytes in float32
    assert small > 36 * 1000**2 + preflight.RUNTIME


PEAK = """
import resource, sys, torch
torch.set_num_threads(1)
from overdeq import DataSpec, make_run_config, train
m, precision = int(sys.argv[1]), sys.argv[2]
run = make_run_config(data=DataSpec(name="identity", n=40), width=m, steps=4, log_every=2,
                      precision=precision)
# the resident set now (not the peak so far: importing torch may have peaked above it)
with open("/proc/self/statm") as f:
    base = int(f.read().split()[1]) * resource.getpagesize()
train(run, sys.argv[3])
print((resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - base))
"""


@pytest.mark.slow
@pytest.mark.parametrize("precision", ["float32", "float64"])
def test_the_memory_estimate_bounds_the_measured_peak(tmp_path, precision):
    """Peak resident memory of a real run (Linux ru_maxrss) stays under the estimate."""
    m = 2500
    out = subprocess.run(
        [sys.executable, "-c", PEAK, str(m), precision, str(tmp_path / "run")],
        env=workflow_env(),
        capture_output=True,
        text=True,
        check=True,
    )
    measured = int(out.stdout.split()[-1])
    estimate = training_bytes(40, 40, m, precision)
    assert 0.3 * estimate < measured < estimate, (measured, estimate)


# ---------------------------------------------------------------- checkpoint.pt


def _expect_corrupt(err: str, ckpt: Path, what: str) -> None:
    assert f"{ckpt} is corrupt: {what}" in err, err
    assert f"mv {ckpt} {ckpt}.bad" in err and "--overwrite" in err
    assert "Nothing was changed" in err


@pytest.mark.parametrize(
    "damage, what",
    [
        (lambda b: b[: len(b) // 2], "torch cannot read it"),
        (lambda b: b"", "it is empty (0 bytes)"),
        (lambda b: random.Random(0).randbytes(len(b)), "torch cannot read it"),
        (lambda b: pickle.dumps([1, 2, 3]), "torch cannot read it"),
    ],
    ids=["truncated", "empty", "garbage", "a-pickle"],
)
def test_a_corrupt_checkpoint_is_refused_with_the_way_out(interrupted, capsys, damage, what):
    ckpt = interrupted / "checkpoint.pt"
    ckpt.write_bytes(damage(ckpt.read_bytes()))
    before = snapshot(interrupted)
    code, err = run(capsys, *SMALL, "--out", interrupted)
    assert code == 2
    _expect_corrupt(err, ckpt, what)
    assert snapshot(interrupted) == before


def test_a_checkpoint_holding_no_dict_is_refused(interrupted, capsys):
    ckpt = interrupted / "checkpoint.pt"
    torch.save([1, 2, 3], ckpt)
    code, err = run(capsys, *SMALL, "--out", interrupted)
    assert code == 2
    _expect_corrupt(err, ckpt, "it holds a list, not an overdeq checkpoint")


@pytest.mark.parametrize(
    "edit, what",
    [
        (lambda s: s["params"].update(W=torch.zeros(8, 8)), "parameter W has shape (8, 8) there"),
        (lambda s: s.pop("history"), "it lacks ['history']"),
        (lambda s: s["params"].pop("U"), "its parameters are ['W', 'a']"),
    ],
    ids=["wrong-shape", "missing-key", "missing-parameter"],
)
def test_a_checkpoint_that_does_not_fit_the_run_is_refused(interrupted, capsys, edit, what):
    ckpt = interrupted / "checkpoint.pt"
    state = torch.load(ckpt, weights_only=False)
    edit(state)
    torch.save(state, ckpt)
    before = snapshot(interrupted)
    code, err = run(capsys, *SMALL, "--out", interrupted)
    assert code == 2 and f"{ckpt} does not fit this run ({what}" in err, err
    assert f"mv {ckpt} {ckpt}.bad" in err and snapshot(interrupted) == before


def test_overwrite_starts_over_from_a_corrupt_checkpoint(interrupted, tmp_path, capsys):
    ckpt = interrupted / "checkpoint.pt"
    ckpt.write_bytes(ckpt.read_bytes()[:100])
    code, err = run(capsys, *SMALL, "--out", interrupted, "--overwrite")
    assert code == 0 and "is corrupt" in err and "starting over" in err
    fresh = tmp_path / "fresh"
    assert run(capsys, *SMALL, "--out", fresh)[0] == 0
    assert (interrupted / "history.csv").read_bytes() == (fresh / "history.csv").read_bytes()


def test_moving_a_corrupt_checkpoint_aside_restarts_the_run(interrupted, tmp_path, capsys):
    """The way out the message offers, taken: the run starts over and ends as a fresh one."""
    ckpt = interrupted / "checkpoint.pt"
    ckpt.write_bytes(b"")
    ckpt.rename(ckpt.with_name("checkpoint.pt.bad"))
    assert run(capsys, *SMALL, "--out", interrupted)[0] == 0
    fresh = tmp_path / "fresh"
    assert run(capsys, *SMALL, "--out", fresh)[0] == 0
    assert (interrupted / "history.csv").read_bytes() == (fresh / "history.csv").read_bytes()


def test_a_checkpoint_of_another_configuration_is_refused(interrupted, capsys):
    before = snapshot(interrupted)
    code, err = run(capsys, *SMALL, "--width", "24", "--out", interrupted)
    assert code == 2 and "was written by a different configuration" in err
    assert snapshot(interrupted) == before


# ---------------------------------------------------------------- history.csv, summary.json


def test_a_cut_history_of_an_unfinished_run_is_rewritten_on_resume(interrupted, tmp_path, capsys):
    """Resume reads the history from the checkpoint, never from history.csv."""
    hist = interrupted / "history.csv"
    hist.write_bytes(hist.read_bytes()[:-30])
    assert run(capsys, *SMALL, "--out", interrupted)[0] == 0
    fresh = tmp_path / "fresh"
    assert run(capsys, *SMALL, "--out", fresh)[0] == 0
    assert hist.read_bytes() == (fresh / "history.csv").read_bytes()
    summary = json.loads((interrupted / "summary.json").read_text())
    assert summary["provenance"]["resumed_from_step"] == 3


def test_a_cut_summary_of_a_finished_run_is_rebuilt_from_the_checkpoint(finished, capsys):
    summary = finished / "summary.json"
    old = json.loads(summary.read_text())
    history = (finished / "history.csv").read_bytes()
    summary.write_bytes(summary.read_bytes()[:200])
    assert run(capsys, *SMALL, "--out", finished)[0] == 0
    new = json.loads(summary.read_text())
    assert new["final_loss"] == old["final_loss"] and new["config_hash"] == old["config_hash"]
    assert (finished / "history.csv").read_bytes() == history


def test_stale_temporary_files_of_a_killed_write_are_removed(interrupted, capsys):
    (interrupted / ".checkpoint.pt.abc123.tmp").write_bytes(b"half a checkpoint")
    assert run(capsys, *SMALL, "--out", interrupted)[0] == 0
    assert not list(interrupted.glob(".*.tmp"))


# ---------------------------------------------------------------- options that do nothing


@pytest.mark.parametrize(
    "argv, expected",
    [
        (["--mode", "legacy", "--warm-start"], "--warm-start does nothing with --gradient released"),
        (["--data", "digits", "--d", "5"], "--d does nothing for --data digits"),
        (["--mode", "legacy", "--allow-expansive"], "--allow-expansive does nothing in --mode legacy"),
        (["--classes", "3", "5"], "--classes does nothing for --data identity"),
        (["--data-root", "elsewhere"], "--data-root does nothing for --data identity"),
        (["--gpu-wait", "10"], "--gpu-wait does nothing with --device cpu"),
    ],
    ids=["warm-start-legacy", "d-digits", "allow-expansive-legacy", "classes", "data-root", "gpu-wait"],
)  # fmt: skip
def test_an_option_that_does_nothing_is_refused(tmp_path, capsys, argv, expected):
    out = tmp_path / "run"
    code, err = run(capsys, *SMALL, *argv, "--out", out)
    assert code == 2 and expected in err and "drop it" in err
    assert not out.exists()


@pytest.mark.parametrize(
    "argv, expected",
    [
        (["--d", "6"], "--d does nothing with --data-file"),
        (["--data", "digits"], "--data does nothing with --data-file"),
        (["--classes", "3", "5"], "--classes does nothing with --data-file"),
        (["--labels", "pm1"], "--labels does nothing with --data-file"),
        (["--data-root", "elsewhere"], "--data-root does nothing with --data-file"),
    ],
    ids=["d", "data", "classes", "labels", "data-root"],
)
def test_an_option_the_data_file_overrides_is_refused(tmp_path, capsys, argv, expected):
    from overdeq.data import load_dataset

    data = tmp_path / "data.npz"
    load_dataset(DataSpec(name="identity", n=6)).save_npz(data)
    code, err = run(capsys, *SMALL, "--data-file", data, *argv, "--out", tmp_path / "run")
    assert code == 2 and expected in err


def test_warm_start_with_the_implicit_gradient_in_legacy_mode_is_accepted(tmp_path, capsys):
    argv = ["--mode", "legacy", "--gradient", "implicit", "--warm-start", "--lr", "1e-3"]
    assert run(capsys, *SMALL, *argv, "--out", tmp_path / "run")[0] == 0


def test_paper_mode_with_a_width_scale_blames_the_width_scale(tmp_path, capsys):
    code, err = run(capsys, *SMALL, "--width-scale", "10", "--width", "1000", "--out", tmp_path)
    assert code == 2 and err.count("\n") == 1
    assert "--width-scale 10 at --width 1000 makes the layer map" in err
    assert "2*sigma_w*sqrt(m/10) = 8.00 >= 1 (--sigma-w 0.4 is fine" in err
    assert "--mode legacy" in err and "--allow-expansive" in err


def test_paper_mode_with_too_large_a_sigma_w_still_blames_sigma_w(tmp_path, capsys):
    code, err = run(capsys, *SMALL, "--sigma-w", "0.6", "--out", tmp_path / "run")
    assert code == 2 and "--sigma-w 0.6 gives s*||W||_2 ~= 2*sigma_w = 1.20 >= 1" in err


# ---------------------------------------------------------------- every flag, a bad value


BAD = [
    (["--width", "0"], "--width must be >= 1, got 0"),
    (["--width", "wide"], "--width must be an integer, got 'wide'"),
    (["--n", "0"], "--n must be >= 1"),
    (["--steps", "-1"], "--steps must be >= 0, got -1"),
    (["--steps", "many"], "--steps must be an integer, got 'many'"),
    (["--lr", "0"], "--lr must be a positive finite number"),
    (["--lr", "nan"], "--lr must be a positive finite number"),
    (["--lr-scale", "-1"], "--lr-scale must be a positive finite number"),
    (["--lr", "1", "--lr-scale", "1"], "argument --lr-scale: not allowed with argument --lr"),
    (["--sigma-w", "0"], "--sigma-w must be a positive finite number"),
    (["--sigma-u", "inf"], "--sigma-u must be a positive finite number"),
    (["--sigma-a", "x"], "--sigma-a must be a number, got 'x'"),
    (["--width-scale", "0"], "--width-scale must be >= 1"),
    (["--tol", "0"], "--tol must be a positive finite number"),
    (["--max-iter", "0"], "--max-iter must be >= 1"),
    (["--patience", "0"], "--patience must be >= 1"),
    (["--log-every", "0"], "--log-every must be >= 1"),
    (["--audit-every", "-1"], "--audit-every must be >= 0"),
    (["--power-iters", "0"], "--power-iters must be >= 1"),
    (["--checkpoint-every", "0"], "--checkpoint-every must be >= 1"),
    (["--precision", "fp8"], "argument --precision: invalid choice: 'fp8'"),
    (["--solver", "newton"], "argument --solver: invalid choice: 'newton'"),
    (["--loss", "l1"], "argument --loss: invalid choice: 'l1'"),
    (["--gradient", "exact"], "argument --gradient: invalid choice: 'exact'"),
    (["--mode", "fast"], "argument --mode: invalid choice: 'fast'"),
    (["--data", "imagenet"], "argument --data: invalid choice: 'imagenet'"),
    (["--labels", "onehot"], "argument --labels: invalid choice: 'onehot'"),
    (["--device", "tpu"], "--device 'tpu' is not a device"),
    (["--device", "cuda:7"], "--device cuda:7"),
    (["--threads", "0"], "--threads must be >= 1"),
    (["--gpu-wait", "0"], "--gpu-wait must be a positive finite number"),
    (["--memory-budget-gb", "-2"], "--memory-budget-gb must be a positive finite number"),
    (["--tag", "novalue"], "--tag expects KEY=VALUE, got 'novalue'"),
    (["--tag", "k=1", "--tag", "k=2"], "--tag k is given twice ('1' and '2')"),
    (["--d", "3"], "identity data has at most d=3 distinct rows, but n=6"),
    (["--data", "gaussian"], "gaussian data needs an input dimension: pass --d"),
    (["--data", "digits", "--n", "400"], "lower --n"),
    (["--data", "digits", "--classes", "0", "0"], "--classes [0, 0] repeats a class"),
    (["--data", "digits", "--classes", "0", "11"], "classes [11] do not exist"),
    (["--labels", "pm1"], "labels='pm1' needs a data set with classes"),
    (["--data-file", "missing.npz", "--n", "6"], "prepared data file missing.npz does not exist"),
]


@pytest.mark.parametrize("argv, expected", BAD, ids=[" ".join(a) for a, _ in BAD])
def test_a_bad_flag_value_names_the_flag(tmp_path, capsys, monkeypatch, argv, expected):
    monkeypatch.chdir(tmp_path)
    code, err = run(capsys, *SMALL, *argv, "--out", "run")
    assert code == 2 and expected in err, err
    assert "Traceback" not in err and not (tmp_path / "run").exists()


# ---------------------------------------------------------------- the workflow's config check


CHECK = REPO / "workflow" / "rules" / "config_check.smk"


def config_check(config: dict) -> tuple[dict, str | None]:
    """Run the workflow's config check on ``config``: (its functions, its message or None)."""
    from types import SimpleNamespace

    from snakemake.exceptions import WorkflowError

    fake = SimpleNamespace(basedir=str(REPO), configfiles=["config/config.yaml"])
    try:
        names = runpy.run_path(str(CHECK), init_globals={"config": config, "workflow": fake})
    except WorkflowError as exc:
        return {}, str(exc)
    return names, None


def default_config() -> dict:
    import yaml

    return yaml.safe_load((REPO / "config" / "config.yaml").read_text())


def test_the_config_check_estimates_memory_as_overdeq_train_does():
    names, message = config_check(default_config())
    assert message is None
    for n, d, m, precision in [(40, 40, 640, "float32"), (356, 64, 5000, "float64")]:
        assert names["training_bytes"](n, d, m, precision) == training_bytes(n, d, m, precision)
    assert names["DIMS"] == DIMS
    for nbytes in (4.8e15, 21.3e9, 2e7):
        assert names["_gb"](nbytes) == preflight._gb(nbytes)


def test_the_config_check_refuses_a_width_over_the_memory_budget():
    config = default_config()
    config["compute"]["memory_budget_gb"] = 1
    assert config_check(config)[1] is None  # the default grid fits in 1 GB
    config["training"]["grids"]["main"]["widths"].append(100000)
    message = config_check(config)[1]
    assert "nothing was run" in message
    assert "training.grids.main.widths: width 100000 needs about 481 GB" in message
    assert (
        "GB for identity (n = 40, d = 40, float32), more than compute.memory_budget_gb" in message
    )


@pytest.mark.parametrize(
    "edit, expected",
    [
        (
            lambda c: c["training"]["settings"]["released"].update(warm_start=True),
            "training.settings.released.warm_start: does nothing with the released gradient",
        ),
        (
            lambda c: c["training"]["settings"]["released"].update(allow_expansive=True),
            "training.settings.released.allow_expansive: does nothing in legacy mode",
        ),
        (
            lambda c: c["training"]["datasets"]["digits"].update(d=5),
            "training.datasets.digits.d: does nothing for digits",
        ),
    ],
    ids=["warm-start", "allow-expansive", "d"],
)
def test_the_config_check_refuses_a_setting_key_that_does_nothing(edit, expected):
    config = default_config()
    edit(config)
    message = config_check(config)[1]
    assert message is not None and expected in message


# ---------------------------------------------------------------- spectrum.npz


@pytest.mark.parametrize(
    "damage", [lambda p: p.write_bytes(p.read_bytes()[:50]), Path.unlink], ids=["cut", "gone"]
)
def test_a_damaged_spectrum_of_a_finished_run_is_rewritten_from_the_checkpoint(
    finished, capsys, damage
):
    """Before: "already complete", the damaged spectrum kept (the aggregate refused it)."""
    spectrum = finished / "spectrum.npz"
    with np.load(spectrum) as z:
        evals, coeffs = z["evals"], z["coeffs"]
    history = (finished / "history.csv").read_bytes()
    damage(spectrum)
    code, err = run(capsys, *SMALL, "--out", finished)
    assert code == 0 and "already holds this run" not in err
    with np.load(spectrum) as z:
        assert np.array_equal(z["evals"], evals) and np.array_equal(z["coeffs"], coeffs)
    assert (finished / "history.csv").read_bytes() == history  # not retrained
