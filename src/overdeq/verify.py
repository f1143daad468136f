"""Check each claim of the paper against the tables the workflow produced.

The claims (config/claims.yaml, which the workflow reads and hands over as JSON: this
package never reads YAML) list claims, each with checks. A check names a table
(a CSV under results/<tier>/), optionally filters its rows (``where``: a mapping of column ->
value, a pandas query string, or a list of those applied in turn), evaluates a column expression (``value``), reduces it
(``reduce``: min, max, mean, median, fraction, count, or each = every row on its own) and
compares the result with ``threshold`` under ``expect`` (<, <=, >, >=, ==, between), widened
by ``tolerance``. ``reduce: slope`` is the log-log slope of the value against the column
``against``; ``group_by`` applies the reduction within each group, and every group must pass. Thresholds may differ per tier ({quick: .., paper: ..}).

A check whose table is missing is "n/a" (that tier does not run the experiment), never a
pass. A table that is there but cut short, edited, unmarked or not a file stops the
verification with an error naming it (:func:`overdeq.io.read_table`): a verdict is never
computed from a partial table. A claim passes when all its checks that ran pass.
"""

from __future__ import annotations

import math
import operator
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .io import read_table
from .theory import loglog_slope

__all__ = [
    "Check",
    "Claim",
    "CheckResult",
    "parse_claims",
    "run_checks",
    "format_table",
    "REDUCERS",
    "EXPECT",
]

REDUCERS = ("min", "max", "mean", "median", "fraction", "count", "each", "slope")
EXPECT = {
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
    "==": operator.eq,
    "between": None,
}


@dataclass(frozen=True)
class Check:
    id: str
    what: str
    table: str
    value: str
    reduce: str
    expect: str
    threshold: Any
    tolerance: float = 0.0
    where: Any = None
    experiment: str = ""
    group_by: str | None = None  # reduce within each group; every group must pass
    against: str | None = None  # reduce "slope": log-log slope of value against this column

    def __post_init__(self) -> None:
        if self.reduce not in REDUCERS:
            raise ValueError(f"check {self.id}: reduce {self.reduce!r} is not one of {REDUCERS}")
        if self.expect not in EXPECT:
            raise ValueError(
                f"check {self.id}: expect {self.expect!r} is not one of {list(EXPECT)}"
            )
        if (self.reduce == "slope") != (self.against is not None):
            raise ValueError(f"check {self.id}: reduce 'slope' and 'against' go together")


@dataclass(frozen=True)
class Claim:
    id: str
    statement: str
    checks: tuple[Check, ...]


@dataclass(frozen=True)
class CheckResult:
    claim: str
    check: str
    what: str
    experiment: str
    table: str
    status: str  # PASS, FAIL or n/a
    value: Any
    condition: str
    rows: int
    note: str = ""


@dataclass
class Report:
    tier: str
    claims: dict[str, str] = field(default_factory=dict)  # claim id -> PASS/FAIL/n/a
    statements: dict[str, str] = field(default_factory=dict)
    checks: list[CheckResult] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "tier": self.tier,
            "claims": self.claims,
            "statements": self.statements,
            "checks": [asdict(c) for c in self.checks],
            # nothing tested is not a pass
            "passed": (
                all(v != "FAIL" for v in self.claims.values())
                and any(v == "PASS" for v in self.claims.values())
            ),
        }


def parse_claims(data: Any, source: str = "the claims") -> list[Claim]:
    """Validate parsed claims ({"claims": [...]}); errors name the source, claim and check."""
    if not isinstance(data, dict) or "claims" not in data:
        raise ValueError(f"{source}: expected a mapping with a 'claims' list")
    claims = []
    for c in data["claims"]:
        missing = {"id", "statement", "checks"} - set(c)
        if missing:
            raise ValueError(f"{source}: claim {c.get('id', '?')} lacks {sorted(missing)}")
        checks = []
        for k in c["checks"]:
            unknown = set(k) - set(Check.__dataclass_fields__)
            if unknown:
                raise ValueError(
                    f"{source}: check {k.get('id', '?')} has unknown keys "
                    f"{sorted(unknown)}; allowed: {sorted(Check.__dataclass_fields__)}"
                )
            try:
                checks.append(Check(**k))
            except TypeError as exc:  # a required key missing
                raise ValueError(f"{source}: check {k.get('id', '?')}: {exc}") from None
        claims.append(Claim(id=c["id"], statement=c["statement"], checks=tuple(checks)))
    return claims


def _threshold(check: Check, tier: str) -> Any:
    t = check.threshold
    if isinstance(t, dict):
        if tier not in t:
            raise ValueError(f"check {check.id} has no threshold for tier {tier!r} ({sorted(t)})")
        return t[tier]
    return t


def _condition(check: Check, threshold: Any) -> tuple[str, Any]:
    tol = check.tolerance
    if check.expect == "between":
        lo, hi = threshold
        return f"in [{lo - tol:g}, {hi + tol:g}]", lambda v: lo - tol <= v <= hi + tol
    op = EXPECT[check.expect]
    widened = (
        threshold + tol
        if check.expect in ("<", "<=")
        else (threshold - tol if check.expect in (">", ">=") else threshold)
    )
    return f"{check.expect} {widened:g}", lambda v: bool(op(v, widened))


def _filter(df: pd.DataFrame, where: Any) -> pd.DataFrame:
    if where is None:
        return df
    if isinstance(where, list):  # successive filters: later ones see only earlier survivors
        for part in where:
            df = _filter(df, part)
        return df
    if isinstance(where, str):
        return df.query(where, engine="python")
    mask = np.ones(len(df), dtype=bool)
    for col, val in where.items():
        if col not in df.columns:
            raise KeyError(f"column {col!r} is not in the table (columns: {list(df.columns)})")
        mask &= df[col].isin(val if isinstance(val, list) else [val]).to_numpy()
    return df[mask]


def _reduce(check: Check, rows: pd.DataFrame) -> float:
    values = pd.Series(rows.eval(check.value, engine="python"), index=rows.index).astype(float)
    if check.reduce == "slope":  # least-squares slope of log(value) on log(against)
        return loglog_slope(rows[check.against].astype(float), values)[0]
    reducers = {
        "min": np.min,
        "max": np.max,
        "mean": np.mean,
        "median": np.median,
        "fraction": np.mean,
        "count": len,
    }
    return float(reducers[check.reduce](values.to_numpy()))


def _evaluate(check: Check, df: pd.DataFrame, tier: str) -> tuple[str, Any, str, int]:
    rows = _filter(df, check.where)
    cond_text, cond = _condition(check, _threshold(check, tier))
    if len(rows) == 0:
        return "FAIL", None, cond_text, 0
    if check.reduce == "each":
        values = pd.Series(rows.eval(check.value, engine="python")).astype(float)
        ok = [cond(v) for v in values if math.isfinite(v)]
        passed = len(ok) == len(values) and all(ok)
        shown = [float(values.min()), float(values.max())]
        return ("PASS" if passed else "FAIL"), shown, f"each {cond_text}", len(rows)
    label = check.reduce + (f" vs {check.against}" if check.against else "")
    if check.group_by is not None:  # every group must pass on its own
        if check.group_by not in rows.columns:
            raise KeyError(f"group_by column {check.group_by!r} is not in the table")
        per_group = {str(k): _reduce(check, g) for k, g in rows.groupby(check.group_by)}
        passed = all(math.isfinite(v) and cond(v) for v in per_group.values())
        shown = [min(per_group.values()), max(per_group.values())]
        return (
            ("PASS" if passed else "FAIL"),
            shown,
            f"{label} per {check.group_by} {cond_text}",
            len(rows),
        )
    value = _reduce(check, rows)
    passed = math.isfinite(value) and cond(value)
    return ("PASS" if passed else "FAIL"), value, f"{label} {cond_text}", len(rows)


def run_checks(claims: list[Claim], results_dir: str | Path, tier: str) -> Report:
    """Evaluate every check against the tables under ``results_dir``."""
    results_dir = Path(results_dir)
    report = Report(tier=tier)
    cache: dict[str, pd.DataFrame] = {}
    for claim in claims:
        statuses = []
        for check in claim.checks:
            path = results_dir / check.table
            if not path.exists():
                status, value, cond, n = "n/a", None, "", 0
                note = f"{path} not produced by this tier"
            else:
                if check.table not in cache:  # refuses a table cut short, edited or unmarked
                    cache[check.table] = read_table(path)
                try:
                    status, value, cond, n = _evaluate(check, cache[check.table], tier)
                    note = "" if n else "no rows match the filter"
                except Exception as exc:  # a malformed check is a failed check, with the reason
                    status, value, cond, n, note = "FAIL", None, "", 0, f"error: {exc}"
            res = CheckResult(
                claim.id, check.id, check.what, check.experiment, check.table,
                status, value, cond, n, note,
            )  # fmt: skip
            report.checks.append(res)
            statuses.append(res.status)
        ran = [s for s in statuses if s != "n/a"]
        report.claims[claim.id] = (
            "n/a" if not ran else ("PASS" if all(s == "PASS" for s in ran) else "FAIL")
        )
        report.statements[claim.id] = claim.statement
    return report


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, list):
        return "[" + ", ".join(_fmt(v) for v in value) + "]"
    return f"{value:.4g}"


_TEX_WORDS = {
    r"\lambda": "λ", r"\Theta": "Θ", r"\sigma": "σ", r"\eta": "η", r"\sqrt": "√",
    r"\max": "max", r"\min": "min", r"\top": "ᵀ", r"\ge": "≥", r"\le": "≤",
    r"\|": "‖", r"\,": " ",
}  # fmt: skip
_SUBSCRIPTS = str.maketrans("0123456789*", "₀₁₂₃₄₅₆₇₈₉*")
_SUPERSCRIPTS = str.maketrans("0123456789-/", "⁰¹²³⁴⁵⁶⁷⁸⁹⁻ᐟ")


def plain_maths(text: str) -> str:
    """The claims' LaTeX maths (``$\\lambda_0 > 0$``) as terminal text (``λ₀ > 0``): the
    PDF typesets it and the HTML report renders it; a terminal gets Unicode."""

    def maths(m: re.Match) -> str:
        tex = m.group(1)
        for word, char in sorted(_TEX_WORDS.items(), key=lambda kv: -len(kv[0])):
            tex = tex.replace(word, char)
        tex = tex.replace("^ᵀ", "ᵀ")
        tex = re.sub(
            r"_\{([^{}]*)\}",
            lambda g: (
                g.group(1).translate(_SUBSCRIPTS) if g.group(1).isdigit() else "_" + g.group(1)
            ),
            tex,
        )
        tex = re.sub(r"_([0-9*])", lambda g: g.group(1).translate(_SUBSCRIPTS), tex)
        tex = re.sub(r"\^\{([^{}]*)\}", lambda g: g.group(1).translate(_SUPERSCRIPTS), tex)
        tex = re.sub(r"\^([0-9])", lambda g: g.group(1).translate(_SUPERSCRIPTS), tex)
        tex = re.sub(r"√\{([^{}]*)\}", r"√\1", tex)
        return tex.replace("{", "").replace("}", "").replace("_", "")

    return re.sub(r"\$([^$]*)\$", maths, text)


def format_table(report: Report) -> str:
    """A plain-text PASS/FAIL table, one line per check, then one per claim."""
    lines = [f"Claims verification, tier '{report.tier}'", ""]
    head = f"{'check':<8} {'exp':<5} {'status':<6} {'value':<24} {'condition':<22} what"
    lines += [head, "-" * len(head)]
    for c in report.checks:
        lines.append(
            f"{c.check:<8} {c.experiment:<5} {c.status:<6} {_fmt(c.value):<24} "
            f"{c.condition:<22} {plain_maths(c.what)}" + (f"  [{c.note}]" if c.note else "")
        )
    lines += ["", f"{'claim':<8} {'verdict':<8} statement", "-" * 60]
    for cid, verdict in report.claims.items():
        lines.append(f"{cid:<8} {verdict:<8} {plain_maths(report.statements[cid])}")
    return "\n".join(lines) + "\n"
