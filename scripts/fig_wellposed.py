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
# # Figure `fig_wellposed`: where a random DEQ has a unique equilibrium
#
# E3, claim C2 at initialisation: the layer map z -> (1/sqrt m) relu(W z + U x) is a
# contraction when ||W/sqrt(m)||_2 < 1, and for Gaussian W that norm is about 2 sigma_w.
# So sigma_w < 1/2 guarantees a unique equilibrium that Picard iteration finds. Beyond it the
# guarantee is gone, but the kernel fixed point still exists while sigma_w^2 < 2 (the
# "mean-field" regime); at sigma_w^2 >= 2 the features blow up. Panels against sigma_w, with
# the three regimes shaded: ||W/sqrt(m)||_2 per seed with 2 sigma_w; median Picard
# iterations; fraction of seeds whose solve converged.
#
# Inputs: `results/<tier>/random_deq/e3/{rows,summary}.csv` and `meta.json` (the solver
# tolerance; rule random_deq_e3).
# Outputs: `figures/fig_wellposed.pdf` and `values/fig_wellposed.json` (macros).

# %%
import math

import matplotlib.pyplot as plt
import pandas as pd

from overdeq.values import latex_number
from overdeq_figures import DATASET_NAMES, TEXT_WIDTH, label_panels, open_job, use_style, verdict

# %% [markdown]
# Parameters: under Snakemake they come from the rule; by hand, from the defaults. `sigma_w`
# is the paper's initialisation (config: random_deq.e1.sigma_w), where the text quotes the
# iteration count. The check of C2 at initialisation is C2d of config/claims.yaml (verdict in
# verify.json); NORM_TOL is this script's tolerance for a statement the text adds:
# ||W/sqrt(m)||_2 matches 2 sigma_w when within NORM_TOL (relative).

# %% tags=["parameters"]
# by hand: reads results/$OVERDEQ_TIER/ (default quick), writes scratch/<tier>/
job = open_job(
    "fig_wellposed",
    globals().get("snakemake"),
    kind="figure",
    inputs={
        "rows": "results/{tier}/random_deq/e3/rows.csv",
        "summary": "results/{tier}/random_deq/e3/summary.csv",
        "meta": "results/{tier}/random_deq/e3/meta.json",
    },
    params={"sigma_w": 0.4},
)
NORM_TOL = 0.05

# %%
DEFAULT_SIGMA_W = float(job.params["sigma_w"])
rows, summary = job.table("rows"), job.table("summary")
solver_tol = float(job.json("meta")["params"]["tol"])
use_style()
rows["converged"] = rows.converged.astype(bool)
max_iter = int(rows.iterations.max())  # the cap: unconverged solves stop there

# %% [markdown]
# Regime boundaries: 2 sigma_w = 1 and sigma_w^2 = 2; the shading spans the tested range.
# The job labelled every row with its regime: the shading must agree with those labels.

# %%
lo, hi = 0.0, float(rows.sigma_w.max()) + 0.05
edges = {
    "contraction": (lo, 0.5),
    "mean-field": (0.5, math.sqrt(2)),
    "divergent": (math.sqrt(2), max(hi, math.sqrt(2) + 0.05)),
}
shade = {"contraction": "#dbe9f6", "mean-field": "#fdf0d5", "divergent": "#f6d5d5"}
REGIMES = list(edges)
shaded = [next(r for r, (a, b) in edges.items() if a <= sw < b) for sw in rows.sigma_w]
if disagree := sorted(set(rows.sigma_w[rows.regime != shaded])):
    raise ValueError(f"{job.input['rows']}: the regime column disagrees at sigma_w {disagree}")


def shade_regimes(ax: plt.Axes) -> None:
    for name in REGIMES:
        ax.axvspan(*edges[name], color=shade[name], lw=0, zorder=0, label=name)
    ax.set_xlim(lo, edges["divergent"][1])


# %%
fig, axes = plt.subplots(1, 3, figsize=(TEXT_WIDTH, 2.5), sharex=True)
ax = axes[0]
shade_regimes(ax)
ax.plot(rows.sigma_w, rows.w_norm, "o", ms=2.5, color="C0", label=r"$\|W/\sqrt{m}\|_2$")
sw = summary.sigma_w
ax.plot(sw, 2 * sw, "-", color="0.3", lw=0.8, label=r"$2\sigma_w$")
ax.axhline(1.0, color="0.3", ls=":", lw=0.8)
ax.set(xlabel=r"$\sigma_w$", ylabel=r"$\|W/\sqrt{m}\|_2$", ylim=(0, None))
handles, labels = ax.get_legend_handles_labels()
ax.legend(handles[len(REGIMES) :], labels[len(REGIMES) :], loc="upper left")

ax = axes[1]
shade_regimes(ax)
ax.plot(summary.sigma_w, summary.iterations_median, "o-", ms=3, color="C1")
ax.axhline(max_iter, color="0.3", ls=":", lw=0.8)
ax.set(xlabel=r"$\sigma_w$", ylabel="Picard iterations (median)", yscale="log")

ax = axes[2]
shade_regimes(ax)
ax.plot(summary.sigma_w, summary.converged_fraction, "o-", ms=3, color="C2")
ax.set(xlabel=r"$\sigma_w$", ylabel="converged fraction", ylim=(-0.03, 1.03))
ax.legend(
    title="regime",
    loc="center left",
    frameon=True,
    facecolor="white",
    edgecolor="0.8",
    framealpha=1,
)
label_panels(axes, ["spectral norm at init", "Picard iterations", "converged solves"])

# %% [markdown]
# Numbers and verdicts for the text (that every solve of the contraction regime converges is
# check C2d). The divergence verdict needs every solve at sigma_w^2 >= 2 to fail.

# %%
contr = rows[rows.regime == "contraction"]
mean_field = rows[rows.regime == "mean-field"]
divergent = rows[rows.regime == "divergent"]
norm_dev = float((rows.w_norm / (2 * rows.sigma_w) - 1).abs().max())
all_conv = summary[summary.converged_fraction == 1.0]
last_converged = float(all_conv.sigma_w.max()) if len(all_conv) else math.nan
default = summary[summary.sigma_w.round(6) == DEFAULT_SIGMA_W]


def fraction(part: pd.DataFrame) -> str:
    return latex_number(float(part.converged.mean()), 2) if len(part) else "n/a"


values = {
    "wellposedData": DATASET_NAMES[rows.data.iloc[0]],
    "wellposedN": latex_number(int(rows.n.iloc[0])),
    "wellposedWidth": latex_number(int(rows.width.iloc[0])),
    "wellposedSeeds": latex_number(int(rows.seed.nunique())),
    "wellposedSigmaMin": f"{rows.sigma_w.min():g}",
    "wellposedSigmaMax": f"{rows.sigma_w.max():g}",
    "wellposedSigmaCount": latex_number(int(rows.sigma_w.nunique())),
    "wellposedMaxIter": latex_number(max_iter),
    "wellposedTol": latex_number(solver_tol),
    "wellposedNormDev": latex_number(100 * norm_dev, 2),
    "wellposedNormTol": latex_number(int(round(100 * NORM_TOL))),
    "wellposedVerdictNorm": verdict(norm_dev <= NORM_TOL),
    "wellposedContractionMaxNorm": latex_number(float(contr.w_norm.max()), 3),
    "wellposedContractionConverged": fraction(contr),
    "wellposedMeanFieldConverged": fraction(mean_field),
    "wellposedLastConverged": f"{last_converged:g}",
    "wellposedDivergentConverged": fraction(divergent),
    "wellposedVerdictDivergent": verdict(not divergent.converged.any(), len(divergent) > 0),
    "wellposedDefaultSigma": f"{DEFAULT_SIGMA_W:g}",
    "wellposedDefaultIters": (
        latex_number(float(default.iterations_median.iloc[0])) if len(default) else "n/a"
    ),
}
job.save_figure(fig)
job.save_values(values)

# %% [markdown]
# What this shows: ||W/sqrt(m)||_2 sits on 2 sigma_w, so sigma_w < 1/2 is exactly the
# contraction regime, where every solve converges in a few dozen iterations. The contraction
# condition is sufficient, not necessary: Picard still converges for part of the mean-field
# regime, more and more slowly, and fails before sigma_w^2 = 2; beyond it no solve converges.
