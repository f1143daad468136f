"""The workflow plans the random-DEQ jobs and their artefacts (a dry run, a few seconds)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SNAKEMAKE = Path(sys.executable).parent / "snakemake"
TARGETS = [
    "figures/fig_kernel_limit.pdf",
    "figures/fig_init_condition.pdf",
    "figures/fig_wellposed.pdf",
    "paper/generated/tab_kernels.tex",
]
RULES = [
    "random_deq_e1",
    "random_deq_e2",
    "random_deq_e3",
    "random_deq_e10",
    "fig_kernel_limit",
    "fig_init_condition",
    "fig_wellposed",
    "tab_kernels",
]


def dry_run(*extra: str) -> str:
    env = {**os.environ, "PATH": f"{SNAKEMAKE.parent}{os.pathsep}{os.environ['PATH']}"}
    # targets before the options: --configfile takes several values
    proc = subprocess.run(
        [str(SNAKEMAKE), *TARGETS, "-n", "-p", "--forceall", "--cores", "1", *extra],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc.stdout + proc.stderr


def test_dry_run_plans_every_random_deq_rule_once():
    out = dry_run()
    for rule in RULES:
        assert len(re.findall(rf"^rule {rule}:$|^localrule {rule}:$", out, re.M)) == 1, rule
    # the grid reaches the job through params: the command carries the config's widths
    assert '"widths":[125,250,500,1000,2000]' in out
    assert "--device cpu" in out


def test_paper_tier_runs_the_jobs_on_the_gpu():
    out = dry_run("--configfile", "config/paper.yaml")
    assert out.count("--device cuda") == 3  # E1, E2, E3; E10 computes kernels on the CPU
    assert '"widths":[500,1000,2000,4000,8000,16000]' in out
