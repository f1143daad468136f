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
# # Figure `fig_init_condition`: the initial condition holds w.h.p. once m is a multiple of n
#
# E2, claim C3: for a random DEQ the smallest eigenvalue lambda_0 of the Gram of the initial
# equilibrium points is, with high probability, at least a fixed fraction of the kernel's
# lambda_* once the width m is large enough relative to the sample count n. For orthonormal
# inputs the theory predicts lambda_0 / lambda_* ~ (1 - sqrt(n/m))^2 (a Marchenko-Pastur
# edge), so the width needed for lambda_0 >= lambda_*/2 grows linearly in n.
# Panels: lambda_0 / lambda_* against m/n for each data set and n (median over seeds, band =
# min to max), the Marchenko-Pastur curve; and P(lambda_0 >= lambda_*/2) against m/n.
#
# Inputs: `results/<tier>/random_deq/e2/{rows,summary}.csv` (rule random_deq_e2).
# Outputs: `figures/fig_init_condition.pdf` and `values/fig_init_condition.json` (macros).

# %%
import math

import matplotlib.pyplot as plt
import numpy as np
import seaborn as sns
from matplotlib.ticker import NullFormatter

from overdeq.values import latex_number
from overdeq_figures import (
    DATASET_MACROS,
    DATASET_NAMES,
    TEXT_WIDTH,
    label_panels,
    open_job,
    use_style,
    verdict,
    words,
)

# %% [markdown]
# Parameters: under Snakemake the paths come from the rule; by hand, from the defaults. The
# checks of the claim (high probability at the largest m/n, threshold width linear in n) are
# C3c and C3d of config/claims.yaml, with their verdicts in verify.json; MP_TOL is this
# script's tolerance for a statement the text adds: the orthonormal-input medians agree with
# the Marchenko-Pastur curve when within MP_TOL of it (absolute, in units of lambda_*).

# %% tags=["parameters"]
# by hand: reads results/$OVERDEQ_TIER/ (default quick), writes scratch/<tier>/
job = open_job(
    "fig_init_condition",
    globals().get("snakemake"),
    kind="figure",
    inputs={
        "rows": "results/{tier}/random_deq/e2/rows.csv",
        "summary": "results/{tier}/random_deq/e2/summary.csv",
    },
)
MP_TOL = 0.05

# %%
rows, cells = job.table("rows"), job.table("summary")
use_style()
datasets = [d for d in DATASET_NAMES if d in set(cells.data)]
fraction = float(rows.fraction.iloc[0])
probability = float(cells.threshold_probability.iloc[0])

# %% [markdown]
# The Marchenko-Pastur prediction on a fine grid of m/n, and the m/n at which it crosses the
# fraction: (1 - sqrt(n/m))^2 = fraction <=> m/n = 1 / (1 - sqrt(fraction))^2.

# %%
ratios = np.geomspace(1, cells.ratio.max(), 200)
mp_curve = (1 - np.sqrt(1 / ratios)) ** 2
mp_threshold = 1 / (1 - math.sqrt(fraction)) ** 2

# %%
ns = sorted(cells.n.unique())
shades = dict(zip(ns, sns.color_palette("viridis", len(ns)), strict=True))
styles = dict(zip(datasets, ["-", "--", "-.", ":"], strict=False))
fig, axes = plt.subplots(
    1,
    len(datasets) + 1,
    figsize=(TEXT_WIDTH, 2.5),
    sharex=True,
    width_ratios=[1] * len(datasets) + [1.3],  # room for the key of line styles
)
for ax, name in zip(axes, datasets, strict=False):
    for n in ns:
        c = cells[(cells.data == name) & (cells.n == n)].sort_values("ratio")
        ax.fill_between(c.ratio, c.ratio_min, c.ratio_max, color=shades[n], alpha=0.2, lw=0)
        ax.plot(c.ratio, c.ratio_median, "o-", color=shades[n], ms=2.5, lw=1, label=f"$n={n}$")
    ax.plot(ratios, mp_curve, ":", color="0.2", lw=1.2, label=r"$(1-\sqrt{n/m})^2$")
    ax.axhline(fraction, color="0.5", lw=0.6)
    ax.set(
        xscale="log",
        xlabel="$m/n$",
        ylabel=r"$\lambda_0/\lambda_*$",
        ylim=(0, None),
    )
axes[0].legend(frameon=True, facecolor="white", edgecolor="none", framealpha=1)

ax = axes[-1]
for (name, n), c in cells.groupby(["data", "n"]):
    c = c.sort_values("ratio")
    ax.plot(c.ratio, c.probability, styles[name], color=shades[n], lw=1)
for name in datasets:  # colours are the n of the other panels; line styles the data sets
    ax.plot([], [], styles[name], color="0.3", lw=1, label=DATASET_NAMES[name])
ax.axvline(mp_threshold, color="0.2", ls=":", lw=1)
ax.axhline(probability, color="0.5", lw=0.6)
ax.set(
    xscale="log",
    xlabel="$m/n$",
    ylabel=rf"$P(\lambda_0 \geq {fraction:g}\,\lambda_*)$",
    ylim=(-0.03, 1.03),
)
ax.legend(loc="upper left", bbox_to_anchor=(0, 0.66), handlelength=1.2, borderaxespad=0.2)
ticks = [r for r in (1, 2, 4, 8, 16, 32, 64) if r <= cells.ratio.max()]
for ax in axes:
    ax.set_xticks(ticks, [str(t) for t in ticks])
    ax.xaxis.set_minor_formatter(NullFormatter())
label_panels(axes, [f"{DATASET_NAMES[d]} inputs" for d in datasets] + ["probability"])

# %% [markdown]
# Threshold width m*(n) per data set (from the summary's fit) and the agreement of the
# orthonormal-input medians with the Marchenko-Pastur curve at the largest n (the edge is an
# n -> infinity statement; its fluctuations shrink like n^(-2/3)), over cells with m/n >= 2.

# %%
thresholds = cells.drop_duplicates(["data", "n"])[
    ["data", "n", "ratio_star", "m_star", "exponent", "fit_points"]
]
exponents = thresholds.drop_duplicates("data").set_index("data").loc[datasets, "exponent"]
ortho = cells[(cells.data == "identity") & (cells.ratio >= 2) & (cells.n == max(ns))]
mp_dev = float((ortho.ratio_median - ortho.mp_prediction).abs().max()) if len(ortho) else math.nan


def span(low: str, high: str) -> str:
    """'low to high', or one value when both agree."""
    return low if low == high else f"{low} to {high}"


star = thresholds.groupby("data").ratio_star.max()
values = {
    "initNs": words([latex_number(int(n)) for n in ns]),
    "initWidthMax": latex_number(int(cells.width.max())),
    "initRatioMin": f"{cells.ratio.min():g}",
    "initRatioMax": f"{cells.ratio.max():g}",
    "initRatioCount": latex_number(int(cells.ratio.nunique())),
    "initSeeds": latex_number(int(rows.seed.nunique())),
    "initSigmaW": f"{rows.sigma_w.iloc[0]:g}",
    "initFraction": f"{fraction:g}",
    "initProbability": f"{probability:g}",
    "initMPThreshold": latex_number(mp_threshold),
    "initExponentRange": span(
        latex_number(float(exponents.min()), 2), latex_number(float(exponents.max()), 2)
    ),
    "initMPMaxDev": latex_number(mp_dev, 2),
    "initMPTol": f"{MP_TOL:g}",
    "initVerdictMP": verdict(mp_dev <= MP_TOL, math.isfinite(mp_dev)),
    **{f"initRatioStar{DATASET_MACROS[d]}": f"{star[d]:g}" for d in datasets},
}
job.save_figure(fig)
job.save_values(values)

# %% [markdown]
# What this shows: lambda_0 / lambda_* collapses onto one curve in m/n for every n, and for
# orthonormal inputs that curve is the Marchenko-Pastur edge (1 - sqrt(n/m))^2. The event
# lambda_0 >= lambda_*/2 therefore switches on at a fixed ratio m/n, sharper for larger n,
# so the threshold width grows linearly in n: mild over-parameterisation suffices, as C3
# states.
