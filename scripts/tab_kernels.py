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
# # Table `tab_kernels`: the infinite-width kernels are positive definite on every data set
#
# E10. The theory's targets: lambda_* = lambda_min(K) of the DEQ conjugate kernel (what
# lambda_0 tends to, C3) and lambda_min(Theta) of the DEQ tangent kernel (what sets the rate
# of gradient descent in the kernel regime, C1), per data set and sigma_w. A positive entry
# means the initial condition is attainable at large width; Theta >= K in the PSD order, so
# its smallest eigenvalue is never below that of K.
#
# Inputs: `results/<tier>/random_deq/e10/rows.csv` (rule random_deq_e10).
# Outputs: `paper/generated/tab_kernels.tex` (a booktabs tabular), `tab_kernels.html` (the
# same for the report) and `values/tab_kernels.json` (macros).

# %%
from overdeq.values import latex_number
from overdeq_figures import (
    DATASET_MACROS,
    DATASET_NAMES,
    html_page,
    html_table,
    open_job,
    verdict,
    words,
)

# %% [markdown]
# Parameters: under Snakemake they come from the rule; by hand, from the defaults. `sigma_w`
# is the paper's initialisation (config: random_deq.e1.sigma_w), where the text quotes
# lambda_* for orthonormal and Gaussian inputs.

# %% tags=["parameters"]
# by hand: reads results/$OVERDEQ_TIER/ (default quick), writes scratch/<tier>/
job = open_job(
    "tab_kernels",
    globals().get("snakemake"),
    kind="table",
    inputs={"rows": "results/{tier}/random_deq/e10/rows.csv"},
    params={"sigma_w": 0.4},
)

# %%
DEFAULT_SIGMA_W = float(job.params["sigma_w"])
rows = job.table("rows")
datasets = [d for d in DATASET_NAMES if d in set(rows.data)]
rows["theta_over_k"] = rows.lambda_Theta / rows.lambda_K

# %% [markdown]
# The table: one row per sigma_w, two columns (K, Theta) per data set; a rule separates the
# contraction regime (2 sigma_w < 1) from the rest.

# %%
wide = rows.pivot(index="sigma_w", columns="data", values=["lambda_K", "lambda_Theta"])
sigmas = list(wide.index)
decimals = max(len(f"{sw:g}".partition(".")[2]) for sw in sigmas)  # one format per column
cols = "".join("rr" for _ in datasets)
lines = [
    rf"\begin{{tabular}}{{l{cols}}}",
    r"\toprule",
    " & ".join([""] + [rf"\multicolumn{{2}}{{c}}{{{DATASET_NAMES[d]}}}" for d in datasets])
    + r" \\",
    " ".join(rf"\cmidrule(lr){{{2 + 2 * i}-{3 + 2 * i}}}" for i in range(len(datasets))),
    " & ".join(
        [r"$\sigma_w$"] + [r"$\lambda_{\min}(K)$", r"$\lambda_{\min}(\Theta)$"] * len(datasets)
    )
    + r" \\",
    r"\midrule",
]
body = []
for i, sw in enumerate(sigmas):
    if i > 0 and 2 * sigmas[i - 1] < 1 <= 2 * sw:
        lines.append(r"\midrule")
    cells = [f"{sw:.{decimals}f}"]
    for d in datasets:
        cells += [
            latex_number(float(wide.loc[sw, ("lambda_K", d)])),
            latex_number(float(wide.loc[sw, ("lambda_Theta", d)])),
        ]
    lines.append(" & ".join(cells) + r" \\")
    body.append(cells)
lines += [r"\bottomrule", r"\end{tabular}"]

# %% [markdown]
# The same cells as an HTML page for the report (one header row: data set and kernel).

# %%
page = html_page(
    "Smallest eigenvalues of the limit kernels (E10)",
    html_table(
        [r"$\sigma_w$"]
        + [
            f"{DATASET_NAMES[d]}: {k}"
            for d in datasets
            for k in (r"$\lambda_{\min}(K)$", r"$\lambda_{\min}(\Theta)$")
        ],
        body,
        align="l" + cols,
        caption=r"Contraction regime: $2\sigma_w < 1$; $K$ is the DEQ kernel, $\Theta$ the tangent kernel.",
    ),
)

# %% [markdown]
# Numbers and verdicts for the text (that K is positive definite everywhere is check C3e): is
# lambda_min(Theta) >= lambda_min(K) everywhere, and does lambda_min(K) grow with sigma_w on
# every data set.

# %%
monotone = all(
    rows[rows.data == d].sort_values("sigma_w").lambda_K.diff().dropna().gt(0).all()
    for d in datasets
)
at_default = rows[rows.sigma_w.round(6) == DEFAULT_SIGMA_W].set_index("data")


values = {
    "tabKernelsN": latex_number(int(rows.n.iloc[0])),
    "tabKernelsDatasets": words([DATASET_NAMES[d] for d in datasets]),
    "tabKernelsSigmaMin": f"{min(sigmas):g}",
    "tabKernelsSigmaMax": f"{max(sigmas):g}",
    "tabKernelsSigmaU": f"{rows.sigma_u.iloc[0]:g}",
    "tabKernelsSigmaA": f"{rows.sigma_a.iloc[0]:g}",
    "tabKernelsLamKMin": latex_number(float(rows.lambda_K.min())),
    "tabKernelsThetaRatioMin": latex_number(float(rows.theta_over_k.min()), 2),
    "tabKernelsThetaRatioMax": latex_number(float(rows.theta_over_k.max()), 2),
    "tabKernelsVerdictThetaK": verdict(bool((rows.theta_over_k >= 1).all())),
    "tabKernelsVerdictMonotone": verdict(monotone),
    "tabKernelsDefaultSigma": f"{DEFAULT_SIGMA_W:g}",
    # the data sets the text quotes ("n/a" where this tier's grid lacks one, so the text
    # compiles at every tier)
    **{
        f"tabKernelsLamK{DATASET_MACROS[d]}": latex_number(float(at_default.loc[d, "lambda_K"]))
        if d in at_default.index
        else "n/a"
        for d in ("identity", "gaussian")
    },
}

# %%
job.save_table(
    "% Generated by scripts/tab_kernels.py. Do not edit.\n" + "\n".join(lines) + "\n", page
)
job.save_values(values)

# %% [markdown]
# What this shows: lambda_min(K) is positive for every data set and sigma_w, so a wide enough
# random DEQ meets the initial condition; it grows with sigma_w, while the gap to the data's
# conditioning is large (orthonormal inputs are best, real images are nearly collinear and
# have the smallest lambda_*). lambda_min(Theta) is always at least lambda_min(K): training
# all three weight matrices can only help the rate.
