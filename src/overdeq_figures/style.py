"""The one plotting style, panel letters, and byte-stable figure files.

Figures are drawn at their printed size: ``TEXT_WIDTH`` is the paper's text width
(paper/main.tex: letter paper, 1 in margins), a script makes its figure that wide (or the
fraction of it the paper includes), and font sizes are then the sizes in print. The smallest
text is 7 pt (tests/test_figures.py measures every text of every figure in print).

``use_style`` sets a seaborn theme and rc settings only; it leaves matplotlib's backend alone,
so a notebook shows figures inline and a headless run falls back to Agg by itself.

Saved files carry no creation date, producer or software version: the same figure gives the
same bytes, so an unchanged figure does not make LaTeX rebuild.
"""

from __future__ import annotations

import io
import string
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from overdeq.io import atomic_write_bytes

__all__ = [
    "TEXT_WIDTH",
    "PNG_DPI",
    "PALETTE",
    "use_style",
    "label_panels",
    "plain_log_labels",
    "save_figure",
]

TEXT_WIDTH = 6.5  # inches: 8.5 in letter paper less two 1 in margins (paper/main.tex)
PNG_DPI = 200  # the PNG next to each PDF, for browsers (the HTML report)
PALETTE = "colorblind"
_RC = {
    "figure.figsize": (TEXT_WIDTH, 2.4),
    "figure.dpi": 100,
    "figure.constrained_layout.use": True,
    "savefig.bbox": "standard",  # the file is exactly the figure size: printed size = drawn size
    "pdf.fonttype": 42,
    "font.size": 8,
    "axes.titlesize": 8,
    "axes.labelsize": 8,
    "xtick.labelsize": 7,
    "ytick.labelsize": 7,
    "legend.fontsize": 7,
    "legend.title_fontsize": 7,
    "legend.frameon": False,
    "lines.linewidth": 1.2,
    "svg.hashsalt": "overdeq",
    "path.simplify": False,
}


def use_style() -> None:
    """seaborn's ticks theme with the colour-blind palette and the rc settings above."""
    import seaborn as sns

    sns.set_theme(context="paper", style="ticks", palette=PALETTE, rc=_RC)


def label_panels(axes: Iterable[Any], titles: Sequence[str] | None = None) -> None:
    """Title each panel '(a) title', '(b) title', ... in reading order, flush left."""
    axes = list(axes)
    titles = list(titles) if titles is not None else [""] * len(axes)
    if len(titles) != len(axes):
        raise ValueError(f"{len(axes)} panels but {len(titles)} titles")
    for letter, ax, title in zip(string.ascii_lowercase, axes, titles, strict=False):
        ax.set_title(f"({letter}) {title}".rstrip(), loc="left")


def plain_log_labels(ax: Any, axis: str = "y") -> None:
    """Label a log axis that spans about a decade with plain numbers at 1, 2, 3 and 5 times
    the powers of ten (0.2, 3, 50) instead of 2 x 10^-1."""
    from matplotlib.ticker import FuncFormatter, LogLocator

    fmt = FuncFormatter(lambda v, _: f"{v:g}")
    target = ax.yaxis if axis == "y" else ax.xaxis
    target.set_minor_locator(LogLocator(subs=(2.0, 3.0, 5.0)))
    target.set_major_formatter(fmt)
    target.set_minor_formatter(fmt)


def save_figure(fig: Any, path: str | Path, png: str | Path | None = None) -> None:
    """Save ``fig`` as PDF (and as PNG at ``PNG_DPI`` when ``png`` is given), byte-stable."""
    path = Path(path)
    fmt = path.suffix.lstrip(".") or "pdf"
    atomic_write_bytes(path, _render(fig, fmt))
    if png is not None:
        atomic_write_bytes(Path(png), _render(fig, "png"))


def _render(fig: Any, fmt: str) -> bytes:
    # no dates, producer or software version in the file: same figure, same bytes
    metadata = {
        "pdf": {"CreationDate": None, "Producer": None, "Creator": None},
        "png": {"Software": None},
    }.get(fmt)
    buf = io.BytesIO()
    fig.savefig(buf, format=fmt, metadata=metadata, dpi=PNG_DPI if fmt == "png" else None)
    return buf.getvalue()
