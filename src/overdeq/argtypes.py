"""argparse types shared by the subcommands: a bad value names the flag and what is allowed."""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable

__all__ = ["positive_int", "nonnegative_int", "positive_float", "add_threads"]


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
        help="CPU threads for torch (default: torch's choice)",
    )
