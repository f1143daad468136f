"""What the figure and table scripts in ``scripts/`` share: the drawing layer of overdeq.

Where it lives, and why: ``overdeq`` is the numerical package and never sets up matplotlib.
The scripts' common code (where a script's inputs and outputs are, reading the tables the
jobs wrote, the one plotting style, byte-stable PDF and PNG files, words for config keys,
LaTeX tables) lives here, in a top-level package of its own beside ``overdeq`` in ``src/``,
installed by the same ``pyproject.toml``. The dependency goes one way: this package uses
``overdeq.values`` (the paper's macro files) and ``overdeq.io`` (atomic writes); ``overdeq``
never imports it, and a script imports nothing of ``overdeq`` but ``overdeq.values`` (both
walls are tests in ``tests/test_figures.py``).

Modules: ``job`` (a script's inputs, parameters and outputs under Snakemake or by hand, and
the loaders every table goes through), ``style`` (matplotlib style, panel letters, saving),
``text`` (names of data sets and settings, English lists, verdict words, maths for LaTeX and
HTML, LaTeX and HTML tables).
"""

from .job import (
    Job,
    MissingInput,
    open_job,
    read_json,
    read_lock,
    read_table,
    read_text,
    repo_root,
)
from .style import TEXT_WIDTH, label_panels, plain_log_labels, save_figure, use_style
from .text import (
    DATASET_LABELS,
    DATASET_MACROS,
    DATASET_NAMES,
    html_page,
    html_table,
    html_text,
    label,
    latex_table,
    tex_escape,
    tex_text,
    verdict,
    words,
)

__all__ = [
    "Job",
    "MissingInput",
    "open_job",
    "read_json",
    "read_table",
    "read_text",
    "read_lock",
    "repo_root",
    "TEXT_WIDTH",
    "label_panels",
    "plain_log_labels",
    "save_figure",
    "use_style",
    "DATASET_LABELS",
    "DATASET_MACROS",
    "DATASET_NAMES",
    "html_page",
    "html_table",
    "html_text",
    "label",
    "latex_table",
    "tex_escape",
    "tex_text",
    "verdict",
    "words",
]
