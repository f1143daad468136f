"""A figure or table script's inputs, parameters and outputs, and the loaders it reads through.

A script in ``scripts/`` runs two ways, and ``open_job`` hides the difference:

* under Snakemake (its rule's ``script:`` directive), every path and parameter comes from the
  rule; the script names what it reads, and a rule that lacks one of those names, or passes a
  parameter the script does not declare, is an error that names both;
* by hand (``python scripts/fig_loss.py``, or the script opened as a notebook, whose working
  directory is ``scripts/``), inputs are read from ``results/<tier>/`` of the repository the
  working directory is in (``$OVERDEQ_TIER``, default ``quick``; ``$OVERDEQ_ROOT`` names the
  repository when working elsewhere), parameters take the script's defaults, and outputs go
  to ``scratch/<tier>/`` (or ``$OVERDEQ_OUT``): a run by hand never overwrites the workflow's
  ``figures/`` or ``paper/generated/``; ``snakemake --cores all figures/<name>.pdf`` does.

Every file a script reads goes through ``read_table``, ``read_json`` or ``read_text``, so checks
of the intermediates live in one place.
"""

from __future__ import annotations

import glob
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from overdeq.io import atomic_write_text
from overdeq.io import read_json as io_read_json
from overdeq.io import read_table as io_read_table
from overdeq.values import write_values

__all__ = [
    "ENV_TIER",
    "ENV_ROOT",
    "ENV_OUT",
    "DEFAULT_TIER",
    "MissingInput",
    "Job",
    "open_job",
    "read_table",
    "read_json",
    "read_text",
    "read_lock",
    "repo_root",
]

ENV_TIER = "OVERDEQ_TIER"  # by hand: which results/<tier>/ to read
ENV_ROOT = "OVERDEQ_ROOT"  # by hand: the repository, when not run from inside it
ENV_OUT = "OVERDEQ_OUT"  # by hand: where outputs go (default scratch/<tier>/)
DEFAULT_TIER = "quick"
_OUTPUTS = {"figure": ("figure", "png", "values"), "table": ("table", "html", "values")}
_SUFFIX = {"figure": ".pdf", "png": ".png", "values": ".json", "table": ".tex", "html": ".html"}


class MissingInput(FileNotFoundError):
    """An input file a script reads does not exist (yet)."""


def _check_input(path: str | Path) -> Path:
    path = Path(path)
    if not path.is_file():
        raise MissingInput(
            f"{path} does not exist. The workflow makes it: from the repository root run "
            f"`snakemake --cores all {path}` (results of another tier: set ${ENV_TIER})."
        )
    return path


def read_table(path: str | Path, *, columns=None):
    """A table a job wrote, as a pandas DataFrame, checked.

    A CSV goes through :func:`overdeq.io.read_table`: a table cut short, edited, or lacking
    one of ``columns`` (a list of names or a ``{name: type}`` mapping) is refused with the
    file, what is wrong and the command that rebuilds it. A ``.tsv`` is one of Snakemake's
    own benchmark files, which carry no completeness marker.
    """
    import pandas as pd

    path = _check_input(path)
    if path.suffix == ".tsv":
        return pd.read_csv(path, sep="\t")
    return io_read_table(path, columns=columns)


def read_json(path: str | Path, *, keys=()) -> Any:
    """A JSON file a job wrote, checked (cut short, corrupt, or lacking one of ``keys``)."""
    return io_read_json(_check_input(path), keys=keys)


def read_text(path: str | Path) -> str:
    """A text file (the paper's LaTeX sources, for tab_claims)."""
    return _check_input(path).read_text(encoding="utf-8")


def read_lock(path: str | Path) -> dict[str, str]:
    """The pins of a pip lock file (``requirements.lock``): ``{normalised name: version}``.

    Lines look like ``numpy==2.3.1 \\`` followed by ``--hash`` lines; names are normalised as
    PEP 503 does (lower case, runs of ``-_.`` as ``-``) so they compare with
    ``importlib.metadata`` names.
    """
    pins = {}
    for line in read_text(path).splitlines():
        m = re.match(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;\\]+)", line)
        if m:
            pins[re.sub(r"[-_.]+", "-", m.group(1)).lower()] = m.group(2)
    if not pins:
        raise ValueError(f"{path} pins no package (expected lines like numpy==2.3.1)")
    return pins


def repo_root(start: str | Path | None = None) -> Path:
    """The repository: $OVERDEQ_ROOT, else the nearest folder above ``start`` (default: the
    working directory) that holds a Snakefile and scripts/."""
    if os.environ.get(ENV_ROOT):
        return Path(os.environ[ENV_ROOT]).resolve()
    here = Path(start if start is not None else Path.cwd()).resolve()
    for folder in (here, *here.parents):
        if (folder / "Snakefile").is_file() and (folder / "scripts").is_dir():
            return folder
    raise FileNotFoundError(
        f"no overdeq repository at or above {here} (a folder with a Snakefile and scripts/): "
        f"run from inside the repository, or set ${ENV_ROOT} to it"
    )


@dataclass(frozen=True)
class Job:
    """Where one script reads and writes, and its parameters (see the module docstring)."""

    name: str
    kind: str  # figure | table
    interactive: bool  # True: run by hand, not by Snakemake
    tier: str | None  # by hand: the tier read; under Snakemake: None (the rule decides)
    input: Mapping[str, Any]  # name -> path, or list of paths
    output: Mapping[str, str]  # figure, png, values | table, html, values
    params: Mapping[str, Any]

    def table(self, key: str):
        """The input ``key`` as a DataFrame."""
        return read_table(self.input[key])

    def json(self, key: str) -> Any:
        """The input ``key`` parsed as JSON."""
        return read_json(self.input[key])

    def text(self, key: str) -> str:
        """The input ``key`` as text (a list of files: their texts, one after the other)."""
        paths = self.input[key]
        return "".join(read_text(p) for p in ([paths] if isinstance(paths, str) else paths))

    def save_figure(self, fig: Any) -> None:
        """The figure as PDF and PNG (byte-stable, see ``style.save_figure``)."""
        from .style import save_figure

        save_figure(fig, self.output["figure"], png=self.output["png"])

    def save_table(self, latex: str, html: str) -> None:
        """The table as a LaTeX tabular for the paper and an HTML page for the report (both
        from the same cells: ``latex_table`` and ``html_table``)."""
        atomic_write_text(self.output["table"], latex)
        atomic_write_text(self.output["html"], html)

    def save_values(self, values: Mapping[str, Any]) -> None:
        """The numbers the paper quotes, as LaTeX macros (``overdeq.values.write_values``)."""
        write_values(self.output["values"], dict(values))


def open_job(
    name: str,
    snakemake: Any,
    *,
    kind: str,
    inputs: Mapping[str, Any],
    params: Mapping[str, Any] | None = None,
) -> Job:
    """The job of script ``name``: pass ``globals().get("snakemake")`` as ``snakemake``.

    ``inputs`` maps each input name to its path by hand, relative to the repository root
    (``{tier}`` is filled in; a path with ``*`` is a glob and gives a sorted list); ``params``
    maps each parameter name to its value by hand. Under Snakemake the rule gives both.
    """
    if kind not in _OUTPUTS:
        raise ValueError(f"kind must be one of {sorted(_OUTPUTS)}, not {kind!r}")
    params = dict(params or {})
    if snakemake is not None:
        return _from_rule(name, kind, snakemake, inputs, params)
    tier = os.environ.get(ENV_TIER) or DEFAULT_TIER
    root = repo_root()
    out = (
        Path(os.environ[ENV_OUT]).resolve() if os.environ.get(ENV_OUT) else root / "scratch" / tier
    )

    def resolve(template: Any) -> Any:
        if isinstance(template, (list, tuple)):
            return [p for t in template for p in _as_list(resolve(t))]
        path = str(root / str(template).format(tier=tier))
        return sorted(glob.glob(path, recursive=True)) if "*" in path else path

    job = Job(
        name=name,
        kind=kind,
        interactive=True,
        tier=tier,
        input={key: resolve(t) for key, t in inputs.items()},
        output={key: str(out / f"{name}{_SUFFIX[key]}") for key in _OUTPUTS[kind]},
        params=params,
    )
    print(f"{name}: reading {root / 'results' / tier} (${ENV_TIER}), writing {out}")
    return job


def _as_list(value: Any) -> list:
    return value if isinstance(value, list) else [value]


def _from_rule(name: str, kind: str, smk: Any, inputs: Mapping, params: Mapping) -> Job:
    rule = getattr(smk, "rule", "?")
    where = f"rule {rule} (it runs scripts/{name}.py)"
    problems = []
    for what, declared, given in (
        ("input", set(inputs), set(smk.input.keys())),
        ("output", set(_OUTPUTS[kind]), set(smk.output.keys())),
        ("params", set(params), set(smk.params.keys())),
    ):
        if missing := sorted(declared - given):
            problems.append(f"{where} has no {what} named {missing}; the script needs them")
        if what == "params" and (extra := sorted(given - declared)):
            problems.append(
                f"{where} passes params {extra} that the script does not declare "
                f"(declared: {sorted(declared)})"
            )
    if problems:
        raise ValueError("; ".join(problems))

    def plain(value: Any) -> Any:  # Snakemake's named lists and file objects as plain values
        if isinstance(value, list):
            return [plain(v) for v in value]
        return str(value) if isinstance(value, str) else value

    return Job(
        name=name,
        kind=kind,
        interactive=False,
        tier=None,
        input={key: plain(smk.input[key]) for key in inputs},
        output={key: str(smk.output[key]) for key in _OUTPUTS[kind]},
        params={key: plain(smk.params[key]) for key in params},
    )
