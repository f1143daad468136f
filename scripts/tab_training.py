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
# # Table `tab_training` (E4-E6): every training configuration in numbers
#
# One row per data set and setting: runs and widths, the loss reduction, the fitted
# linear rate against the tangent-kernel prediction, $\lambda_0$ and the invariants. Settings
# are named in words (`label`), not by their config keys.
#
# Inputs: `results/<tier>/aggregate/train_runs.csv`.
# Outputs: `paper/generated/tab_training.tex` and `.html`,
# `results/<tier>/values/tab_training.json`.

# %%
from overdeq.values import latex_number
from overdeq_figures import (
    DATASET_LABELS,
    html_page,
    html_table,
    label,
    latex_table,
    open_job,
    tex_escape,
)

# %% tags=["parameters"]
# by hand: reads results/$OVERDEQ_TIER/ (default quick), writes scratch/<tier>/
job = open_job(
    "tab_training",
    globals().get("snakemake"),
    kind="table",
    inputs={"runs": "results/{tier}/aggregate/train_runs.csv"},
)

# %%
runs = job.table("runs")

# %% [markdown]
# Aggregate per (data set, setting); medians over widths and seeds, extremes where the
# claim is about every run.

# %%
rows = []
for (dataset, setting), g in runs.groupby(["dataset", "setting"], sort=True):
    ok = g[g["status"] == "finished"]
    red = ok.final_loss / ok.initial_loss
    rows.append(
        [
            DATASET_LABELS.get(dataset, dataset),
            tex_escape(label(setting)),
            f"{len(ok)}/{len(g)}",
            latex_number(float(red.median())) if len(ok) else "--",
            latex_number(float(ok.rate.median()), 4) if len(ok) else "--",
            latex_number(float(ok.predicted_rate.median()), 4) if len(ok) else "--",
            latex_number(float(g.lambda_0.min())),
            latex_number(float(ok.min_lambda_ratio.min())) if len(ok) else "--",
            latex_number(float(ok.max_w_norm.max())) if len(ok) else "--",
        ]
    )
columns = [
    "data",
    "setting",
    "finished",
    r"$L_T/L_0$",
    "rate",
    "NTK rate",
    r"$\min\lambda_0$",
    r"$\min_t \lambda_t/\lambda_0$",
    r"$\max_t\|W_t\|/\sqrt m$",
]
NOTE = "medians over widths and seeds; minima and maxima over every run"
table = latex_table(
    columns, rows, align="llrrrrrrr", caption_comment=f"made by scripts/tab_training.py; {NOTE}"
)
page = html_page(
    "Training runs (E4-E6)",
    html_table(
        columns, rows, align="llrrrrrrr", caption=f"One row per data set and setting: {NOTE}."
    ),
)
job.save_table(table, page)
job.save_values({})  # the text quotes no number of this table

# %% [markdown]
# What this shows: per configuration, whether training finished, how much of the loss was
# removed and whether the measured rate matches the tangent-kernel prediction.
