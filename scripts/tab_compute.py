# ---
# jupyter:
#   jupytext:
#     formats: py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Table `tab_compute`: what each experiment cost at this tier
#
# From the workflow's own measurements: Snakemake's `benchmark:` file of every compute job
# (wall time, peak resident memory) and the device recorded in the training runs'
# provenance. One row per experiment.
#
# Inputs: `benchmarks/<tier>/**.tsv`, `results/<tier>/aggregate/train_runs.csv` (its
# `versions` column: the packages each run recorded), `requirements.lock` (what the set-up
# pins).
# Outputs: `paper/generated/tab_compute.tex` and `.html`, `results/<tier>/values/tab_compute.json`.

# %%
import re

import pandas as pd

from overdeq.values import latex_number
from overdeq_figures import html_page, html_table, latex_table, open_job, read_lock, read_table

# %% [markdown]
# Parameters: under Snakemake the rule groups the benchmark files by experiment and names the
# device and threads of the config; by hand every benchmark file of the tier is one group.

# %% tags=["parameters"]
# by hand: reads results/$OVERDEQ_TIER/ and benchmarks/<tier>/ (default quick), writes
# scratch/<tier>/
job = open_job(
    "tab_compute",
    globals().get("snakemake"),
    kind="table",
    inputs={
        "benchmarks": "benchmarks/{tier}/**/*.tsv",
        "runs": "results/{tier}/aggregate/train_runs.csv",
        "lock": "requirements.lock",
    },
    params={"groups": None, "device": "cpu", "threads": 1},
)

# %%
GROUPS = job.params["groups"] or {"all": job.input["benchmarks"]}
DEVICE, THREADS = job.params["device"], job.params["threads"]
runs = job.table("runs")
device_names = sorted(runs["device"].dropna().unique())

# %% [markdown]
# Each benchmark file holds one line per job: `s` (wall seconds) and `max_rss` (MB).

# %%
LABELS = {
    "E1": "E1 kernel limit",
    "E2": "E2 initial condition",
    "E3": "E3 well-posedness",
    "E10": "E10 kernel table",
    "E4-E6": "E4--E6 training grid",
    "E7": "E7 ablation runs",
    "E7-gradient": "E7 gradient error",
}
# %% [markdown]
# A benchmark file holds the job's last execution only. When a training job is redone (its
# command changed, say) and finds its run already finished, it records a second or two of
# checking; the run's own wall time (`wall_time_s` in its provenance) is then the real cost,
# so a training job counts the larger of the two.

# %%
TRAIN_JOB = re.compile(r"(?:^|/)train/(.+?)(?:\.tsv)?$")  # train/<data>/<setting>/m<w>/seed<s>
RUN_SECONDS = {
    TRAIN_JOB.search(str(run)).group(1): float(wall)
    for run, wall in zip(runs["run"], runs["wall_time_s"], strict=True)
    if TRAIN_JOB.search(str(run)) and pd.notna(wall)
}


def job_seconds(path: str, bench: pd.DataFrame) -> float:
    seconds = float(bench["s"].sum())
    if match := TRAIN_JOB.search(str(path)):
        seconds = max(seconds, RUN_SECONDS.get(match.group(1), 0.0))
    return seconds


rows, total = [], 0.0
for key, files in GROUPS.items():
    frames = {f: read_table(f) for f in files}
    per_job = [job_seconds(f, b) for f, b in frames.items()]
    seconds = sum(per_job)
    total += seconds
    rows.append(
        [
            LABELS.get(key, key),
            latex_number(len(files)),
            latex_number(seconds, 3),
            latex_number(max(per_job), 3),
            latex_number(float(pd.concat(frames.values())["max_rss"].max()), 3),
        ]
    )
columns = ["experiment", "jobs", "total s", "longest job s", "peak RSS MB"]
table = latex_table(columns, rows, align="lrrrr", caption_comment="made by scripts/tab_compute.py")
caption = (
    "Snakemake's measurements of every job (wall seconds, peak resident memory), by experiment; "
    "a training job redone on a finished run counts the run's own wall time."
)
page = html_page("Compute", html_table(columns, rows, align="lrrrr", caption=caption))
job.save_table(table, page)

# %%
values = {
    "computeTotalMinutes": latex_number(total / 60, 3),
    "computeDevice": (", ".join(device_names) if device_names else DEVICE).replace("_", r"\_"),
    "computeThreads": latex_number(int(THREADS)),
    "computeJobs": latex_number(sum(len(f) for f in GROUPS.values())),
}

# %% [markdown]
# The software the runs recorded, against the lock file: every package but Python and torch
# is pinned in `requirements.lock` (torch is left to a range because CPU and CUDA builds
# differ), so a version that differs from its pin is named in the paper.

# %%
SOFTWARE = {
    "python": "Python",
    "torch": "PyTorch",
    "numpy": "NumPy",
    "scipy": "SciPy",
    "snakemake": "Snakemake",
    "matplotlib": "Matplotlib",
}
lock = read_lock(job.input["lock"])
recorded: dict[str, set[str]] = {}
for cell in runs["versions"].dropna():
    for item in str(cell).split():
        name, _, version = item.partition("=")
        recorded.setdefault(name, set()).add(version)
software = [
    f"{label} {'/'.join(sorted(recorded[name]))}"
    for name, label in SOFTWARE.items()
    if name in recorded
]
unlocked = [
    f"{name} {'/'.join(sorted(versions))} (locked {lock.get(name, 'not at all')})"
    for name, versions in sorted(recorded.items())
    if name not in ("python", "torch", "overdeq") and versions != {lock.get(name)}
]
values["computeSoftware"] = ", ".join(software) if software else "not recorded"
values["computeLockStatus"] = (
    "every other recorded package at its pin in \\texttt{requirements.lock}"
    if not unlocked
    else "differing from \\texttt{requirements.lock} in " + ", ".join(unlocked)
)
job.save_values(values)

# %% [markdown]
# What this shows: where the tier's compute time goes, measured by the workflow itself, on
# the device named in the runs' provenance.
