# Random-DEQ analysis (E1, E2, E3, E10): infinite-width kernels against finite-width random
# DEQs and weight-untied networks. Jobs call `overdeq random-deq`; scripts draw and tabulate.
#
#   results/<tier>/random_deq/eX/rows.csv     one row per measurement (rule random_deq; E10:
#                                             random_deq_e10)
#   results/<tier>/random_deq/eX/summary.csv  slopes, probabilities, ... (rule random_deq)
#   figures/fig_*.pdf, paper/generated/tab_kernels.tex                   (rule of that name)

RANDOM_DEQ = config["random_deq"]
RANDOM_DEQ_GPUS = 0 if RANDOM_DEQ["device"] == "cpu" else 1
RANDOM_DEQ_EXPERIMENTS = ("e1", "e2", "e3", "e10")
# each experiment's parameters, as the JSON object `overdeq random-deq` reads
# (with the data root, so real data sets are read from the files the fetch rules placed)
RANDOM_DEQ_JSON = {
    exp: json.dumps(
        {**RANDOM_DEQ[exp], "data_root": DATA_ROOT}, sort_keys=True, separators=(",", ":")
    )
    for exp in RANDOM_DEQ_EXPERIMENTS
}
# the raw downloads its data sets need (none for synthetic data and the bundled digits)
RANDOM_DEQ_RAW = {
    exp: [
        path
        for name in ([data] if isinstance(data, str) else data)
        for path in RAW_FILES.get(name, [])
    ]
    for exp, data in ((e, RANDOM_DEQ[e]["data"]) for e in RANDOM_DEQ_EXPERIMENTS)
}


FIG_KERNEL_LIMIT = paper_artefact("fig_kernel_limit")
FIG_INIT_CONDITION = paper_artefact("fig_init_condition")
FIG_WELLPOSED = paper_artefact("fig_wellposed")
TAB_KERNELS = paper_artefact("tab_kernels", kind="table")


# E1, E2 and E3 sample random DEQs (m x m weights, on random_deq.device). Per-experiment
# cluster resources: profiles/slurm/config.yaml addresses them through `wildcards.experiment`.
rule random_deq:
    input:
        raw=lambda wildcards: RANDOM_DEQ_RAW[wildcards.experiment],
    output:
        rows=random_deq_table("{experiment}", "rows.csv"),
        summary=random_deq_table("{experiment}", "summary.csv"),
        meta=random_deq_table("{experiment}", "meta.json"),
    log:
        f"{LOGS}/random_deq/{{experiment}}.log",
    benchmark:
        f"{BENCH}/random_deq/{{experiment}}.tsv"
    wildcard_constraints:
        experiment="e1|e2|e3",
    threads: COMPUTE["threads"]
    resources:
        gpu=RANDOM_DEQ_GPUS,
    params:
        json=lambda wildcards: RANDOM_DEQ_JSON[wildcards.experiment],
        device=RANDOM_DEQ["device"],
    shell:
        "OVERDEQ_OFFLINE=1 overdeq random-deq {wildcards.experiment} --params-json '{params.json}'"
        " --device {params.device} --out {output.rows} --summary {output.summary}"
        " --meta {output.meta} --threads {threads} > {log} 2>&1"


# E10 computes kernels only (no m x m weights): it runs on the CPU and has no summary, its
# rows are the table.
rule random_deq_e10:
    input:
        raw=RANDOM_DEQ_RAW["e10"],
    output:
        rows=random_deq_table("e10", "rows.csv"),
        meta=random_deq_table("e10", "meta.json"),
    log:
        f"{LOGS}/random_deq/e10.log",
    benchmark:
        f"{BENCH}/random_deq/e10.tsv"
    threads: COMPUTE["threads"]
    params:
        json=RANDOM_DEQ_JSON["e10"],
    shell:
        "OVERDEQ_OFFLINE=1 overdeq random-deq e10 --params-json '{params.json}' --device cpu"
        " --out {output.rows} --meta {output.meta} --threads {threads} > {log} 2>&1"


rule fig_kernel_limit:
    input:
        rows=random_deq_table("e1", "rows.csv"),
        summary=random_deq_table("e1", "summary.csv"),
    output:
        figure=FIG_KERNEL_LIMIT["figure"],
        png=FIG_KERNEL_LIMIT["png"],
        values=FIG_KERNEL_LIMIT["values"],
    log:
        f"{LOGS}/figures/fig_kernel_limit.log",
    benchmark:
        f"{BENCH}/figures/fig_kernel_limit.tsv"
    script:
        "../../scripts/fig_kernel_limit.py"


rule fig_init_condition:
    input:
        rows=random_deq_table("e2", "rows.csv"),
        summary=random_deq_table("e2", "summary.csv"),
    output:
        figure=FIG_INIT_CONDITION["figure"],
        png=FIG_INIT_CONDITION["png"],
        values=FIG_INIT_CONDITION["values"],
    log:
        f"{LOGS}/figures/fig_init_condition.log",
    benchmark:
        f"{BENCH}/figures/fig_init_condition.tsv"
    script:
        "../../scripts/fig_init_condition.py"


rule fig_wellposed:
    input:
        rows=random_deq_table("e3", "rows.csv"),
        summary=random_deq_table("e3", "summary.csv"),
        meta=random_deq_table("e3", "meta.json"),
    output:
        figure=FIG_WELLPOSED["figure"],
        png=FIG_WELLPOSED["png"],
        values=FIG_WELLPOSED["values"],
    log:
        f"{LOGS}/figures/fig_wellposed.log",
    benchmark:
        f"{BENCH}/figures/fig_wellposed.tsv"
    params:
        sigma_w=RANDOM_DEQ["e1"]["sigma_w"],  # the paper's initialisation
    script:
        "../../scripts/fig_wellposed.py"


rule tab_kernels:
    input:
        rows=rules.random_deq_e10.output.rows,
    output:
        table=TAB_KERNELS["table"],
        html=TAB_KERNELS["html"],
        values=TAB_KERNELS["values"],
    log:
        f"{LOGS}/figures/tab_kernels.log",
    benchmark:
        f"{BENCH}/figures/tab_kernels.tsv"
    params:
        sigma_w=RANDOM_DEQ["e1"]["sigma_w"],  # the paper's initialisation
    script:
        "../../scripts/tab_kernels.py"
