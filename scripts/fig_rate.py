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
import matplotlib.pyplot as plt
import numpy as np
import seaborn as sns

from overdeq.values import latex_number
from overdeq_figures import (
    DATASET_LABELS,
    TEXT_WIDTH,
    label_panels,
    open_job,
    plain_log_labels,
    use_style,
    words,
)

# %% tags=["parameters"]
# by hand: reads results/$OVERDEQ_TIER/ (default quick), writes scratch/<tier>/
job = open_job(
    "fig_rate",
    globals().get("snakemake"),
    kind="figure",
    inputs={"runs": "results/{tier}/aggregate/train_runs.csv"},
)

# %%
use_style()
runs = job.table("runs")

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

# %% [markdown]
# The paper prints this figure at 0.8 of the text width.

# %%
fig, axes = plt.subplots(1, 2, figsize=(0.8 * TEXT_WIDTH, 2.6))
shown = cal.assign(data=cal["dataset"].map(lambda d: DATASET_LABELS.get(d, d)))
sns.scatterplot(
    data=shown,
    x="gap_predicted_rate",
    y="gap_rate",
    hue="data",
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
handles, names = axes[0].get_legend_handles_labels()
axes[0].legend(
    handles, [{"data": "data set", "width": "width $m$"}.get(n, n) for n in names], loc="upper left"
)
per_width = shown.groupby(["data", "width"])["exp_error"].median().reset_index()
sns.lineplot(data=per_width, x="width", y="exp_error", hue="data", marker="o", ax=axes[1])
axes[1].set(
    xscale="log", yscale="log", xlabel="width $m$", ylabel="median relative error\nof the exponent"
)
axes[1].legend(title=None)
axes[1].set_xticks(list(by_width.index), [str(w) for w in by_width.index])
axes[1].xaxis.set_minor_locator(plt.NullLocator())
plain_log_labels(axes[1])
label_panels(axes, ["measured against predicted rate", "error against width"])

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
job.save_figure(fig)
job.save_values(values)

# %% [markdown]
# What this shows: the measured rate follows the tangent-kernel prediction, more closely
# as the width grows (the kernel moves less during training).
