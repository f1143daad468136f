# The tier's predicted cost before anything runs (issue 11): `snakemake plan` (add
# `--configfile config/paper.yaml` for the paper tier) expands every job of the tier and hands
# the list to `overdeq plan`, which times a few GEMMs and small runs on this device and prints
# per experiment the predicted time here and on an H100 (an estimate from published
# throughput). Not part of `rule all`: nothing else needs it.


rule plan:
    output:
        jobs=f"{RES}/plan_jobs.json",
        plan=f"{RES}/plan.json",
    log:
        f"{LOGS}/plan.log",
    threads: COMPUTE["threads"]
    params:
        jobs=json.dumps(plan_jobs(), sort_keys=True, separators=(",", ":")),
    shell:
        "echo '{params.jobs}' > {output.jobs} && overdeq plan --jobs {output.jobs}"
        " --out {output.plan} --threads {threads} 2> {log}"
