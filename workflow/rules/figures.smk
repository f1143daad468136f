# Figures and tables: one literate script in scripts/ per artefact. A figure is a PDF for
# the paper and a PNG for browsers (the HTML report); each script also writes the numbers the
# paper quotes as a JSON file of LaTeX macros under results/<tier>/values/. A script declares
# the input, output and params names it reads (open_job in overdeq_figures); its rule must
# give exactly those (tests/test_figures.py).


FIG_LOSS = paper_artefact("fig_loss")
TAB_TRAINING = paper_artefact("tab_training", kind="table")
FIG_INVARIANTS = paper_artefact("fig_invariants")
FIG_RATE = paper_artefact("fig_rate")
FIG_ABLATIONS = paper_artefact("fig_ablations")
TAB_COMPUTE = paper_artefact("tab_compute", kind="table")


rule fig_loss:
    input:
        runs=f"{RES}/aggregate/train_runs.csv",
        history=f"{RES}/aggregate/train_history.csv",
    output:
        figure=FIG_LOSS["figure"],
        png=FIG_LOSS["png"],
        values=FIG_LOSS["values"],
    log:
        f"{LOGS}/figures/fig_loss.log",
    benchmark:
        f"{BENCH}/figures/fig_loss.tsv"
    params:
        settings=list(TRAINING["grids"]["main"]["settings"]),
    script:
        "../../scripts/fig_loss.py"


rule tab_training:
    input:
        runs=f"{RES}/aggregate/train_runs.csv",
    output:
        table=TAB_TRAINING["table"],
        html=TAB_TRAINING["html"],
        values=TAB_TRAINING["values"],
    log:
        f"{LOGS}/figures/tab_training.log",
    benchmark:
        f"{BENCH}/figures/tab_training.tsv"
    script:
        "../../scripts/tab_training.py"


rule fig_invariants:
    input:
        runs=f"{RES}/aggregate/train_runs.csv",
        history=f"{RES}/aggregate/train_history.csv",
    output:
        figure=FIG_INVARIANTS["figure"],
        png=FIG_INVARIANTS["png"],
        values=FIG_INVARIANTS["values"],
    log:
        f"{LOGS}/figures/fig_invariants.log",
    benchmark:
        f"{BENCH}/figures/fig_invariants.tsv"
    script:
        "../../scripts/fig_invariants.py"


rule fig_rate:
    input:
        runs=f"{RES}/aggregate/train_runs.csv",
    output:
        figure=FIG_RATE["figure"],
        png=FIG_RATE["png"],
        values=FIG_RATE["values"],
    log:
        f"{LOGS}/figures/fig_rate.log",
    benchmark:
        f"{BENCH}/figures/fig_rate.tsv"
    script:
        "../../scripts/fig_rate.py"


rule fig_ablations:
    input:
        runs=f"{RES}/aggregate/train_runs.csv",
        history=f"{RES}/aggregate/train_history.csv",
        gradient_error=f"{RES}/ablations/gradient_error.csv",
    output:
        figure=FIG_ABLATIONS["figure"],
        png=FIG_ABLATIONS["png"],
        values=FIG_ABLATIONS["values"],
    log:
        f"{LOGS}/figures/fig_ablations.log",
    benchmark:
        f"{BENCH}/figures/fig_ablations.tsv"
    params:
        dataset=TRAINING["grids"]["ablations"]["datasets"][0],
        width=TRAINING["grids"]["ablations"]["widths"][0],
        seed=TRAINING["grids"]["ablations"]["seeds"][0],
    script:
        "../../scripts/fig_ablations.py"


rule tab_compute:
    input:
        benchmarks=compute_benchmark_files(),
        runs=f"{RES}/aggregate/train_runs.csv",
        lock="requirements.lock",
    output:
        table=TAB_COMPUTE["table"],
        html=TAB_COMPUTE["html"],
        values=TAB_COMPUTE["values"],
    log:
        f"{LOGS}/figures/tab_compute.log",
    params:
        groups=compute_benchmarks(),
        device=COMPUTE["device"],
        threads=COMPUTE["threads"],
    script:
        "../../scripts/tab_compute.py"
