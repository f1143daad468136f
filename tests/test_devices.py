"""``--device cuda:auto``: concurrent processes claim distinct GPUs; the rest wait.

No GPU is needed: the allocator takes the device count as an argument, so these tests fake
two GPUs and check the defining property with real processes and real file locks.
"""

import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from overdeq import devices
from overdeq.cli import main
from overdeq.devices import GpuUnavailable, claim_gpu, resolve_device, visible_gpus

# a process that claims one of two fake GPUs, reports it, then holds it until killed
_CLAIMANT = textwrap.dedent("""
    import json, sys, time
    from overdeq.devices import claim_gpu
    claim = claim_gpu(device_count=2, folder=sys.argv[1], poll=0.05, timeout=60)
    print(json.dumps({"index": claim.index, "gpu_id": claim.gpu_id}), flush=True)
    time.sleep(600)
""")


def _start(folder, env=None):
    return subprocess.Popen(
        [sys.executable, "-c", _CLAIMANT, str(folder)],
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={**os.environ, **(env or {})},
    )


def _claimed(proc, timeout=30):
    """The claim a claimant reported, or None if it reports nothing within ``timeout``."""
    import selectors

    with selectors.DefaultSelector() as sel:
        sel.register(proc.stdout, selectors.EVENT_READ)
        if not sel.select(timeout):
            return None
    return json.loads(proc.stdout.readline())


def _stderr_line(proc, timeout=60):
    """The first line a process writes to stderr, waiting up to ``timeout`` seconds."""
    import selectors

    with selectors.DefaultSelector() as sel:
        sel.register(proc.stderr, selectors.EVENT_READ)
        if not sel.select(timeout):
            return ""
    return proc.stderr.readline()


@pytest.fixture
def procs():
    started = []
    yield started
    for p in started:
        p.kill()
        p.wait()


def test_concurrent_processes_get_distinct_gpus_and_a_third_waits(tmp_path, procs):
    a, b = _start(tmp_path), _start(tmp_path)
    procs += [a, b]
    got = [_claimed(a), _claimed(b)]
    assert sorted(c["index"] for c in got) == [0, 1]
    c = _start(tmp_path)
    procs.append(c)
    # both GPUs held: the third says it waits (however long its start-up takes on a busy
    # machine) and claims nothing
    assert "all 2 visible GPUs are busy" in _stderr_line(c)
    assert _claimed(c, timeout=0.5) is None
    a.send_signal(signal.SIGKILL)  # the kernel drops a killed holder's lock
    a.wait()
    assert _claimed(c) == got[0]  # ... and the waiting process gets exactly that GPU


def test_gpus_are_told_apart_by_their_physical_id(tmp_path, procs):
    """Processes seeing different subsets (e.g. SLURM jobs without locks per job) do not
    block each other: GPU 3 seen as cuda:0 is not GPU 5 seen as cuda:0."""
    a = _start(tmp_path, {"CUDA_VISIBLE_DEVICES": "3"})
    b = _start(tmp_path, {"CUDA_VISIBLE_DEVICES": "5,3"})
    procs += [a, b]
    assert _claimed(a) == {"index": 0, "gpu_id": "3"}
    assert _claimed(b) == {"index": 0, "gpu_id": "5"}


def test_all_busy_times_out_with_a_clear_error_and_a_release_frees_one(tmp_path):
    first = claim_gpu(device_count=2, folder=tmp_path)
    second = claim_gpu(device_count=2, folder=tmp_path)
    assert {first.device, second.device} == {"cuda:0", "cuda:1"}
    lines = []
    t0 = time.monotonic()
    with pytest.raises(GpuUnavailable, match=r"all 2 visible GPUs stayed busy") as exc:
        claim_gpu(device_count=2, folder=tmp_path, timeout=0.3, poll=0.05, log=lines.append)
    assert 0.3 <= time.monotonic() - t0 < 5
    assert "--resources gpu=2" in str(exc.value) and f"pid {os.getpid()}" in str(exc.value)
    assert len(lines) == 1 and "waiting" in lines[0]
    second.release()
    third = claim_gpu(device_count=2, folder=tmp_path, timeout=1)
    assert third.device == second.device
    first.release()
    third.release()


def test_no_visible_gpu_says_what_to_do(tmp_path):
    with pytest.raises(GpuUnavailable, match="--device cpu"):
        claim_gpu(device_count=0, folder=tmp_path)


@pytest.mark.parametrize(
    "env, count, expected",
    [
        ({}, 2, ["0", "1"]),
        ({"CUDA_VISIBLE_DEVICES": "3,1"}, 2, ["3", "1"]),
        ({"CUDA_VISIBLE_DEVICES": "GPU-8f1c,GPU-77aa"}, 2, ["GPU-8f1c", "GPU-77aa"]),
        ({"CUDA_VISIBLE_DEVICES": "2,-1,4"}, 1, ["2"]),  # CUDA stops at the invalid entry
        ({"CUDA_VISIBLE_DEVICES": ""}, 0, []),
    ],
)
def test_visible_gpus_follow_cuda_visible_devices(env, count, expected):
    assert visible_gpus(count, env=env) == expected


def test_locks_are_per_user_and_per_slurm_job():
    assert devices.lock_dir({}).name == f"overdeq-gpu-locks-{os.getuid()}"
    assert devices.lock_dir({"SLURM_JOB_ID": "42"}).name.endswith("-slurm42")
    assert str(devices.lock_dir({"OVERDEQ_GPU_LOCK_DIR": "/x/y"})) == "/x/y"


def test_other_devices_pass_through_untouched():
    for device in ("cpu", "cuda", "cuda:1"):
        assert resolve_device(device) == device


def test_train_with_cuda_auto_and_no_gpu_fails_before_any_work(tmp_path, capsys, monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "device_count", lambda: 0)
    with pytest.raises(SystemExit) as exc:
        main(
            [
                "train",
                "--device",
                "cuda:auto",
                "--n",
                "10",
                "--width",
                "40",
                "--steps",
                "5",
                "--out",
                str(tmp_path / "run"),
            ]
        )
    assert exc.value.code == 2
    assert "cuda:auto" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()
