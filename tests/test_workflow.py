"""The workflow itself: lint, dry runs of both tiers, the schema against the library, and
(slow) a real run of the tiny tier to the PDF, the arXiv bundle, incremental rebuilds and
the HTML report read in headless Chromium."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys

import pytest
import yaml

from overdeq.cli import build_parser
from overdeq.config import LOSSES, MODES, PRECISIONS, RUN_OPTIONS
from overdeq.data import DATASETS
from overdeq.solvers import SOLVERS

from report_checks import assert_workflow_report, read_report, require_chromium
from workflow_helpers import REPO, run_snakemake, scratch_repo

TINY = REPO / "tests" / "workflow" / "tiny.yaml"


snakemake = run_snakemake


ENV_LINT = "Specify a conda environment or container for each rule."


def test_lint_is_clean_but_for_the_deliberate_one():
    """`snakemake --lint` finds nothing but, per rule, the lack of a conda environment or
    container: by design, every rule runs in the locked venv (requirements.lock), and
    `--sdm conda` is refused (test below). Any other lint fails this test. (Snakemake 9's
    command line ignores `--lint json`, so the text is parsed.)"""
    out = snakemake("--lint")
    text = out.stdout + out.stderr
    assert "Traceback" not in text, text[-2000:]
    titles = re.findall(r"^\s+\* (.+?):?$", text, re.M)
    assert titles, "the lint of a rule without an environment was expected: " + text[-2000:]
    assert set(titles) == {ENV_LINT}, sorted(set(titles))
    assert "Lints for snakefile" not in text, text[-2000:]


@pytest.mark.parametrize(
    "extra", [[], ["--configfile", "config/paper.yaml"]], ids=["default-tier", "paper-tier"]
)
def test_dry_run_plans_every_target(extra):
    out = snakemake("-n", "--forceall", "--quiet", "rules", *extra)
    assert out.returncode == 0, out.stderr[-2000:]
    text = out.stdout + out.stderr
    for rule in (
        "train",
        "aggregate_training",
        "random_deq",
        "random_deq_e10",
        "gradient_error",
        "fig_loss",
        "verify_claims",
        "paper_values",
        "paper",
    ):
        assert re.search(rf"^{rule}\s+\d+", text, re.M), f"{rule} not planned:\n{text[-3000:]}"


def test_a_setting_precision_replaces_the_compute_precision_for_its_runs(tmp_path):
    """training.settings.<name>.precision reaches `overdeq train` alone (no second
    --precision from compute.precision), and the other settings keep compute's."""
    default = yaml.safe_load((REPO / "config/config.yaml").read_text())
    released = {**default["training"]["settings"]["released"], "precision": "tf32"}
    extra = tmp_path / "tf32.yaml"
    extra.write_text(yaml.safe_dump({"training": {"settings": {"released": released}}}))
    out = snakemake("-n", "--forceall", "-p", "--configfile", str(extra))
    assert out.returncode == 0, out.stderr[-2000:]
    commands = re.findall(r"overdeq train .*$", out.stdout + out.stderr, re.M)
    by_setting = {}
    for command in commands:
        setting = re.search(r"--tag setting=(\w+)", command).group(1)
        by_setting.setdefault(setting, set()).add(tuple(re.findall(r"--precision (\w+)", command)))
    assert by_setting["released"] == {("tf32",)}
    assert by_setting["calibrated"] == {(default["compute"]["precision"],)}


def test_paper_tier_fetches_the_real_data_sets():
    out = snakemake("-n", "--forceall", "--quiet", "rules", "--configfile", "config/paper.yaml")
    assert re.search(r"^fetch_mnist\s+1", out.stdout, re.M)
    assert re.search(r"^fetch_cifar10\s+1", out.stdout, re.M)


def test_schema_enums_are_the_library_registries():
    schema = yaml.safe_load((REPO / "workflow/schemas/config.schema.yaml").read_text())
    train = schema["properties"]["training"]["properties"]
    setting = train["settings"]["additionalProperties"]["properties"]
    assert sorted(setting["solver"]["enum"]) == sorted(SOLVERS)
    assert setting["mode"]["enum"] == list(MODES)
    assert setting["loss"]["enum"] == list(LOSSES)
    assert schema["properties"]["compute"]["properties"]["precision"]["enum"] == list(PRECISIONS)
    assert train["datasets"]["propertyNames"]["enum"] == list(DATASETS)


def test_each_training_setting_key_is_a_run_option_and_its_flag():
    """A setting's keys reach make_run_config as `overdeq train --<key>` (common.smk)."""
    schema = yaml.safe_load((REPO / "workflow/schemas/config.schema.yaml").read_text())
    training = schema["properties"]["training"]["properties"]
    keys = set(training["settings"]["additionalProperties"]["properties"])
    keys -= {"width_scale_ratio"}  # the workflow turns it into width_scale
    assert keys <= set(RUN_OPTIONS), keys - set(RUN_OPTIONS)
    (train,) = [a.choices["train"] for a in build_parser()._actions if getattr(a, "choices", None)]
    flags = {o: a.dest for a in train._actions for o in a.option_strings}
    for key in keys:
        assert flags.get("--" + key.replace("_", "-")) == key, key


def test_bad_config_fails_with_a_message_naming_the_key(tmp_path):
    cfg = yaml.safe_load((REPO / "config/config.yaml").read_text())
    cfg["training"]["grids"]["main"]["settings"].append("nonexistent")
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(cfg))
    repo = scratch_repo(tmp_path / "repo", bad)
    out = snakemake("-n", cwd=repo)
    text = out.stdout + out.stderr
    assert out.returncode != 0
    assert "nonexistent" in text and "training.settings" in text
    cfg["compute"]["precision"] = "fp8"
    bad.write_text(yaml.safe_dump(cfg))
    shutil.copy2(bad, repo / "config" / "config.yaml")
    out = snakemake("-n", cwd=repo)
    assert out.returncode != 0 and "fp8" in out.stdout + out.stderr


def _jobs(dry_run_output: str) -> dict[str, int]:
    """Rule -> job count from the job-stats table of a dry run."""
    return {
        m.group(1): int(m.group(2))
        for m in re.finditer(r"^([a-z_0-9]+)\s+(\d+)$", dry_run_output, re.M)
        if m.group(1) != "total"
    }


@pytest.mark.slow
def test_tiny_tier_end_to_end(tmp_path):
    repo = scratch_repo(tmp_path / "repo", TINY)
    tier = yaml.safe_load(TINY.read_text())["tier"]
    first = snakemake("--cores", "2", cwd=repo)
    assert first.returncode == 0, first.stderr[-4000:]
    assert (repo / "paper" / "main.pdf").stat().st_size > 10_000
    report = json.loads((repo / "results" / tier / "verify.json").read_text())
    claims = yaml.safe_load((REPO / "config" / "claims.yaml").read_text())["claims"]
    assert [c["check"] for c in report["checks"]] == [k["id"] for c in claims for k in c["checks"]]
    # the tiny tier runs every experiment, so every check has a number and a verdict
    assert all(
        c["status"] in ("PASS", "FAIL") and c["value"] is not None for c in report["checks"]
    ), report["checks"]
    assert report["claims"]["C2"] == "PASS"  # ||W/sqrt m|| < 1 holds even at this size
    values = (repo / "paper" / "generated" / "values.tex").read_text()
    assert "\\newcommand{\\verdictCOne}" in values and f"{{{tier}}}" in values

    # a second run has nothing to do
    again = snakemake("--cores", "2", cwd=repo)
    assert again.returncode == 0 and "Nothing to be done" in again.stdout + again.stderr

    # editing only a plotting script reruns that figure and the paper, nothing upstream
    script = repo / "scripts" / "fig_loss.py"
    figure = repo / "figures" / "fig_loss.pdf"
    before = figure.read_bytes()
    script.write_text(script.read_text() + "\n# an edit that changes nothing drawn\n")
    plan = _jobs(snakemake("-n", "--quiet", "rules", cwd=repo).stdout)
    assert set(plan) <= {"fig_loss", "paper_values", "paper", "all"}, plan
    assert plan.get("fig_loss") == 1 and plan.get("paper") == 1
    one = snakemake("--cores", "2", "figures/fig_loss.pdf", cwd=repo)
    assert one.returncode == 0, one.stderr[-2000:]
    assert figure.read_bytes() == before  # same data, same bytes

    # a script runs by hand too (outside Snakemake, from scripts/ as a notebook would), on
    # the same results, into scratch/<tier>/ and not over the workflow's figure
    env = {**os.environ, "OVERDEQ_TIER": tier, "MPLBACKEND": "Agg"}
    env.pop("OVERDEQ_ROOT", None)
    env.pop("OVERDEQ_OUT", None)
    subprocess.run(
        [sys.executable, "fig_loss.py"], cwd=repo / "scripts", env=env, check=True, timeout=300
    )
    assert (repo / "scratch" / tier / "fig_loss.pdf").read_bytes() == before
    assert figure.read_bytes() == before

    # the arXiv bundle compiles in an empty directory
    arxiv = snakemake("--cores", "2", "arxiv", cwd=repo)
    assert arxiv.returncode == 0, arxiv.stderr[-3000:]
    assert (repo / "dist" / "overdeq-arxiv.tar.gz").stat().st_size > 10_000

    # the HTML report, read in headless Chromium: every figure's PNG decoded, the claims
    # table with every verdict, maths typeset; screenshots of each view under tmp_path/report
    require_chromium()
    made = snakemake("--report", "report.html", cwd=repo)
    assert made.returncode == 0, made.stderr[-2000:]
    assert_workflow_report(read_report(repo / "report.html", tmp_path / "report"), report)


def test_scripts_are_jupytext_notebooks():
    jupytext = pytest.importorskip("jupytext")
    scripts = sorted((REPO / "scripts").glob("*.py"))
    assert len(scripts) >= 10
    for path in scripts:
        nb = jupytext.read(path)
        kinds = [cell.cell_type for cell in nb.cells]
        assert kinds[0] == "markdown" and nb.cells[0].source.startswith("# "), path.name
        assert "code" in kinds and kinds[-1] == "markdown", path.name  # "what this shows"
        rules = "".join(p.read_text() for p in (REPO / "workflow" / "rules").glob("*.smk"))
        assert f"scripts/{path.name}" in rules, f"no rule runs {path.name}"


def test_plain_snakemake_uses_the_default_profile():
    """`snakemake` with no flags reads profiles/default (cores: all, rerun-incomplete, ...)."""
    # a source file as the target: the DAG is built, nothing runs
    out = snakemake("paper/main.tex")
    text = out.stdout + out.stderr
    assert "Using workflow specific profile profiles/default" in text, text[-2000:]
    assert "cores have to be specified" not in text
    # without the profile the same call fails for want of --cores: the profile is what helps
    bare = snakemake("--workflow-profile", "none", "paper/main.tex")
    assert "cores have to be specified" in bare.stdout + bare.stderr
    profile = yaml.safe_load((REPO / "profiles/default/config.yaml").read_text())
    assert profile["cores"] == "all" and profile["rerun-incomplete"] is True


def test_conda_deployment_is_refused_with_the_way_out():
    """Rules carry no conda: directives; `--sdm conda` must say so, not run something else."""
    rules = "\n".join(p.read_text() for p in (REPO / "workflow/rules").glob("*.smk"))
    assert not re.search(r"^\s+(conda|container):", rules, re.M)
    out = snakemake("-n", "paper/main.tex", "--sdm", "conda")
    text = out.stdout + out.stderr
    assert out.returncode != 0
    assert "--software-deployment-method conda is not supported" in text, text[-2000:]
    assert "requirements.lock" in text
