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
# # Figure `fig_invariants` (E5): the equilibrium exists throughout, training is lazy
#
# Claim C2: the layer map stays a contraction along training, ||W(t)/sqrt(m)||_2 < 1, so the
# equilibrium exists and is unique at every step; and the proof's invariants hold:
# lambda_min(Z(t)Z(t)^T) >= lambda_0 / 2 and the weights move little, less as m grows.
# Calibrated runs only. Panels: the spectral norm, the Gram eigenvalue ratio, the final
# relative movement of W, U, a against width (log-log), and the solver iterations.
#
# Inputs: `results/<tier>/aggregate/train_{runs,history}.csv`.
# Outputs: `figures/fig_invariants.pdf`, `results/<tier>/values/fig_invariants.json`.

# %%
import os

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns

from overdeq.plotting import latex_number, save_figure, use_style, write_values

# %%
try:
    RUNS, HISTORY = snakemake.input.runs, snakemake.input.history  # noqa: F821
    FIGURE, VALUES = snakemake.output.figure, snakemake.output.values  # noqa: F821
except NameError:
    TIER = os.environ.get("OVERDEQ_TIER", "quick")  # interactive: which results to read
    RUNS = f"results/{TIER}/aggregate/train_runs.csv"
    HISTORY = f"results/{TIER}/aggregate/train_history.csv"
    FIGURE, VALUES = "figures/fig_invariants.pdf", f"results/{TIER}/values/fig_invariants.json"

runs = pd.read_csv(RUNS)
history = pd.read_csv(HISTORY)
use_style()

# %%
cal = history[history["setting"] == "calibrated"].copy()
cal["lambda_ratio"] = cal["lambda_min"] / cal.groupby("run")["lambda_min"].transform("first")
cal_runs = runs[(runs["setting"] == "calibrated") & (runs["status"] == "finished")]

# %% [markdown]
# Movement against width: least-squares slope of log(movement) on log(m), per block. Lazy
# training predicts movement ~ m^(-1/2) for W and U.


# %%
def loglog_slope(x, y):
    return float(np.polyfit(np.log(x), np.log(y), 1)[0])


move = cal_runs.melt(
    id_vars=["width", "dataset"],
    value_vars=["final_move_W", "final_move_U", "final_move_a"],
    var_name="block",
    value_name="movement",
)
move["block"] = move["block"].str.replace("final_move_", "")
slopes = {b: loglog_slope(g.width, g.movement) for b, g in move.groupby("block")}

# %%
fig, axes = plt.subplots(1, 4, figsize=(7.2, 2.1), constrained_layout=True)
kw = dict(
    data=cal,
    x="step",
    hue="width",
    units="run",
    estimator=None,
    palette="viridis",
    lw=0.8,
    legend=False,
)
sns.lineplot(y="w_norm", ax=axes[0], **kw)
axes[0].axhline(1.0, color="0.4", ls=":", lw=0.8)
axes[0].set(xlabel="GD step $t$", ylabel=r"$\|W_t/\sqrt{m}\|_2$", ylim=(0, 1.1))
sns.lineplot(y="lambda_ratio", ax=axes[1], **kw)
axes[1].axhline(0.5, color="0.4", ls=":", lw=0.8)
axes[1].set(xlabel="GD step $t$", ylabel=r"$\lambda_{\min}(Z_tZ_t^\top)/\lambda_0$", ylim=(0, 1.1))
sns.scatterplot(data=move, x="width", y="movement", hue="block", ax=axes[2], s=14)
widths = sorted(move["width"].unique())
axes[2].set(
    xscale="log", yscale="log", xlabel="width $m$", ylabel=r"$\|\theta_T-\theta_0\|/\|\theta_0\|$"
)
axes[2].set_xticks(widths, [str(w) for w in widths])
axes[2].minorticks_off()
axes[2].legend(frameon=False, fontsize=6, title=None, loc="lower left")
iters = cal.melt(
    id_vars=["step", "run"],
    value_vars=["fwd_iters", "bwd_iters"],
    var_name="solve",
    value_name="iterations",
).dropna()
sns.lineplot(data=iters, x="step", y="iterations", hue="solve", ax=axes[3], lw=0.9)
axes[3].set(xlabel="GD step $t$", ylabel="solver iterations")
axes[3].legend(frameon=False, fontsize=6)

# %%
values = {
    "invMaxWNorm": latex_number(float(cal_runs.max_w_norm.max())),
    "invMaxWNormExact": latex_number(float(cal_runs.max_w_norm_exact.max())),
    "invMinLambdaRatio": latex_number(float(cal_runs.min_lambda_ratio.min())),
    "invMoveSlopeW": latex_number(slopes.get("W", float("nan")), 2),
    "invMoveSlopeU": latex_number(slopes.get("U", float("nan")), 2),
    "invMoveSlopeA": latex_number(slopes.get("a", float("nan")), 2),
    "invMeanFwdIters": latex_number(float(cal_runs.mean_fwd_iters.mean()), 2),
    "invMeanBwdIters": latex_number(float(cal_runs.mean_bwd_iters.mean()), 2),
}
save_figure(fig, FIGURE)
write_values(VALUES, values)

# %% [markdown]
# What this shows: the spectral norm stays below 1 (the map is a contraction, so the
# equilibrium exists and is unique), lambda_min stays far above lambda_0/2, and the
# parameters move less the wider the network -- the lazy regime the proof relies on.
