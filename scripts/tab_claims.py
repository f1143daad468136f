# ---
# jupyter:
#   jupytext:
#     formats: py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Table `tab_claims`: the verdict on every claim at this tier
#
# Reads the verification report (`overdeq verify`, driven by config/claims.yaml) and
# typesets one row per check: the experiment, what is measured, the value, the condition
# and PASS/FAIL; then the verdict macros the text cites. The HTML page for the report also
# has one row per claim: its verdict and its statement.
#
# Inputs: `results/<tier>/verify.json`, the paper's LaTeX sources (which verdicts they cite).
# Outputs: `paper/generated/tab_claims.tex` and `.html`, `results/<tier>/values/tab_claims.json`.

# %%
import re

from overdeq_figures import html_page, html_table, latex_table, open_job, tex_escape, tex_text

# %% tags=["parameters"]
# by hand: reads results/$OVERDEQ_TIER/ (default quick), writes scratch/<tier>/
job = open_job(
    "tab_claims",
    globals().get("snakemake"),
    kind="table",
    inputs={
        "report": "results/{tier}/verify.json",
        "text": ["paper/main.tex", "paper/sections/*.tex"],
    },
)

# %%
report = job.json("report")

# %% [markdown]
# Values are shown with four significant digits; a pair is the range over rows for checks
# that must hold row by row. What a check measures is written in config/claims.yaml with its
# maths in `$...$`, typeset as maths here (`tex_text`) and in the HTML page (MathML).


# %%
def fmt(value) -> str:
    if value is None:
        return "--"
    if isinstance(value, list):
        return "[" + ", ".join(fmt(v) for v in value) + "]"
    return f"{value:.4g}"


OPERATORS = {">=": r"$\ge$", "<=": r"$\le$", "==": "$=$", ">": "$>$", "<": "$<$"}


def condition(text: str) -> str:
    r"""A check's condition (`min >= 0.5`) with its comparison typeset (min $\ge$ 0.5)."""
    return " ".join(OPERATORS.get(word, tex_escape(word)) for word in text.split(" "))


rows = [
    [
        c["check"],
        c["experiment"],
        tex_text(c["what"]),
        fmt(c["value"]),
        condition(c["condition"]),
        r"\textbf{" + c["status"] + "}",
    ]
    for c in report["checks"]
]
columns = ["check", "exp.", "what is measured", "value", "condition", "verdict"]
align = "llp{6.2cm}rll"
table = latex_table(
    columns[:-1] + [""], rows, align=align, caption_comment="made by scripts/tab_claims.py"
)
claims = [
    [claim, r"\textbf{" + v + "}", tex_text(report["statements"][claim])]
    for claim, v in report["claims"].items()
]
page = html_page(
    f"Claims and verdicts, tier {report['tier']}",
    html_table(
        ["claim", "verdict", "statement"],
        claims,
        align="llp{10cm}",
        caption="A claim holds when every check of it passes (n/a: not tested at this tier).",
    ),
    html_table(
        columns,
        rows,
        align=align,
        caption="Every check: what is measured, its value at this tier and the condition.",
    ),
)
job.save_table(table, page)

# %% [markdown]
# Macros for the text: a verdict per claim (`\verdictCOne`), a verdict and a condition per
# check (`\checkCThreeA`, `\checkCThreeACondition`), so the text never restates a threshold of
# its own. Only those the text cites are written (values.tex holds no unused macro); the
# rule reruns when the text changes.

# %%
DIGITS = "Zero One Two Three Four Five Six Seven Eight Nine".split()
WORDS = {"PASS": "holds", "FAIL": "does not hold", "n/a": "was not tested"}


def spelled(ident: str) -> str:
    """C3a -> CThreeA: macro names are letters only."""
    return "".join(
        DIGITS[int(ch)] if ch.isdigit() else (ch.upper() if i else ch) for i, ch in enumerate(ident)
    )


offered = {"verdict" + spelled(claim): WORDS[v] for claim, v in report["claims"].items()}
for c in report["checks"]:
    offered["check" + spelled(c["check"])] = WORDS[c["status"]]
    offered["check" + spelled(c["check"]) + "Condition"] = (
        r"\texttt{" + tex_escape(c["condition"] or "n/a") + "}"
    )
checks = report["checks"]
offered["claimChecks"] = str(len(checks))
offered["claimChecksPassed"] = str(sum(c["status"] == "PASS" for c in checks))
cited = set(re.findall(r"\\([A-Za-z]+)", job.text("text")))
job.save_values({name: text for name, text in offered.items() if name in cited})

# %% [markdown]
# What this shows: for each claim, the measured quantity and whether the data support it
# at this tier's scale; nothing in this table is typed by hand.
