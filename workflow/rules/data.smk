# Data: download (or verify hand-placed) raw files, then prepare the arrays each experiment
# trains on. Raw files are protected: a 170 MB download is never deleted by a rerun.


rule fetch_mnist:
    output:
        [protected(p) for p in RAW_FILES["mnist"]],
    log:
        "logs/data/fetch_mnist.log",
    params:
        root=raw_root,
    shell:
        "overdeq data fetch --data mnist --data-root {params.root} > {log} 2>&1"


rule fetch_cifar10:
    output:
        [protected(p) for p in RAW_FILES["cifar10"]],
    log:
        "logs/data/fetch_cifar10.log",
    params:
        root=raw_root,
    shell:
        "overdeq data fetch --data cifar10 --data-root {params.root} > {log} 2>&1"


rule prepare_data:
    input:
        raw=raw_inputs,
    output:
        f"{RES}/data/{{dataset}}_n{{n}}_seed{{seed}}.npz",
    log:
        f"{LOGS}/data/{{dataset}}_n{{n}}_seed{{seed}}.log",
    benchmark:
        f"{BENCH}/data/{{dataset}}_n{{n}}_seed{{seed}}.tsv"
    params:
        args=prepare_args,
        root=DATA_ROOT,
    shell:
        "OVERDEQ_OFFLINE=1 overdeq data prepare {params.args} --data-root {params.root}"
        " --out {output} > {log} 2>&1"
