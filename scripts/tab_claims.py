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
# and PASS/FAIL; then one verdict macro per claim for the text.
#
# Inputs: `results/<tier>/verify.json`.
# Outputs: `paper/generated/tab_claims.tex`, `results/<tier>/values/tab_claims.json`.

# %%
import json
import os

from overdeq.io import atomic_write_text
from overdeq.plotting import latex_table, write_values

# %%
try:
    REPORT = snakemake.input.report  # noqa: F821
    TABLE, VALUES = snakemake.output.table, snakemake.output.values  # noqa: F821
except NameError:
    TIER = os.environ.get("OVERDEQ_TIER", "quick")  # interactive: which results to read
    REPORT = f"results/{TIER}/verify.json"
    TABLE, VALUES = "paper/generated/tab_claims.tex", f"results/{TIER}/values/tab_claims.json"

with open(REPORT) as fh:
    report = json.load(fh)

# %% [markdown]
# Values are shown with four significant digits; a pair is the range over rows for checks
# that must hold row by row.


# %%
def tex_escape(text: str) -> str:
    for a, b in (
        ("\\", r"\textbackslash{}"),
        ("_", r"\_"),
        ("%", r"\%"),
        ("&", r"\&"),
        ("#", r"\#"),
        ("^", r"\^{}"),
        ("$", r"\$"),
    ):
        text = text.replace(a, b)
    return text


def fmt(value) -> str:
    if value is None:
        return "--"
    if isinstance(value, list):
        return "[" + ", ".join(fmt(v) for v in value) + "]"
    return f"{value:.4g}"


rows = [
    [
        c["check"],
        c["experiment"],
        tex_escape(c["what"]),
        fmt(c["value"]),
        tex_escape(c["condition"]),
        r"\textbf{" + c["status"] + "}",
    ]
    for c in report["checks"]
]
table = latex_table(
    ["check", "exp.", "what is measured", "value", "condition", ""],
    rows,
    align="llp{6.2cm}rll",
    caption_comment="made by scripts/tab_claims.py",
)
atomic_write_text(TABLE, table)

# %% [markdown]
# One macro per claim verdict (`\verdictCOne` ...) and counts for the text.

# %%
digits = {
    "0": "Zero",
    "1": "One",
    "2": "Two",
    "3": "Three",
    "4": "Four",
    "5": "Five",
    "6": "Six",
    "7": "Seven",
    "8": "Eight",
    "9": "Nine",
}
words = {"PASS": "holds", "FAIL": "does not hold", "n/a": "was not tested"}


def spelled(ident: str) -> str:
    """C3a -> CThreeA: macro names are letters only."""
    return "".join(digits.get(ch, ch.upper() if i else ch) for i, ch in enumerate(ident))


values = {}
for claim, verdict in report["claims"].items():
    values["verdict" + spelled(claim)] = words[verdict]
# one verdict and one condition per check, so the text can cite a check (\checkCThreeA,
# \checkCThreeACondition) and never restates a threshold of its own
for c in report["checks"]:
    values["check" + spelled(c["check"])] = words[c["status"]]
    values["check" + spelled(c["check"]) + "Condition"] = (
        r"\texttt{" + tex_escape(c["condition"] or "n/a") + "}"
    )
checks = report["checks"]
values["claimChecks"] = str(len(checks))
values["claimChecksPassed"] = str(sum(c["status"] == "PASS" for c in checks))
values["claimChecksFailed"] = str(sum(c["status"] == "FAIL" for c in checks))
write_values(VALUES, values)

# %% [markdown]
# What this shows: for each claim, the measured quantity and whether the data support it
# at this tier's scale; nothing in this table is typed by hand.
