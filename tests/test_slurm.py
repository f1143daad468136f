"""The workflow on a real SLURM cluster, through the executor plugin and the slurm profile.

A single-node cluster (tools/slurm/cluster.sh: munged, slurmctld and slurmd, all state in a
temporary folder) runs the tiny tier (tests/workflow/tiny.yaml) to paper/main.pdf with
``--workflow-profile profiles/slurm``, in a scratch copy of the repository. While
it runs, one training job is cancelled with scancel after its first checkpoint; the
profile's retries resubmit it and it must resume from that checkpoint. The training results
must equal those of a local run of the same tier, bit for bit.

Opt-in with --run-slurm; needs root on Debian (installs slurm-wlm and munge when missing).
"""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from workflow_helpers import REPO, scratch_repo, workflow_env

pytestmark = pytest.mark.slurm

CLUSTER = REPO / "tools" / "slurm" / "cluster.sh"
TINY = REPO / "tests" / "workflow" / "tiny.yaml"
PROFILE = "profiles/slurm"
DAEMONS = ("munged", "slurmctld", "slurmd", "slurmstepd")
# the training run that is cancelled mid-run: (data set, setting, width, seed)
KILLED = ("identity", "calibrated", 320, 0)
LOCAL_RULES_SEEN = ("aggregate_training", "fig_loss", "paper_values", "paper")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _alive(pid: int) -> bool:
    """Running and not a zombie (PID 1 may reap the stopped daemons late)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] not in ("Z", "X")


def _daemons_of(state: Path) -> list[str]:
    """Live munge/SLURM processes that belong to the cluster in ``state``."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            comm = (proc / "comm").read_text().strip()
            if comm not in DAEMONS:
                continue
            text = (proc / "cmdline").read_bytes() + (proc / "environ").read_bytes()
        except OSError:
            continue
        if str(state).encode() in text and _alive(int(proc.name)):
            found.append(f"{comm} (pid {proc.name})")
    return found


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """A running single-node cluster; every daemon it started is stopped afterwards."""
    if os.geteuid() != 0 or not sys.platform.startswith("linux"):
        pytest.skip("the SLURM test needs root on Linux (slurmd runs as root)")
    try:
        import snakemake_executor_plugin_slurm  # noqa: F401
    except ImportError:
        pytest.fail(
            "snakemake-executor-plugin-slurm is missing: run tools/setup.sh (it "
            "installs the `slurm` extra; the plugin needs Python >= 3.11, this is "
            f"{sys.version.split()[0]})"
        )
    subprocess.run(["bash", str(CLUSTER), "install"], check=True)
    profile = yaml.safe_load((REPO / PROFILE / "config.yaml").read_text())
    partition = profile["default-resources"]["slurm_partition"]
    state = tmp_path_factory.mktemp("slurm", numbered=True).resolve()
    env = {
        **os.environ,
        "SLURM_PARTITION": partition,
        "SLURM_CTLD_PORT": str(_free_port()),
        "SLURM_SLURMD_PORT": str(_free_port()),
    }
    pids: dict[str, int] = {}
    started = time.monotonic()
    try:
        subprocess.run(
            ["bash", str(CLUSTER), "start", str(state)], env=env, check=True, timeout=120
        )
        pids.update(
            {
                name: int((state / "run" / f"{name}.pid").read_text())
                for name in ("munged", "slurmctld", "slurmd")
            }
        )
        print(f"cluster started in {time.monotonic() - started:.1f} s")
        yield {"conf": state / "slurm.conf", "state": state, "partition": partition}
    finally:
        t0 = time.monotonic()
        subprocess.run(["bash", str(CLUSTER), "stop", str(state)], env=env, timeout=120)
        print(f"cluster stopped in {time.monotonic() - t0:.1f} s")
        left = _daemons_of(state)
        left += [f"{name} (pid {pid})" for name, pid in pids.items() if _alive(pid)]
        assert not left, f"daemons of the test cluster still running: {sorted(set(left))}"
        conf_link = Path("/etc/slurm/slurm.conf")
        assert not (conf_link.is_symlink() and str(state) in os.readlink(conf_link))


def _training(repo: Path, tier: str) -> dict[str, tuple[bytes, str, dict]]:
    """run dir -> (history.csv bytes, summary without provenance as JSON, provenance)."""
    out = {}
    for summary in sorted((repo / "results" / tier / "train").rglob("summary.json")):
        s = json.loads(summary.read_text())
        prov = s.pop("provenance")
        key = str(summary.parent.relative_to(repo))
        out[key] = (
            (summary.parent / "history.csv").read_bytes(),
            json.dumps(s, sort_keys=True),
            prov,
        )  # JSON: NaN compares equal to NaN
    return out


def _wait_for(predicate, timeout: float, what: str, proc: subprocess.Popen, log: Path):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        if proc.poll() is not None:
            pytest.fail(
                f"snakemake ended (exit {proc.returncode}) before {what}:\n"
                + log.read_text()[-4000:]
            )
        time.sleep(0.05)
    proc.kill()
    pytest.fail(f"timed out after {timeout} s waiting for {what}:\n" + log.read_text()[-4000:])


def _squeue(conf: Path) -> list[tuple[str, str, str]]:
    """(job id, state, comment) of every job the cluster knows, finished ones included."""
    out = subprocess.run(
        ["squeue", "-h", "--states=all", "-o", "%i|%T|%k"],
        env=workflow_env({"SLURM_CONF": str(conf)}),
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return [tuple(line.split("|", 2)) for line in out.splitlines()]


def test_workflow_on_slurm_matches_a_local_run_and_survives_scancel(cluster, tmp_path):
    tiny = yaml.safe_load(TINY.read_text())
    tier = tiny["tier"]
    dataset, setting, width, seed = KILLED
    killed_run = f"results/{tier}/train/{dataset}/{setting}/m{width}/seed{seed}"
    killed_comment = f"rule_train_wildcards_{dataset}_{setting}_{width}_{seed}"
    timings = {}

    # 1. the reference: a local run of the tiny tier
    local = scratch_repo(tmp_path / "local", TINY)
    t0 = time.monotonic()
    done = subprocess.run(
        ["snakemake", "--cores", "2"],
        cwd=local,
        env=workflow_env(),
        capture_output=True,
        text=True,
        timeout=600,
    )
    timings["local run"] = time.monotonic() - t0
    assert done.returncode == 0, done.stderr[-4000:]
    reference = _training(local, tier)
    assert killed_run in reference and (local / "paper" / "main.pdf").is_file()

    # 2. the same tier through SLURM, with fast status polls (the profile's are for real
    # clusters); one training job is cancelled once its first checkpoint is written
    repo = scratch_repo(tmp_path / "slurm", TINY)
    log = tmp_path / "snakemake-slurm.log"
    env = workflow_env({"SLURM_CONF": str(cluster["conf"])})
    cmd = [
        "snakemake",
        "--workflow-profile",
        PROFILE,
        "--slurm-init-seconds-before-status-checks",
        "1",
        "--seconds-between-status-checks",
        "1",
    ]
    run_dir = repo / killed_run
    t0 = time.monotonic()
    with open(log, "w") as fh:
        proc = subprocess.Popen(cmd, cwd=repo, env=env, stdout=fh, stderr=subprocess.STDOUT)
    try:
        _wait_for(
            lambda: (run_dir / "checkpoint.pt").is_file(),
            300,
            "the first checkpoint of the training job",
            proc,
            log,
        )

        def running_job():
            return next(
                (
                    jid
                    for jid, st, comment in _squeue(cluster["conf"])
                    if st == "RUNNING" and comment == killed_comment
                ),
                None,
            )

        killed = _wait_for(running_job, 30, "the training job in squeue", proc, log)
        subprocess.run(["scancel", killed], env=env, check=True)
        timings["scancel after"] = time.monotonic() - t0
        proc.wait(timeout=600)
    finally:
        if proc.poll() is None:
            proc.terminate()
            proc.wait(timeout=60)
    timings["slurm run"] = time.monotonic() - t0
    text = log.read_text()
    assert proc.returncode == 0, text[-6000:]

    # every compute job went through sbatch, the cheap steps ran locally
    submitted = re.findall(r"submitted with SLURM jobid (\d+) \(log: .*?/rule_(\w+?)/", text)
    rules = [rule for _, rule in submitted]
    assert rules.count("train") == len(reference) + 1  # one resubmission
    assert "prepare_data" in rules
    for rule in LOCAL_RULES_SEEN:
        assert rule not in rules and f"localrule {rule}:" in text
    # the cancelled job was reported as such and resubmitted
    assert f"SLURM-job '{killed}' failed, SLURM status is: 'CANCELLED'" in text
    assert "Trying to restart job" in text
    # the profile's resources reached sbatch, and a CPU job asked for no GPU
    train_jobs = [jid for jid, rule in submitted if rule == "train"]
    info = subprocess.run(
        ["scontrol", "show", "job", train_jobs[0]],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    mem = yaml.safe_load((repo / PROFILE / "config.yaml").read_text())["set-resources"]["train"][
        "mem_mb"
    ]
    assert f"MinMemoryNode={mem}M" in info and f"Partition={cluster['partition']}" in info
    assert "TresPerJob" not in info and "gpu" not in info.split("Command=")[0].lower()

    # the same numbers as the local run; the cancelled run resumed from its checkpoint
    results = _training(repo, tier)
    assert results.keys() == reference.keys()
    for run, (history, summary, prov) in results.items():
        assert history == reference[run][0], run
        assert summary == reference[run][1], run
        resumed = prov["resumed_from_step"]
        if run == killed_run:
            steps = tiny["training"]["settings"][setting]["steps"]
            assert resumed and 0 < resumed < steps  # cancelled mid-run, resumed, not redone
            assert resumed % tiny["training"]["checkpoint_every"] == 0
        else:
            assert resumed is None, run
    assert (repo / "paper" / "main.pdf").is_file()
    print("timings: " + ", ".join(f"{k} {v:.1f} s" for k, v in timings.items()))
