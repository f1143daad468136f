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
# # Figure `fig_rate` (E6): the measured rate against the tangent-kernel prediction
#
# Claim C1 says how fast: the loss contracts per step by a factor governed by the
# smallest eigenvalue of the kernel at init. We compare, per calibrated run, the fitted
# per-step factor with the factor fitted to the linearised prediction
# L(t) = 1/2 sum_k (1 - eta lambda_k)^(2t) c_k^2 built from the empirical tangent kernel at
# init. Plotted as 1 - rate on log axes, and the error against width.
#
# Inputs: `results/<tier>/aggregate/train_runs.csv`.
# Outputs: `figures/fig_rate.pdf`, `results/<tier>/values/fig_rate.json`.

# %%
import os

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns

from overdeq.plotting import (
    DATASET_LABELS,
    latex_number,
    save_figure,
    use_style,
    words,
    write_values,
)

# %%
try:
    RUNS = snakemake.input.runs  # noqa: F821
    FIGURE, VALUES = snakemake.output.figure, snakemake.output.values  # noqa: F821
except NameError:
    TIER = os.environ.get("OVERDEQ_TIER", "quick")  # interactive: which results to read
    RUNS = f"results/{TIER}/aggregate/train_runs.csv"
    FIGURE, VALUES = "figures/fig_rate.pdf", f"results/{TIER}/values/fig_rate.json"

runs = pd.read_csv(RUNS)
use_style()

# %% [markdown]
# The error measure is relative, in the exponent: |log rate - log predicted| / |log predicted|
# (a 10% error means the loss halves in 10% more or fewer steps than predicted).

# %%
cal = runs[(runs["setting"] == "calibrated") & (runs["status"] == "finished")].copy()
cal["exp_error"] = np.abs(np.log(cal.rate) - np.log(cal.predicted_rate)) / np.abs(
    np.log(cal.predicted_rate)
)
for col in ("rate", "predicted_rate"):
    cal[f"gap_{col}"] = 1.0 - cal[col]
by_width = cal.groupby("width")["exp_error"].median()

# %%
fig, axes = plt.subplots(1, 2, figsize=(6.2, 2.5), constrained_layout=True)
sns.scatterplot(
    data=cal,
    x="gap_predicted_rate",
    y="gap_rate",
    hue="dataset",
    size="width",
    ax=axes[0],
    sizes=(12, 40),
)
lo = float(min(cal.gap_rate.min(), cal.gap_predicted_rate.min())) * 0.7
hi = float(max(cal.gap_rate.max(), cal.gap_predicted_rate.max())) * 1.4
axes[0].plot([lo, hi], [lo, hi], color="0.4", ls=":", lw=0.8)
axes[0].set(
    xscale="log",
    yscale="log",
    xlabel="1 - predicted rate (tangent kernel)",
    ylabel="1 - measured rate",
)
axes[0].legend(frameon=False, fontsize=6)
per_width = cal.groupby(["dataset", "width"])["exp_error"].median().reset_index()
sns.lineplot(data=per_width, x="width", y="exp_error", hue="dataset", marker="o", ax=axes[1])
axes[1].set(
    xscale="log", yscale="log", xlabel="width $m$", ylabel="median relative error\nof the exponent"
)
axes[1].legend(frameon=False, fontsize=6)
axes[1].set_xticks(list(by_width.index), [str(w) for w in by_width.index])
axes[1].minorticks_off()

# %% [markdown]
# Per data set: the median error at the smallest and at the largest width (the text quotes
# them as a list, so it reads the same whatever data sets a tier trains on).

# %%
per_data = []
for dataset, g in cal.groupby("dataset"):
    med = g.groupby("width")["exp_error"].median()
    per_data.append(
        f"{latex_number(float(med.iloc[0]))} to {latex_number(float(med.iloc[-1]))} "
        f"({DATASET_LABELS.get(dataset, dataset)})"
    )
values = {
    "rateRuns": latex_number(len(cal)),
    "rateMedianErr": latex_number(float(cal.exp_error.median())),
    "rateMaxErr": latex_number(float(cal.exp_error.max())),
    "rateWidthMin": latex_number(int(by_width.index[0])),
    "rateWidthMax": latex_number(int(by_width.index[-1])),
    "rateErrByData": words(per_data),
}
save_figure(fig, FIGURE)
write_values(VALUES, values)

# %% [markdown]
# What this shows: the measured rate follows the tangent-kernel prediction, more closely
# as the width grows (the kernel moves less during training).
