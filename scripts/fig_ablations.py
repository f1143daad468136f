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
# The released scripts differ from the paper's setting in four ways (paper/sections/quirks.tex). One
# panel each:
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
# Outputs: `figures/fig_ablations.{pdf,png}`, `results/<tier>/values/fig_ablations.json`.

# %%
import matplotlib.pyplot as plt
import numpy as np
import seaborn as sns

from overdeq.values import latex_number
from overdeq_figures import TEXT_WIDTH, label, label_panels, open_job, plain_log_labels, use_style

# %% [markdown]
# Parameters: under Snakemake from the rule; by hand the defaults below (the ablation grid of
# config/config.yaml).

# %% tags=["parameters"]
# by hand: reads results/$OVERDEQ_TIER/ (default quick), writes scratch/<tier>/
job = open_job(
    "fig_ablations",
    globals().get("snakemake"),
    kind="figure",
    inputs={
        "runs": "results/{tier}/aggregate/train_runs.csv",
        "history": "results/{tier}/aggregate/train_history.csv",
        "gradient_error": "results/{tier}/ablations/gradient_error.csv",
    },
    params={"dataset": "identity", "width": 640, "seed": 0},
)

# %%
DATASET, WIDTH, SEED = job.params["dataset"], int(job.params["width"]), int(job.params["seed"])
runs, history, gerr = job.table("runs"), job.table("history"), job.table("gradient_error")
use_style()

# %% [markdown]
# The ablation grid's first data set, width and seed (the main grid runs them too).

# %%
sel = (history["dataset"] == DATASET) & (history["width"] == WIDTH) & (history["seed"] == SEED)
SETTINGS = ["calibrated", "released", "released_tight", "released_calibrated_lr"]
curves = history[sel & history["setting"].isin(SETTINGS)].assign(
    setting=lambda d: d["setting"].map(label)
)
released = history[(history["setting"] == "released") & history["lambda_min_legacy"].notna()]
readout = released.assign(ratio=released["lambda_min_legacy"] / released["lambda_min"])
bug_run = runs[
    (runs["setting"] == "width_bug") & (runs["dataset"] == DATASET) & (runs["width"] == WIDTH)
]

# %%
fig, axes = plt.subplots(2, 2, figsize=(TEXT_WIDTH, 4.2))
ax = axes[0, 0]
allblocks = gerr[gerr["block"] == "all"]
sns.lineplot(
    data=allblocks.assign(method=allblocks["method"].map(label)),
    x="tol",
    y="rel_error",
    hue="method",
    marker="o",
    ax=ax,
)
ax.axvline(1e-2, color="0.5", ls=":", lw=0.8)
ax.set(
    xscale="log",
    yscale="log",
    xlabel="solver tolerance",
    ylabel=r"$\|g-g^\ast\|/\|g^\ast\|$",
)
ax.legend(title=None, loc="upper left")

ax = axes[0, 1]
order = [label(s) for s in SETTINGS]  # one colour and one dash pattern per setting
styled = dict(hue="setting", style="setting", hue_order=order, style_order=order)
sns.lineplot(data=curves, x="step", y="loss", ax=ax, **styled)
ax.set(yscale="log", xlabel="GD step $t$", ylabel="loss")
ax.legend(title=None, loc="lower left")

ax = axes[1, 0]
sns.lineplot(
    data=readout, x="step", y="ratio", units="run", estimator=None, ax=ax, lw=0.7, color="C3"
)
ax.axhline(1.0, color="0.4", ls=":", lw=0.8)
ax.set(yscale="log", xlabel="GD step $t$", ylabel=r"logged / true $\lambda_{\min}$")
plain_log_labels(ax)

ax = axes[1, 1]
init = history[sel & (history["step"] == 0) & history["setting"].isin(["released", "width_bug"])]
bars = init.groupby("setting")["lipschitz"].first()
ax.bar(
    [label(s).replace(", ", ",\n") for s in bars.index],
    list(bars.values),
    color=["C0", "C3"][: len(bars)],
    width=0.5,
)
ax.axhline(1.0, color="0.4", ls=":", lw=0.8)
ax.text(0, 1.05, "contraction limit", va="bottom", ha="center", color="0.3")
ax.set(ylabel=r"Lipschitz bound $s\,\|W_0\|_2$", xlim=(-0.5, 1.5))
ax.set_ylim(0, 1.25 * max(float(bars.max()), 1.0))
if len(bug_run) and "width_bug" in bars.index:
    ax.text(
        list(bars.index).index("width_bug"),
        float(bars["width_bug"]) * 1.03,
        f"{bug_run['status'].iloc[0]} at step {int(bug_run['steps_done'].iloc[0])}",
        ha="center",
        va="bottom",
    )
label_panels(
    axes.flat,
    ["solver tolerance: gradient error", "learning rate", "eigenvalue readout", "width-scale bug"],
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


def tight_iters(method):
    row = allblocks[(allblocks.method == method) & np.isclose(allblocks.tol, 1e-6)]
    return latex_number(int(row.fwd_iters.iloc[0]))


rel_runs = runs[runs["setting"] == "released"]
values = {
    "ablDataset": DATASET.replace("_", " "),
    "ablWidth": latex_number(WIDTH),
    "ablGradErrReleased": latex_number(gerr_at("released", 1e-2)),
    "ablGradErrExact": latex_number(gerr_at("exact", 1e-2)),
    "ablGradErrTight": latex_number(gerr_at("released", 1e-6)),
    "ablItersReleasedTight": tight_iters("released"),
    "ablItersExactTight": tight_iters("exact"),
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
job.save_figure(fig)
job.save_values(values)

# %% [markdown]
# What this shows: the released tolerance costs a visible gradient error; the released
# learning rate, not the solver, is why the released runs barely train; the logged
# "lambda_min" can be off by a large factor; and the width-scale bug destroys the
# equilibrium the theory is about.
