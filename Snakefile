# overdeq: the reproducible artifact for "Global Convergence of Over-parameterized Deep
# Equilibrium Models" (Ling, Xie, Wang, Zhang, Lin; AISTATS 2023).
#
#   snakemake --cores all                                   default tier (CPU, minutes)
#   snakemake --cores all --configfile config/paper.yaml    paper tier (GPU)
#   snakemake --cores all figures/fig_loss.pdf              one figure
#
# Contents, in pipeline order: data -> random-DEQ analysis -> training -> aggregation ->
# figures -> paper.


from snakemake.utils import min_version

min_version("9.0")


include: "workflow/rules/config_yaml.smk"  # a YAML error names its file and line


configfile: "config/config.yaml"


report: "workflow/report/workflow.rst"


include: "workflow/rules/config_check.smk"  # the schema and more; fails before any job
include: "workflow/rules/common.smk"
include: "workflow/rules/data.smk"
include: "workflow/rules/random_deq.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/figures.smk"
include: "workflow/rules/paper.smk"
include: "workflow/rules/cluster.smk"
include: "workflow/rules/plan.smk"  # snakemake plan: the predicted cost (not in rule all)


rule all:
    input:
        "paper/main.pdf",
        f"{RES}/verify.json",
        every_output(),  # so that a missing intermediate file is rebuilt (common.smk)
