# The paper: check the claims, merge every script's numbers into one macros file, then
# compile with latexmk.


TAB_CLAIMS = paper_artefact("tab_claims", kind="table")


rule tab_claims:
    input:
        report=f"{RES}/verify.json",
        text=["paper/main.tex", *paper_sections()],  # the verdict macros it cites
    output:
        table=TAB_CLAIMS["table"],
        html=TAB_CLAIMS["html"],
        values=TAB_CLAIMS["values"],
    log:
        f"{LOGS}/figures/tab_claims.log",
    script:
        "../../scripts/tab_claims.py"


rule paper_values:
    input:
        PAPER_VALUES,
    output:
        "paper/generated/values.tex",
    log:
        f"{LOGS}/paper/values.log",
    params:
        tier=TIER,
    shell:
        "overdeq latex-values {input} --tier {params.tier} --out {output} > {log} 2>&1"


rule paper:
    input:
        tex="paper/main.tex",
        sections=paper_sections(),
        bib="paper/references.bib",
        values="paper/generated/values.tex",
        figures=PAPER_FIGURES,
        tables=PAPER_TABLES,
    output:
        "paper/main.pdf",
    log:
        f"{LOGS}/paper/latexmk.log",
    benchmark:
        f"{BENCH}/paper/latexmk.tsv"
    shell:
        "tools/latex.sh {input.tex} {output} {log}"


# The package never reads YAML: the workflow hands the claims to `overdeq verify` as JSON.
rule claims_json:
    input:
        "config/claims.yaml",
    output:
        f"{RES}/claims.json",
    log:
        f"{LOGS}/claims_json.log",
    run:
        yaml_to_json(input[0], output[0])


rule verify_claims:
    input:
        claims=rules.claims_json.output[0],
        tables=verify_inputs(),
        code="src/overdeq/verify.py",  # a change to the checks redoes the verdicts
    output:
        f"{RES}/verify.json",
    log:
        f"{LOGS}/verify.log",
    params:
        results=results_root,
        tier=TIER,
    shell:
        "overdeq verify --claims {input.claims} --results {params.results} --tier {params.tier}"
        " --out {output} > {log} 2>&1"


rule verify:
    input:
        f"{RES}/verify.json",
    log:
        f"{LOGS}/verify_show.log",
    shell:
        "overdeq verify --show {input} | tee {log}"


rule arxiv:
    input:
        pdf="paper/main.pdf",
        figures=PAPER_FIGURES,
    output:
        "dist/overdeq-arxiv.tar.gz",
    log:
        f"{LOGS}/paper/arxiv.log",
    shell:
        "tools/arxiv.sh paper {output} {log}"
