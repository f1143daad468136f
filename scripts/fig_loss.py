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
# # Figure `fig_loss` (E4): gradient descent drives the loss to zero at a linear rate
#
# Claim C1: full-batch gradient descent on the quadratic loss converges to a global minimum
# at a linear rate when lambda_0 = lambda_min(Z(0) Z(0)^T) > 0. One panel per data set
# (rows) and training setting (columns: our calibrated paper-mode runs, and the released
# code's algorithm with its learning rates); one line per run, coloured by width. A straight
# line on the log scale is a linear rate.
#
# Inputs: `results/<tier>/aggregate/train_{runs,history}.csv`.
# Outputs: `figures/fig_loss.pdf`, `results/<tier>/values/fig_loss.json`.

# %%
import matplotlib.pyplot as plt
import seaborn as sns

from overdeq.values import latex_number
from overdeq_figures import (
    DATASET_LABELS,
    TEXT_WIDTH,
    label,
    label_panels,
    open_job,
    plain_log_labels,
    use_style,
)

# %% [markdown]
# Parameters: from the rule under Snakemake, defaults by hand (the main grid's settings).

# %% tags=["parameters"]
# by hand: reads results/$OVERDEQ_TIER/ (default quick), writes scratch/<tier>/
job = open_job(
    "fig_loss",
    globals().get("snakemake"),
    kind="figure",
    inputs={
        "runs": "results/{tier}/aggregate/train_runs.csv",
        "history": "results/{tier}/aggregate/train_history.csv",
    },
    params={"settings": ["calibrated", "released"]},
)

# %%
SETTINGS = list(job.params["settings"])
runs, history = job.table("runs"), job.table("history")
use_style()

# %% [markdown]
# Only the main grid's settings; ablation settings have their own figure (E7).

# %%
history = history[history["setting"].isin(SETTINGS)]
runs = runs[runs["setting"].isin(SETTINGS)]
datasets = sorted(history["dataset"].unique())

# %%
fig, axes = plt.subplots(
    len(datasets),
    len(SETTINGS),
    squeeze=False,
    figsize=(TEXT_WIDTH, 1.8 * len(datasets) + 0.3),
)
widths = sorted(history["width"].unique())
shades = dict(zip(widths, sns.color_palette("viridis", len(widths)), strict=True))
per_run = dict(hue="width", units="run", estimator=None, palette=shades, lw=0.9)
for i, dataset in enumerate(datasets):
    for j, setting in enumerate(SETTINGS):
        ax = axes[i, j]
        part = history[(history["dataset"] == dataset) & (history["setting"] == setting)]
        key = i == 0 and j == len(SETTINGS) - 1  # the width key, once
        sns.lineplot(data=part, x="step", y="loss", ax=ax, legend=key, **per_run)
        ax.set(
            yscale="log",
            xlabel="GD step $t$" if i == len(datasets) - 1 else "",
            ylabel=f"{DATASET_LABELS.get(dataset, dataset)}\nloss $L(t)$" if j == 0 else "",
        )
        if part["loss"].max() < 10 * part["loss"].min():
            plain_log_labels(ax)
label_panels(axes.flat, [label(s) for _ in datasets for s in SETTINGS])
legend = axes[0, -1].get_legend()
if legend is not None:
    legend.set_title("width $m$")

# %% [markdown]
# Numbers for the text: over the calibrated runs, how far the loss fell and how straight
# the log-loss line is (R^2 of the fit over the geometric phase); over the released runs,
# how far it fell with the released learning rates.

# %%
cal = runs[runs["setting"] == "calibrated"]
rel = runs[runs["setting"] == "released"]
values = {
    "lossCalRuns": latex_number(len(cal)),
    "lossCalFinished": latex_number(int((cal["status"] == "finished").sum())),
    "lossDatasets": latex_number(len(datasets)),
    "lossWidths": ", ".join(str(w) for w in sorted(runs["width"].unique())),
    "lossSeeds": latex_number(int(runs["seed"].nunique())),
    "lossCalBestReduction": latex_number(float((cal.final_loss / cal.initial_loss).min())),
    "lossCalWorstReduction": latex_number(float((cal.final_loss / cal.initial_loss).max())),
    "lossCalMinRsq": latex_number(float(cal.rate_r2.min())),
    "lossRelWorstReduction": latex_number(float((rel.final_loss / rel.initial_loss).max()))
    if len(rel)
    else "n/a",
    "lossRelBestReduction": latex_number(float((rel.final_loss / rel.initial_loss).min()))
    if len(rel)
    else "n/a",
    "lossPrecision": ", ".join(sorted(runs["precision"].dropna().unique())),
    "lossLrScale": latex_number(float(cal.lr_scale.iloc[0]), 2) if len(cal) else "n/a",
    "lossPatience": latex_number(int(cal.patience.iloc[0])) if len(cal) else "n/a",
}
job.save_figure(fig)
job.save_values(values)

# %% [markdown]
# What this shows: with the calibrated step every run's log-loss falls along a straight
# line until round-off, at every width; with the released learning rates the same
# algorithm barely moves in the same number of steps (the rate is set by eta * lambda).
