# Training experiments (E4-E6): full-batch GD for every data set x setting x width x seed,
# then one table per run and one per logged step. Checkpoints sit beside the outputs but are
# not declared, so Snakemake never deletes them: a failed or killed job resumes when rerun.


rule train:
    input:
        data=train_data,
    output:
        summary=f"{RES}/train/{{dataset}}/{{setting}}/m{{width}}/seed{{seed}}/summary.json",
        history=f"{RES}/train/{{dataset}}/{{setting}}/m{{width}}/seed{{seed}}/history.csv",
    log:
        f"{LOGS}/train/{{dataset}}/{{setting}}/m{{width}}/seed{{seed}}.log",
    benchmark:
        f"{BENCH}/train/{{dataset}}/{{setting}}/m{{width}}/seed{{seed}}.tsv"
    threads: COMPUTE["threads"]
    resources:
        gpu=GPUS_PER_JOB,
    params:
        args=train_args,
    shell:
        "overdeq train --data-file {input.data} {params.args} --threads {threads}"
        " --out $(dirname {output.summary}) --overwrite > {log} 2>&1"


rule aggregate_training:
    input:
        summaries=train_summaries(),
        # read beside each summary: listed so that a missing one reruns its training job
        histories=train_histories(),
        # the code that turns runs into rows: a change to it redoes these cheap tables (the
        # training jobs themselves are redone only by --forcerun, see docs/reliability.md)
        code="src/overdeq/aggregate.py",
    output:
        runs=f"{RES}/aggregate/train_runs.csv",
        history=f"{RES}/aggregate/train_history.csv",
    log:
        f"{LOGS}/aggregate/training.log",
    shell:
        "overdeq aggregate {input.summaries} --out-runs {output.runs}"
        " --out-history {output.history} > {log} 2>&1"


rule gradient_error:
    input:
        data=gradient_error_data(),
    output:
        f"{RES}/ablations/gradient_error.csv",
    log:
        f"{LOGS}/ablations/gradient_error.log",
    benchmark:
        f"{BENCH}/ablations/gradient_error.tsv"
    threads: COMPUTE["threads"]
    params:
        width=ABLATIONS["gradient_error"]["width"],
        seed=ABLATIONS["gradient_error"]["seed"],
        tols=" ".join(str(t) for t in ABLATIONS["gradient_error"]["tols"]),
    shell:
        "overdeq gradient-error --data-file {input.data} --width {params.width}"
        " --seed {params.seed} --tols {params.tols} --threads {threads} --out {output}"
        " > {log} 2>&1"
