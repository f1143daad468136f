"""The workflow plans the random-DEQ jobs and their artefacts (a dry run, a few seconds)."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import yaml

from workflow_helpers import BIN, workflow_env

ROOT = Path(__file__).resolve().parents[1]
TARGETS = [
    "figures/fig_kernel_limit.pdf",
    "figures/fig_init_condition.pdf",
    "figures/fig_wellposed.pdf",
    "paper/generated/tab_kernels.tex",
]
# rule -> jobs: one rule with an {experiment} wildcard runs E1, E2, E3; E10 has its own
RULES = {
    "random_deq": 3,
    "random_deq_e10": 1,
    "fig_kernel_limit": 1,
    "fig_init_condition": 1,
    "fig_wellposed": 1,
    "tab_kernels": 1,
}


def dry_run(*extra: str) -> str:
    # targets before the options: --configfile takes several values
    proc = subprocess.run(
        [str(BIN / "snakemake"), *TARGETS, "-n", "-p", "--forceall", "--cores", "1", *extra],
        cwd=ROOT,
        env=workflow_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc.stdout + proc.stderr


def test_dry_run_plans_every_random_deq_job_once():
    out = dry_run()
    for rule, jobs in RULES.items():
        assert len(re.findall(rf"^rule {rule}:$|^localrule {rule}:$", out, re.M)) == jobs, rule
    for experiment in ("e1", "e2", "e3"):
        assert f"overdeq random-deq {experiment} " in out
    # the grid reaches the job through params: the command carries the config's widths
    assert '"widths":[125,250,500,1000,2000]' in out
    assert "--device cpu" in out


def test_paper_tier_runs_the_jobs_on_the_gpu():
    out = dry_run("--configfile", "config/paper.yaml")
    assert out.count("--device cuda") == 3  # E1, E2, E3; E10 computes kernels on the CPU
    assert '"widths":[500,1000,2000,4000,8000,16000]' in out


def test_the_slurm_profile_sizes_each_experiment_of_the_one_rule(tmp_path):
    """profiles/slurm addresses E1, E2, E3 of rule random_deq through wildcards.experiment."""
    profile = yaml.safe_load((ROOT / "profiles/slurm/config.yaml").read_text())
    local = tmp_path / "profile"  # its per-rule resources, without the SLURM executor
    local.mkdir()
    (local / "config.yaml").write_text(yaml.safe_dump({"set-resources": profile["set-resources"]}))
    out = dry_run("--workflow-profile", str(local))
    mem = {
        m.group(1): int(m.group(2))
        for m in re.finditer(
            r"^rule random_deq:$(?:\n    .*)*?\n    wildcards: experiment=(\w+)"
            r"\n    resources: .*?mem_mb=(\d+)",
            out,
            re.M,
        )
    }
    assert mem == {"e1": 32000, "e2": 32000, "e3": 16000}, out[-3000:]
