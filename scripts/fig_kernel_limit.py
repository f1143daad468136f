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
# # Figure `fig_kernel_limit`: finite-width Grams approach the DEQ kernel at rate m^(-1/2)
#
# E1, the infinite-width theory behind C3. The Gram matrix Z Z^T of the equilibrium points
# of a random DEQ of width m should approach the kernel K (fixed point of K = kappa1(sigma_w^2
# K + sigma_u^2 X X^T)) with entrywise error O(m^(-1/2)); a weight-untied network of depth l
# has the l-th kernel iterate as its limit, so at large depth its Gram approaches the same K.
# Left: error ||Z Z^T - K||_F / n against m on log-log axes with the fitted slope and the
# -1/2 reference. Right: the same error for untied networks against depth l.
#
# Inputs: `results/<tier>/random_deq/e1/{rows,summary}.csv` (rule random_deq_e1).
# Outputs: `figures/fig_kernel_limit.pdf` and `values/fig_kernel_limit.json` (macros).

# %%
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.ticker import NullFormatter

from overdeq.values import latex_number
from overdeq_figures import (
    DATASET_NAMES,
    TEXT_WIDTH,
    label_panels,
    open_job,
    plain_log_labels,
    use_style,
    verdict,
    words,
)

# %% [markdown]
# Parameters: under Snakemake the paths come from the rule; by hand, from the defaults. The
# check of the m^(-1/2) slope is C3a of config/claims.yaml (its verdict is in verify.json);
# the tolerances here are this script's, for statements the text adds: a deep untied
# network's error must be within UNTIED_RANGE times the DEQ's error at the same width, and
# SETTLE defines the depth from which an untied network has reached the DEQ kernel.

# %% tags=["parameters"]
# by hand: reads results/$OVERDEQ_TIER/ (default quick), writes scratch/<tier>/
job = open_job(
    "fig_kernel_limit",
    globals().get("snakemake"),
    kind="figure",
    inputs={
        "rows": "results/{tier}/random_deq/e1/rows.csv",
        "summary": "results/{tier}/random_deq/e1/summary.csv",
    },
)
UNTIED_RANGE = (2 / 3, 3 / 2)  # deep untied error / DEQ error at equal width
SETTLE = 0.05  # depth from which error vs K is within 5 % of error vs the depth-l kernel

# %%
rows, summary = job.table("rows"), job.table("summary")
use_style()

# %% [markdown]
# Tied DEQ: seed-mean error per width, and the summary's least-squares line on log-log axes.

# %%
deq = rows[(rows.network == "deq") & rows.converged.astype(bool)]
deq_mean = deq.groupby(["data", "width"], as_index=False)["err_rms"].mean()
fits = summary[summary.metric == "err_rms"].set_index("data")
datasets = [d for d in DATASET_NAMES if d in set(deq_mean.data)]

# %% [markdown]
# Untied networks: seed-mean error against the DEQ kernel K and against their own depth-l
# kernel K^l, per depth. Their ratio tends to 1 once K^l is closer to K than the sampling
# noise; SETTLE defines "once".

# %%
untied = rows[rows.network == "untied"]
by_ref = (
    untied.groupby(["data", "width", "depth", "reference"])["err_rms"]
    .mean()
    .unstack("reference")
    .reset_index()
)
by_ref["ratio"] = by_ref["deq_kernel"] / by_ref["untied_kernel"]
max_depth = int(untied.depth.max())


def settle_depth(g: pd.DataFrame) -> int:
    """First depth from which error vs K stays within SETTLE of error vs K^l."""
    bad = g.loc[g.ratio > 1 + SETTLE, "depth"]
    return int(bad.max()) + 1 if len(bad) else int(g.depth.min())


settle = by_ref.groupby(["data", "width"]).apply(settle_depth, include_groups=False)
deepest = by_ref[by_ref.depth == max_depth].merge(
    deq_mean.rename(columns={"err_rms": "deq_err"}), on=["data", "width"], how="left"
)
deepest["vs_deq"] = deepest["deq_kernel"] / deepest["deq_err"]

# %%
fig, axes = plt.subplots(1, 2, figsize=(TEXT_WIDTH, 2.6))
palette = dict(zip(datasets, sns.color_palette(n_colors=len(datasets)), strict=True))
ax = axes[0]
widths = np.array(sorted(deq_mean.width.unique()), dtype=float)
for name in datasets:
    pts = deq_mean[deq_mean.data == name]
    slope, icpt = fits.loc[name, "slope"], fits.loc[name, "intercept"]
    ax.plot(pts.width, pts.err_rms, "o", color=palette[name], ms=4)
    ax.plot(
        widths,
        np.exp(icpt) * widths**slope,
        "-",
        color=palette[name],
        lw=1,
        label=f"{DATASET_NAMES[name]}: slope ${slope:.2f}$",
    )
anchor = deq_mean.err_rms.max() * 1.3
ax.plot(widths, anchor * (widths / widths[0]) ** -0.5, ":", color="0.3", lw=1, label="slope $-1/2$")
ax.set(
    xscale="log",
    yscale="log",
    xlabel="width $m$",
    ylabel=r"$\|ZZ^\top - K\|_F / n$",
)
ax.set_xticks(widths, [f"{int(m)}" for m in widths])
ax.xaxis.set_minor_formatter(NullFormatter())
ax.legend()

ax = axes[1]
untied_widths = sorted(by_ref.width.unique())
shades = dict(zip(untied_widths, sns.color_palette("viridis", len(untied_widths)), strict=True))
styles = dict(zip(datasets, ["-", "--", "-.", ":"], strict=False))
for (name, m), g in by_ref.groupby(["data", "width"]):
    ax.plot(
        g.depth,
        g.deq_kernel,
        styles[name],
        color=shades[m],
        lw=1,
        label=f"$m={m}$, {DATASET_NAMES[name]}",
    )
for m in untied_widths:
    ref = deq_mean[deq_mean.width == m].err_rms.mean()
    if np.isfinite(ref):
        ax.axhline(ref, color=shades[m], ls=":", lw=0.8)
ax.set(
    xscale="log",
    yscale="log",
    xlabel="depth $l$ (untied)",
    ylabel=r"$\|Z_lZ_l^\top - K\|_F / n$",
)
ax.legend()
plain_log_labels(ax, "x")
for ax in axes:
    plain_log_labels(ax)
label_panels(axes, ["weight-tied DEQ against width", "weight-untied networks against depth"])

# %% [markdown]
# Numbers and verdicts quoted in the text (all computed above from the data).

# %%
slopes = fits.loc[datasets, "slope"]
lam_slopes = summary[summary.metric == "err_lambda"].set_index("data").loc[datasets, "slope"]
untied_tested = bool(deepest.vs_deq.notna().any())
untied_ok = untied_tested and bool(deepest.vs_deq.dropna().between(*UNTIED_RANGE).all())


values = {
    "kernelN": latex_number(int(rows.n.iloc[0])),
    "kernelSigmaW": f"{rows.sigma_w.iloc[0]:g}",
    "kernelDatasets": words([DATASET_NAMES[d] for d in datasets]),
    "kernelWidthMin": latex_number(int(widths.min())),
    "kernelWidthMax": latex_number(int(widths.max())),
    "kernelWidthCount": latex_number(len(widths)),
    "kernelSeeds": latex_number(int(deq.seed.nunique())),
    "kernelUntiedWidths": words([latex_number(int(m)) for m in untied_widths]),
    "kernelMaxDepth": latex_number(max_depth),
    "kernelSlopeMin": latex_number(float(slopes.min()), 2),
    "kernelSlopeMax": latex_number(float(slopes.max()), 2),
    "kernelLambdaSlopeMin": latex_number(float(lam_slopes.min()), 2),
    "kernelLambdaSlopeMax": latex_number(float(lam_slopes.max()), 2),
    "kernelSettleDepth": latex_number(int(settle.max())),
    "kernelSettlePercent": latex_number(int(round(100 * SETTLE))),
    "kernelUntiedRatioMin": latex_number(float(deepest.vs_deq.min()), 2),
    "kernelUntiedRatioMax": latex_number(float(deepest.vs_deq.max()), 2),
    "kernelUntiedLow": latex_number(UNTIED_RANGE[0], 2),
    "kernelUntiedHigh": latex_number(UNTIED_RANGE[1], 2),
    "kernelVerdictUntied": verdict(untied_ok, untied_tested),
}
job.save_figure(fig)
job.save_values(values)

# %% [markdown]
# What this shows: on both data sets the error of the tied DEQ's Gram falls like a power of
# the width whose fitted exponent is close to -1/2, as the kernel theory predicts; the
# smallest eigenvalue converges more slowly for orthonormal inputs (its error is dominated by
# the Marchenko-Pastur edge, see fig_init_condition). Weight-untied networks reach the DEQ
# kernel after a few layers: beyond that depth their error is the same sampling error as the
# DEQ's at equal width, so tied and untied networks share one infinite-width limit.
