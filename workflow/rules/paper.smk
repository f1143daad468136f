# The paper: merge every script's numbers into one macros file, then compile with latexmk.


rule paper_values:
    input:
        PAPER_VALUES,
    output:
        "paper/generated/values.tex",
    log:
        f"{LOGS}/paper/values.log",
    params:
        tier=TIER,
    conda:
        ENV_PY
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
    conda:
        ENV_LATEX
    shell:
        "tools/latex.sh {input.tex} {output} {log}"
