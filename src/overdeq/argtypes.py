"""argparse types and help shared by the subcommands: a bad value names the flag and what is
allowed, and every flag's help shows its default."""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable

__all__ = [
    "positive_int",
    "nonnegative_int",
    "positive_float",
    "add_threads",
    "show_default",
    "HelpFormatter",
]


def show_default(value: object) -> str:
    """A default as help text: on/off for booleans, none for None, lists space-separated."""
    if isinstance(value, bool):
        return "on" if value else "off"
    if value is None:
        return "none"
    if isinstance(value, list | tuple):
        return " ".join(str(v) for v in value) if value else "none"
    return str(value)


class HelpFormatter(argparse.HelpFormatter):
    """A one-paragraph description is wrapped, a text with line breaks (the examples of an
    epilog) is kept as written; a flag's help ends in its default.

    A flag whose help already says ``(default: ...)`` keeps it: the knobs of ``train`` have
    the argparse default None (the run configuration decides) and state the configuration's
    default themselves. Required flags and positional arguments have none.
    """

    def _fill_text(self, text: str, width: int, indent: str) -> str:
        if "\n" in text.strip():
            return "".join(indent + line for line in text.splitlines(keepends=True))
        return super()._fill_text(text, width, indent)

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if (
            "(default:" in text
            or not action.option_strings
            or action.required
            or action.default is argparse.SUPPRESS
        ):
            return text
        return f"{text} (default: {show_default(action.default).replace('%', '%%')})"


def _int_at_least(flag: str, low: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{flag} must be an integer, got {text!r}") from None
        if value < low:
            raise argparse.ArgumentTypeError(f"{flag} must be >= {low}, got {value}")
        return value

    return parse


def positive_int(flag: str) -> Callable[[str], int]:
    """An integer >= 1 for ``flag``."""
    return _int_at_least(flag, 1)


def nonnegative_int(flag: str) -> Callable[[str], int]:
    """An integer >= 0 for ``flag``."""
    return _int_at_least(flag, 0)


def positive_float(flag: str) -> Callable[[str], float]:
    """A finite number > 0 for ``flag``."""

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{flag} must be a number, got {text!r}") from None
        if not value > 0 or not math.isfinite(value):
            raise argparse.ArgumentTypeError(
                f"{flag} must be a positive finite number, got {value}"
            )
        return value

    return parse


def add_threads(p: argparse.ArgumentParser | argparse._ArgumentGroup) -> None:
    """--threads N: CPU threads for torch (the compute subcommands)."""
    p.add_argument(
        "--threads",
        type=positive_int("--threads"),
        default=None,
        help="CPU threads for torch (default: torch's choice, usually one per core)",
    )
