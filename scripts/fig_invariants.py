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
import matplotlib.pyplot as plt
import numpy as np
import seaborn as sns

from overdeq.values import latex_number
from overdeq_figures import TEXT_WIDTH, label, label_panels, open_job, use_style

# %% tags=["parameters"]
# by hand: reads results/$OVERDEQ_TIER/ (default quick), writes scratch/<tier>/
job = open_job(
    "fig_invariants",
    globals().get("snakemake"),
    kind="figure",
    inputs={
        "runs": "results/{tier}/aggregate/train_runs.csv",
        "history": "results/{tier}/aggregate/train_history.csv",
    },
)

# %%
runs, history = job.table("runs"), job.table("history")
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

# %% [markdown]
# Panels (a) and (b) share one colour per width (the key in (a)).

# %%
fig, axes = plt.subplots(2, 2, figsize=(TEXT_WIDTH, 4.0))
widths = sorted(cal["width"].unique())
shades = dict(zip(widths, sns.color_palette("viridis", len(widths)), strict=True))
kw = dict(data=cal, x="step", hue="width", units="run", estimator=None, palette=shades, lw=0.8)
ax = axes[0, 0]
sns.lineplot(y="w_norm", ax=ax, **kw)
ax.axhline(1.0, color="0.4", ls=":", lw=0.8)
ax.set(xlabel="GD step $t$", ylabel=r"$\|W_t/\sqrt{m}\|_2$", ylim=(0, 1.1))
ax.legend(title="width $m$", loc="lower right", ncols=len(widths))
ax = axes[0, 1]
sns.lineplot(y="lambda_ratio", ax=ax, legend=False, **kw)
ax.axhline(0.5, color="0.4", ls=":", lw=0.8)
ax.set(xlabel="GD step $t$", ylabel=r"$\lambda_{\min}(Z_tZ_t^\top)/\lambda_0$", ylim=(0, 1.1))

ax = axes[1, 0]
blocks = move.assign(block=move["block"].map(label))
sns.scatterplot(data=blocks, x="width", y="movement", hue="block", ax=ax, s=14)
ax.set(
    xscale="log", yscale="log", xlabel="width $m$", ylabel=r"$\|\theta_T-\theta_0\|/\|\theta_0\|$"
)
ax.set_xticks(widths, [str(w) for w in widths])
ax.minorticks_off()
ax.legend(title=None, loc="upper right", ncols=3)
iters = cal.melt(
    id_vars=["step", "run"],
    value_vars=["fwd_iters", "bwd_iters"],
    var_name="solve",
    value_name="iterations",
).dropna()
ax = axes[1, 1]
solves = iters.assign(solve=iters["solve"].map(label))
# mean over runs, band from the fewest to the most iterations
sns.lineplot(data=solves, x="step", y="iterations", hue="solve", errorbar=("pi", 100), ax=ax)
ax.set(xlabel="GD step $t$", ylabel="solver iterations")
ax.legend(title=None, loc="center right")
label_panels(
    axes.flat,
    ["spectral norm", "Gram eigenvalue", "parameter movement at the end", "solver iterations"],
)

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
job.save_figure(fig)
job.save_values(values)

# %% [markdown]
# What this shows: the spectral norm stays below 1 (the map is a contraction, so the
# equilibrium exists and is unique), lambda_min stays far above lambda_0/2, and the
# parameters move less the wider the network -- the lazy regime the proof relies on.
