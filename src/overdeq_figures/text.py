"""Words for figures and the paper: names of data sets and config keys, lists, verdicts, tables.

A figure never shows a raw config key (``released_calibrated_lr``, ``fwd_iters``): ``label``
turns a key into words, from the tables below, or by replacing underscores for a key a new
config adds.
"""

from __future__ import annotations

__all__ = [
    "DATASET_LABELS",
    "DATASET_NAMES",
    "DATASET_MACROS",
    "LABELS",
    "label",
    "words",
    "verdict",
    "tex_escape",
    "latex_table",
]

# long names for axis labels and table rows
DATASET_LABELS = {
    "identity": "identity rows",
    "gaussian": "Gaussian unit vectors",
    "digits": "digits 0/1 (8x8)",
    "mnist": "MNIST 0/1",
    "cifar10": "CIFAR-10 0/1 (gray)",
}
# short names for running text, and the letters-only form for macro names
DATASET_NAMES = {
    "identity": "identity",
    "gaussian": "Gaussian",
    "digits": "digits",
    "mnist": "MNIST",
    "cifar10": "CIFAR-10",
}
DATASET_MACROS = {
    "identity": "Identity",
    "gaussian": "Gaussian",
    "digits": "Digits",
    "mnist": "Mnist",
    "cifar10": "Cifar",
}

# config keys and table values as words: training settings (config/config.yaml), gradient
# methods of the E7 gradient-error job, solves, parameter blocks
LABELS = {
    "calibrated": "ours, calibrated step",
    "released": "released code",
    "released_tight": "released, tight tolerance",
    "released_calibrated_lr": "released, calibrated step",
    "width_bug": "released, width-scale bug",
    "exact": "exact implicit gradient",
    "fwd_iters": "forward solve",
    "bwd_iters": "backward solve",
    "W": "$W$",
    "U": "$U$",
    "a": "$a$",
}


def label(key: str) -> str:
    """Words for a config key or table value: from LABELS, else underscores become spaces."""
    return LABELS.get(key, str(key).replace("_", " "))


def words(items: list[str]) -> str:
    """An English list: 'a', 'a and b', 'a, b and c'."""
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def verdict(ok: bool, tested: bool = True) -> str:
    """The words the text uses for a statement the data were checked against."""
    return "not tested" if not tested else ("holds" if ok else "does not hold")


def tex_escape(text: str) -> str:
    """Plain text safe inside LaTeX (backslash, _, %, &, #, ^, $)."""
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


def latex_table(
    columns: list[str],
    rows: list[list[str]],
    *,
    align: str | None = None,
    caption_comment: str = "",
) -> str:
    """A booktabs tabular (no float: the paper wraps it) from already-formatted cells."""
    align = align or "l" * len(columns)
    lines = [
        f"% {caption_comment}" if caption_comment else "% generated table",
        rf"\begin{{tabular}}{{{align}}}",
        r"\toprule",
        " & ".join(columns) + r" \\",
        r"\midrule",
    ]
    lines += [" & ".join(row) + r" \\" for row in rows]
    lines += [r"\bottomrule", r"\end{tabular}"]
    return "\n".join(lines) + "\n"
