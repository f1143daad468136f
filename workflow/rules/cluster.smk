# Where jobs run under a cluster executor (profiles/slurm, docs/cluster.md).
# Local rules run inside the Snakemake process on the submit host instead of going through
# sbatch: the downloads (compute nodes often have no internet access) and every step that
# only reads results and draws, tabulates, checks or typesets (seconds each; a SLURM job
# would spend longer in the queue). Everything else -- data preparation, training, the
# gradient-error and random-DEQ jobs -- is submitted. A new rule that only reads results
# belongs in this list. Without a cluster executor this file changes nothing.


localrules:
    all,
    fetch_mnist,
    fetch_cifar10,
    aggregate_training,
    fig_loss,
    tab_training,
    fig_invariants,
    fig_rate,
    fig_ablations,
    tab_compute,
    fig_kernel_limit,
    fig_init_condition,
    fig_wellposed,
    tab_kernels,
    claims_json,
    verify_claims,
    verify,
    tab_claims,
    paper_values,
    paper,
    arxiv,
