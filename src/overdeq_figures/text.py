r"""Words for figures and the paper: names of data sets and config keys, lists, verdicts, tables.

A figure never shows a raw config key (``released_calibrated_lr``, ``fwd_iters``): ``label``
turns a key into words, from the tables below, or by replacing underscores for a key a new
config adds.

Text with maths is written once, in LaTeX's inline form (``the gap $\lambda_0 > 0$``), and
typeset for each medium: ``tex_text`` for the paper (maths kept, the rest escaped),
``html_text`` for the HTML report (maths as MathML, which browsers render without any
script or network, by docutils' LaTeX-to-MathML converter). A table is written as LaTeX cells
by ``latex_table`` and, from the same cells, by ``html_table`` for a self-contained HTML
page (``html_page``).
"""

from __future__ import annotations

import html
import re

from docutils.utils.math.latex2mathml import tex2mathml

__all__ = [
    "DATASET_LABELS",
    "DATASET_NAMES",
    "DATASET_MACROS",
    "LABELS",
    "label",
    "words",
    "verdict",
    "tex_escape",
    "tex_text",
    "html_text",
    "latex_table",
    "html_table",
    "html_page",
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


def _math_spans(text: str) -> list[tuple[bool, str]]:
    r"""``text`` cut into (is_maths, part): ``$...$`` and ``\ensuremath{...}`` are maths."""
    parts: list[tuple[bool, str]] = []
    i = start = 0
    while i < len(text):
        if text[i] == "\\" and text.startswith("\\ensuremath{", i):
            depth, j = 1, i + len("\\ensuremath{")
            while j < len(text) and depth:
                depth += {"{": 1, "}": -1}.get(text[j], 0)
                j += 1
            if depth:
                raise ValueError(f"unbalanced braces after \\ensuremath in {text!r}")
            parts += [(False, text[start:i]), (True, text[i + len("\\ensuremath{") : j - 1])]
            i = start = j
        elif text[i] == "\\":
            i += 2  # an escaped character (\$, \_) or the first letter of a command
        elif text[i] == "$":
            end = text.find("$", i + 1)
            if end < 0:
                raise ValueError(f"a $ without its closing $ in {text!r} (write \\$ for a dollar)")
            parts += [(False, text[start:i]), (True, text[i + 1 : end])]
            i = start = end + 1
        else:
            i += 1
    parts.append((False, text[start:]))
    return [(maths, part) for maths, part in parts if part]


def tex_text(text: str) -> str:
    """Plain text with ``$...$`` maths, for LaTeX: the maths kept, the rest escaped."""
    return "".join(f"${part}$" if maths else tex_escape(part) for maths, part in _math_spans(text))


# what a table cell may hold outside maths, and its HTML: the output of tex_escape, bold and
# typewriter text, dashes and ties
_TEX_TEXT = [
    (r"\\textbackslash\{\}", "\\\\"),
    (r"\\\^\{\}", "^"),
    (r"\\([_%&#$])", r"\1"),
    (r"---", "\u2014"),
    (r"--", "\u2013"),
    (r"~", "\u00a0"),
]
_TEX_MARKUP = {"textbf": "strong", "texttt": "code", "emph": "em", "textit": "em"}


def _html_plain(tex: str) -> str:
    r"""HTML of LaTeX text without maths: escapes undone, \textbf/\texttt/\emph as tags."""
    out, pos = [], 0
    for m in re.finditer(r"\\(textbf|texttt|emph|textit)\{([^{}$]*)\}", tex):
        out += [_html_plain(tex[pos : m.start()]), f"<{_TEX_MARKUP[m.group(1)]}>"]
        out += [_html_plain(m.group(2)), f"</{_TEX_MARKUP[m.group(1)]}>"]
        pos = m.end()
    if out:
        return "".join(out) + _html_plain(tex[pos:])
    for pattern, replacement in _TEX_TEXT:
        tex = re.sub(pattern, replacement, tex)
    if command := re.search(r"\\[A-Za-z]+", tex):
        raise ValueError(
            f"LaTeX command {command.group()} outside maths in {tex!r}: html_text knows only "
            r"\textbf, \texttt, \emph and tex_escape's escapes; put maths inside $...$"
        )
    return html.escape(tex.replace("{", "").replace("}", ""), quote=False)


def html_text(text: str) -> str:
    r"""HTML of LaTeX-style text: ``$...$`` and ``\ensuremath{...}`` as inline MathML."""
    out = []
    for maths, part in _math_spans(text):
        if not maths:
            out.append(_html_plain(part))
            continue
        try:
            out.append(re.sub(r">\s+<", "><", tex2mathml(part)))
        except SyntaxError as exc:
            raise ValueError(f"maths {part!r} in {text!r}: {exc}") from None
    return "".join(out)


_HTML_STYLE = """
body { font-family: system-ui, sans-serif; font-size: 14px; color: #222; }
/* room on the left for the menu button the Snakemake report draws over the page */
body { margin: 1em 1em 1em 2.5em; }
h1 { font-size: 1.3em; }
table { border-collapse: collapse; margin-bottom: 1.5em; }
caption { caption-side: top; text-align: left; padding-bottom: 0.5em; }
th, td { padding: 0.25em 0.6em; border-bottom: 1px solid #ddd; vertical-align: top; }
thead th { border-bottom: 2px solid #444; text-align: left; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; }
td.PASS { color: #1a7f37; font-weight: bold; }
td.FAIL { color: #cf222e; font-weight: bold; }
"""


def html_table(
    columns: list[str],
    rows: list[list[str]],
    *,
    caption: str = "",
    align: str | None = None,
) -> str:
    """An HTML ``<table>`` from LaTeX cells as for ``latex_table`` (typeset by ``html_text``).

    ``align`` is latex_table's column spec (``r`` columns are right-aligned); a cell that is
    exactly PASS or FAIL (bold or not) gets that class, so verdicts stand out.
    """
    kinds = re.findall(r"p\{[^}]*\}|[lcr]", align or "l" * len(columns))
    if len(kinds) != len(columns) or any(len(row) != len(columns) for row in rows):
        raise ValueError(
            f"html_table: {len(columns)} columns, align {align!r} and rows of lengths "
            f"{sorted({len(r) for r in rows})} must agree"
        )

    def cell(text: str, kind: str) -> str:
        verdict = re.fullmatch(r"(?:\\textbf\{)?(PASS|FAIL)\}?", text)
        cls = verdict.group(1) if verdict else ("num" if kind == "r" else None)
        return (f'<td class="{cls}">' if cls else "<td>") + html_text(text) + "</td>"

    head = "".join(
        ('<th class="num">' if kind == "r" else "<th>") + html_text(c) + "</th>"
        for c, kind in zip(columns, kinds, strict=True)
    )
    body = "\n".join("<tr>" + "".join(map(cell, row, kinds)) + "</tr>" for row in rows)
    caption_html = f"<caption>{html_text(caption)}</caption>" if caption else ""
    return (
        f"<table>{caption_html}\n<thead><tr>{head}</tr></thead>\n<tbody>\n{body}\n</tbody>"
        "\n</table>\n"
    )


def html_page(title: str, *tables: str) -> str:
    """A self-contained HTML page (no script, nothing to fetch) holding ``html_table``s."""
    return (
        "<!DOCTYPE html>\n"
        f'<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>'
        f"<style>{_HTML_STYLE}</style></head>\n<body>\n<h1>{html.escape(title)}</h1>\n"
        + "\n".join(tables)
        + "</body></html>\n"
    )
