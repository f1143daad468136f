#!/usr/bin/env python3
"""Check that YAML files parse; a problem names the file, the line and the column.

    .venv/bin/python tools/check_yaml.py FILE...    one message per file that does not parse; exit 1

Snakemake 9 reports a config file it cannot parse as "Config file is not valid JSON or YAML"
and names neither the file nor the line. So the Snakefile checks config/config.yaml with
:func:`yaml_problem` before Snakemake reads it, and ./reproduce checks every --configfile
too (Snakemake reads those before any of the workflow's code runs).
"""

from __future__ import annotations

import sys
from pathlib import Path

import yaml


def yaml_problem(path: str | Path) -> str | None:
    """Why ``path`` is not YAML (file, line, column, what, how to fix), or None if it parses.

    A file that does not exist is not a YAML problem (Snakemake's message covers it).
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError) as exc:
        return f"{path}: cannot be read as text ({exc})"
    try:
        yaml.safe_load(text)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        if mark is None:
            return f"{path}: not valid YAML ({exc.problem or exc})"
        line = text.splitlines()[mark.line] if mark.line < len(text.splitlines()) else ""
        what = exc.problem or str(exc)
        if exc.context:
            start = exc.context_mark
            at = (
                f" that starts at line {start.line + 1}"
                if start and start.line != mark.line
                else ""
            )
            what = f"{what} ({exc.context}{at})"
        hint = (
            "YAML indents with spaces only: replace the tab with spaces"
            if "\t" in line
            else "check the brackets, quotes, colons and indentation there and on the lines above"
        )
        return (
            f"{path}, line {mark.line + 1}, column {mark.column + 1}: {what}.\n"
            f"    {line.rstrip()}\n    {' ' * mark.column}^\n  {hint}"
        )
    except yaml.YAMLError as exc:
        return f"{path}: not valid YAML ({exc})"
    return None


def main(argv: list[str]) -> int:
    problems = [p for p in map(yaml_problem, argv) if p is not None]
    for problem in problems:
        print(f"error: {problem}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
