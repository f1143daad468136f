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
# # Figure `fig_ablations` (E7): what the released code's quirks change
#
# The released scripts differ from the paper's setting in four ways (shared/science.md,
# section 3). One panel each:
# (a) solver tolerance: gradient error at init against the exact implicit gradient, for
#     the released Anderson solver and for ours, across tolerances (released: 1e-2);
# (b) learning rate: the released algorithm with its learning rate, with a tight solver
#     tolerance, and with the calibrated step, against our calibrated paper-mode run;
# (c) the logged "lambda_min": the last value of an unordered eigenvalue list, against the
#     true smallest eigenvalue, along the released runs;
# (d) the width-scale bug: the 1/sqrt(m) factor read from the wrong width makes the map
#     expansive: the Lipschitz bound s ||W||_2 of the layer map at init, and what happened.
#
# Inputs: aggregated training tables, `results/<tier>/ablations/gradient_error.csv`.
# Outputs: `figures/fig_ablations.pdf`, `results/<tier>/values/fig_ablations.json`.

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
    GRADIENT_ERROR = snakemake.input.gradient_error  # noqa: F821
    FIGURE, VALUES = snakemake.output.figure, snakemake.output.values  # noqa: F821
    DATASET, WIDTH = snakemake.params.dataset, int(snakemake.params.width)  # noqa: F821
    SEED = int(snakemake.params.seed)  # noqa: F821
except NameError:
    TIER = os.environ.get("OVERDEQ_TIER", "quick")  # interactive: which results to read
    RUNS = f"results/{TIER}/aggregate/train_runs.csv"
    HISTORY = f"results/{TIER}/aggregate/train_history.csv"
    GRADIENT_ERROR = f"results/{TIER}/ablations/gradient_error.csv"
    FIGURE, VALUES = "figures/fig_ablations.pdf", f"results/{TIER}/values/fig_ablations.json"
    DATASET, WIDTH, SEED = "identity", 640, 0

runs = pd.read_csv(RUNS)
history = pd.read_csv(HISTORY)
gerr = pd.read_csv(GRADIENT_ERROR)
use_style()

# %% [markdown]
# The ablation grid's first data set, width and seed (the main grid runs them too).

# %%
sel = (history["dataset"] == DATASET) & (history["width"] == WIDTH) & (history["seed"] == SEED)
curves = history[
    sel
    & history["setting"].isin(
        ["calibrated", "released", "released_tight", "released_calibrated_lr"]
    )
]
released = history[(history["setting"] == "released") & history["lambda_min_legacy"].notna()]
readout = released.assign(ratio=released["lambda_min_legacy"] / released["lambda_min"])
bug_run = runs[
    (runs["setting"] == "width_bug") & (runs["dataset"] == DATASET) & (runs["width"] == WIDTH)
]

# %%
fig, axes = plt.subplots(1, 4, figsize=(7.4, 2.2), constrained_layout=True)
allblocks = gerr[gerr["block"] == "all"]
sns.lineplot(data=allblocks, x="tol", y="rel_error", hue="method", marker="o", ax=axes[0])
axes[0].axvline(1e-2, color="0.5", ls=":", lw=0.8)
axes[0].set(
    xscale="log",
    yscale="log",
    xlabel="solver tolerance",
    ylabel=r"$\|g-g^\ast\|/\|g^\ast\|$",
    title="(a) gradient error",
)
axes[0].legend(frameon=False, fontsize=6)
sns.lineplot(data=curves, x="step", y="loss", hue="setting", ax=axes[1], lw=0.9)
axes[1].set(yscale="log", xlabel="GD step $t$", ylabel="loss", title="(b) learning rate")
axes[1].legend(frameon=False, fontsize=5)
sns.lineplot(
    data=readout, x="step", y="ratio", units="run", estimator=None, ax=axes[2], lw=0.7, color="C3"
)
axes[2].axhline(1.0, color="0.4", ls=":", lw=0.8)
axes[2].set(
    yscale="log",
    xlabel="GD step $t$",
    ylabel="logged / true $\\lambda_{\\min}$",
    title="(c) eig readout",
)
init = history[sel & (history["step"] == 0) & history["setting"].isin(["released", "width_bug"])]
bars = init.groupby("setting")["lipschitz"].first()
axes[3].bar(list(bars.index), list(bars.values), color=["C0", "C3"][: len(bars)])
axes[3].axhline(1.0, color="0.4", ls=":", lw=0.8)
axes[3].set(ylabel=r"$s\,\|W_0\|_2$ (Lipschitz bound)", title="(d) width-scale bug")
if len(bug_run):
    axes[3].annotate(
        f"{bug_run['status'].iloc[0]} at step {int(bug_run['steps_done'].iloc[0])}",
        (0.5, 0.9),
        xycoords="axes fraction",
        ha="center",
        fontsize=7,
    )

# %% [markdown]
# Numbers for the text.


# %%
def gerr_at(method, tol):
    row = allblocks[(allblocks["method"] == method) & np.isclose(allblocks["tol"], tol)]
    return float(row["rel_error"].iloc[0]) if len(row) else float("nan")


def final_loss(setting):
    r = runs[
        (runs["setting"] == setting)
        & (runs["dataset"] == DATASET)
        & (runs["width"] == WIDTH)
        & (runs["seed"] == SEED)
    ]
    return float((r.final_loss / r.initial_loss).iloc[0]) if len(r) else float("nan")


rel_runs = runs[runs["setting"] == "released"]
values = {
    "ablDataset": DATASET.replace("_", " "),
    "ablWidth": latex_number(WIDTH),
    "ablGradErrReleased": latex_number(gerr_at("released", 1e-2)),
    "ablGradErrExact": latex_number(gerr_at("exact", 1e-2)),
    "ablGradErrTight": latex_number(gerr_at("released", 1e-6)),
    "ablItersReleasedTight": latex_number(
        int(
            allblocks[
                (allblocks.method == "released") & np.isclose(allblocks.tol, 1e-6)
            ].fwd_iters.iloc[0]
        )
    ),
    "ablItersExactTight": latex_number(
        int(
            allblocks[
                (allblocks.method == "exact") & np.isclose(allblocks.tol, 1e-6)
            ].fwd_iters.iloc[0]
        )
    ),
    "ablReductionReleased": latex_number(final_loss("released")),
    "ablReductionTight": latex_number(final_loss("released_tight")),
    "ablReductionReleasedCalibrated": latex_number(final_loss("released_calibrated_lr")),
    "ablReductionCalibrated": latex_number(final_loss("calibrated")),
    "ablReadoutMaxErr": latex_number(float(rel_runs.max_readout_error.max())),
    "ablReadoutMedianErr": latex_number(float(rel_runs.max_readout_error.median())),
    "ablWidthBugStatus": str(bug_run["status"].iloc[0]) if len(bug_run) else "not run",
    "ablWidthBugSteps": latex_number(int(bug_run["steps_done"].iloc[0])) if len(bug_run) else "n/a",
    "ablWidthBugLipschitz": latex_number(float(bars.get("width_bug", float("nan")))),
    "ablWidthBugMinResidual": latex_number(
        float(history[sel & (history["setting"] == "width_bug")]["fwd_residual"].min())
    ),
    "ablReleasedLipschitz": latex_number(float(bars.get("released", float("nan")))),
}
save_figure(fig, FIGURE)
write_values(VALUES, values)

# %% [markdown]
# What this shows: the released tolerance costs a visible gradient error; the released
# learning rate, not the solver, is why the released runs barely train; the logged
# "lambda_min" can be off by a large factor; and the width-scale bug destroys the
# equilibrium the theory is about.
