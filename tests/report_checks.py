"""What the HTML report and its tables must not show: maths written in ASCII."""

from __future__ import annotations

import re

# lambda_0, sigma_w, ||W||, sqrt(m), R^2, Theta_0: maths typed as text instead of typeset
ASCII_MATHS = re.compile(
    r"\b(?:lambda|sigma|Theta|theta|eta|sqrt)(?:_\w+|\(|\b)|\|\||\b\w\^[\w(]|\b[A-Za-z]_[0-9t*]\b"
)


def ascii_maths(text: str) -> list[str]:
    """Every piece of ``text`` that looks like maths typed in ASCII (empty: none)."""
    return [m.group() for m in ASCII_MATHS.finditer(text)]
