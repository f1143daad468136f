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
import os

import matplotlib.pyplot as plt
import pandas as pd
import seaborn as sns

from overdeq.plotting import DATASET_LABELS, latex_number, save_figure, use_style, write_values

# %% [markdown]
# Parameters: from the rule under Snakemake, defaults interactively.

# %%
try:
    RUNS, HISTORY = snakemake.input.runs, snakemake.input.history  # noqa: F821
    FIGURE, VALUES = snakemake.output.figure, snakemake.output.values  # noqa: F821
    SETTINGS = list(snakemake.params.settings)  # noqa: F821
except NameError:
    TIER = os.environ.get("OVERDEQ_TIER", "quick")  # interactive: which results to read
    RUNS = f"results/{TIER}/aggregate/train_runs.csv"
    HISTORY = f"results/{TIER}/aggregate/train_history.csv"
    FIGURE, VALUES = "figures/fig_loss.pdf", f"results/{TIER}/values/fig_loss.json"
    SETTINGS = ["calibrated", "released"]

runs = pd.read_csv(RUNS)
history = pd.read_csv(HISTORY)
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
    sharex="col",
    figsize=(6.2, 1.9 * len(datasets) + 0.4),
    constrained_layout=True,
)
for i, dataset in enumerate(datasets):
    for j, setting in enumerate(SETTINGS):
        ax = axes[i, j]
        part = history[(history["dataset"] == dataset) & (history["setting"] == setting)]
        sns.lineplot(
            data=part,
            x="step",
            y="loss",
            hue="width",
            units="run",
            estimator=None,
            palette="viridis",
            ax=ax,
            lw=0.9,
            legend=(i == 0 and j == len(SETTINGS) - 1),
        )
        ax.set(
            yscale="log",
            xlabel="GD step $t$" if i == len(datasets) - 1 else "",
            ylabel=f"{DATASET_LABELS.get(dataset, dataset)}\nloss $L(t)$" if j == 0 else "",
        )
        if i == 0:
            ax.set_title(setting)
legend = axes[0, -1].get_legend()
if legend is not None:
    legend.set_title("width $m$")
    legend.set_frame_on(False)

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
save_figure(fig, FIGURE)
write_values(VALUES, values)

# %% [markdown]
# What this shows: with the calibrated step every run's log-loss falls along a straight
# line until round-off, at every width; with the released learning rates the same
# algorithm barely moves in the same number of steps (the rate is set by eta * lambda).
