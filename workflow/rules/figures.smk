# Figures and tables: one literate script in scripts/ per artefact. Each also writes the
# numbers the paper quotes as a JSON file of LaTeX macros under results/<tier>/values/.


FIG_LOSS = paper_artefact("fig_loss")


rule fig_loss:
    input:
        runs=f"{RES}/aggregate/train_runs.csv",
        history=f"{RES}/aggregate/train_history.csv",
    output:
        figure=FIG_LOSS["figure"],
        values=FIG_LOSS["values"],
    log:
        f"{LOGS}/figures/fig_loss.log",
    benchmark:
        f"{BENCH}/figures/fig_loss.tsv"
    params:
        tier=TIER,
    conda:
        ENV_PY
    script:
        "../../scripts/fig_loss.py"
