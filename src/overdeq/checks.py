"""Value checks for parameters read from JSON: each returns None when the value is fine,
else a phrase that says what is allowed ("an integer >= 1"), for error messages that name
the key, the value and what would do (experiments_random's parameter dataclasses)."""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from typing import Any

__all__ = [
    "Check",
    "integer",
    "optional_integer",
    "number",
    "optional_number",
    "list_of",
    "choice",
    "seeds",
    "device",
    "folder",
]

Check = Callable[[Any], "str | None"]
_DEVICE = re.compile(r"^(cpu|cuda|cuda:auto|cuda:[0-9]+)$")


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_num(v: Any) -> bool:
    return (_is_int(v) or isinstance(v, float)) and math.isfinite(v)


def integer(lo: int) -> Check:
    """An integer >= lo (a boolean is not an integer here)."""

    def check(v: Any) -> str | None:
        return None if _is_int(v) and v >= lo else f"an integer >= {lo}"

    return check


def optional_integer(lo: int) -> Check:
    """null or an integer >= lo."""

    def check(v: Any) -> str | None:
        return None if v is None or (_is_int(v) and v >= lo) else f"null or an integer >= {lo}"

    return check


def number(
    lo: float,
    hi: float | None = None,
    *,
    lo_open: bool = False,
    hi_open: bool = True,
    hi_label: str | None = None,
) -> Check:
    """A finite number in [lo, hi) (or with the ends open/closed as asked)."""
    lo_txt = f"{'>' if lo_open else '>='} {lo:g}"
    hi_txt = "" if hi is None else f" and {'<' if hi_open else '<='} {hi_label or f'{hi:g}'}"

    def check(v: Any) -> str | None:
        ok = _is_num(v) and (v > lo if lo_open else v >= lo)
        if ok and hi is not None:
            ok = v < hi if hi_open else v <= hi
        return None if ok else f"a finite number {lo_txt}{hi_txt}"

    return check


def optional_number(inner: Check) -> Check:
    """null or what ``inner`` allows."""

    def check(v: Any) -> str | None:
        return None if v is None or inner(v) is None else f"null or {inner(None)}"

    return check


def list_of(item: Check) -> Check:
    """A non-empty list (or tuple) whose items all pass ``item``."""

    def check(v: Any) -> str | None:
        what = item(None)  # None is never a valid item: this is the description
        if isinstance(v, list | tuple) and v and all(item(x) is None for x in v):
            return None
        return f"a non-empty list, each item {what}"

    return check


def choice(options: tuple[str, ...], *, many: bool) -> Check:
    """One of ``options`` (``many``: or a non-empty list of them)."""

    def check(v: Any) -> str | None:
        if isinstance(v, str) and v in options:
            return None
        if many and isinstance(v, list | tuple) and v and all(x in options for x in v):
            return None
        return f"one of {list(options)}" + (" or a non-empty list of them" if many else "")

    return check


def seeds(v: Any) -> str | None:
    """A count (seeds 0..count-1) or a non-empty list of seeds."""
    if _is_int(v) and v >= 1:
        return None
    if isinstance(v, list | tuple) and v and all(_is_int(x) and x >= 0 for x in v):
        return None
    return "a count >= 1 (seeds 0..count-1) or a non-empty list of integers >= 0"


def device(v: Any) -> str | None:
    """A torch device name overdeq runs on."""
    if isinstance(v, str) and _DEVICE.match(v):
        return None
    return "'cpu', 'cuda', 'cuda:N' or 'cuda:auto'"


def folder(v: Any) -> str | None:
    """A non-empty folder name."""
    return None if isinstance(v, str) and v else "a folder name"
