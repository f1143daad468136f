"""Result files: atomic writes, and readers that refuse a file its maker did not finish.

Writes go to a temporary file in the destination folder, flushed to disk, and are moved into
place with ``os.replace`` (atomic on POSIX within one file system): a crash at any moment
leaves the previous version intact.

Readers validate, because a file can still be cut short or changed after it was written (a
full disk, a copy that stopped half way, a hand edit). Every reader error is a
:class:`ResultFileError` that names the file, says what is wrong, who makes the file and how
to rebuild it.

**Tables (CSV)** carry a completeness marker as their first line::

    # overdeq-table v1 rows=4 sha256=<SHA-256 of every byte after this line>

``rows`` counts the data records (not the header). :func:`read_csv` and :func:`read_table`
refuse a table without the marker (written by hand or by an overdeq older than the marker:
rebuild it, results are cheap to remake), one whose bytes no longer match the digest (cut
short, appended to, edited), one that lacks an expected column and one whose cells are not of
the expected type. Other programs read a table by skipping that line:
``pandas.read_csv(path, skiprows=1)``, or ``next(fh)`` before ``csv.DictReader(fh)``.

**JSON** files need no marker: each holds one JSON object, so any cut-off prefix of it is
invalid JSON. :func:`read_json` refuses invalid JSON and, when asked, missing keys.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import re
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

__all__ = [
    "atomic_write_bytes",
    "atomic_write_text",
    "write_json",
    "read_json",
    "write_csv",
    "read_csv",
    "read_table",
    "ResultFileError",
    "table_marker",
    "rebuild_hint",
    "atomic_torch_save",
]

Columns = Mapping[str, type] | Sequence[str] | None


class ResultFileError(ValueError):
    """A result file is missing, cut short, corrupt or lacks what its reader needs."""


def _default_mode() -> int:
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


_MODE = _default_mode()  # what open() would give a new file (mkstemp's default is 0600)


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (temporary file + fsync + rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, _MODE)
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


# ---------------------------------------------------------------- errors that say the fix


def rebuild_hint(path: str | os.PathLike) -> str:
    """How to rebuild a workflow output: force the job that makes it (and what depends on it)."""
    path = Path(path)
    try:
        shown = path.resolve().relative_to(Path.cwd().resolve()) if path.is_absolute() else path
    except ValueError:
        shown = path
    command = f"snakemake --cores all --forcerun {shown}"
    parts = shown.parts
    if "results" in parts[:-1]:  # results/<tier>/...: a tier with its own config file
        tier = parts[parts.index("results") + 1]
        if Path("config", f"{tier}.yaml").is_file():
            command += f" --configfile config/{tier}.yaml"
    return f"rebuild it with: {command}"


def _error(path: str | os.PathLike, what: str, made_by: str | None) -> ResultFileError:
    hint = rebuild_hint(path)
    then = f"It is made by {made_by}; {hint}" if made_by else hint[:1].upper() + hint[1:]
    return ResultFileError(f"{path} {what}. {then}")


def _read_bytes(path: str | os.PathLike, made_by: str | None) -> bytes:
    p = Path(path)
    if not p.exists():
        raise _error(path, "does not exist", made_by)
    if p.is_dir():
        raise _error(path, "is a folder, not a file; move it away", made_by)
    if not p.is_file():
        raise _error(path, "is not a regular file; move it away", made_by)
    data = p.read_bytes()
    if not data:
        raise _error(path, "is empty (cut short before anything was written)", made_by)
    return data


# ---------------------------------------------------------------- JSON


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, float) and (obj != obj or obj in (float("inf"), float("-inf"))):
        return None  # JSON has no NaN/inf; null reads back as "not available"
    if isinstance(obj, Mapping):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if hasattr(obj, "item") and callable(obj.item):
        return _jsonable(obj.item())
    return obj


def write_json(path: str | os.PathLike, obj: Any) -> None:
    """Pretty, key-sorted JSON (stable bytes for stable inputs), written atomically."""
    atomic_write_text(path, json.dumps(_jsonable(obj), indent=2, sort_keys=True) + "\n")


def read_json(
    path: str | os.PathLike, *, keys: Iterable[str] = (), made_by: str | None = None
) -> Any:
    """The JSON value in ``path``; with ``keys``, an object that has each of them.

    Raises :class:`ResultFileError` (naming the file, ``made_by`` and the rebuild) when the
    file is missing, empty, not valid JSON (cut short or corrupt) or lacks a key.
    """
    data = _read_bytes(path, made_by)
    try:
        text = data.decode("utf-8")
        value = json.loads(text)
    except UnicodeDecodeError:
        raise _error(path, "is not text (corrupt)", made_by) from None
    except json.JSONDecodeError as exc:
        end = text.rstrip()
        lines = end.count("\n") + 1
        why = (  # a JSON object or list ends with its closing bracket: anything else is cut
            f"is cut short (its JSON stops at line {lines} before it is complete)"
            if end.startswith(("{", "[")) and (exc.pos >= len(end) or end[-1] not in "}]")
            else f"is not valid JSON ({exc.msg}, line {exc.lineno} column {exc.colno})"
        )
        raise _error(path, why, made_by) from None
    keys = list(keys)
    if keys:
        if not isinstance(value, dict):
            raise _error(path, f"holds a JSON {type(value).__name__}, not an object", made_by)
        missing = [k for k in keys if k not in value]
        if missing:
            raise _error(path, f"lacks the key(s) {missing}", made_by)
    return value


# ---------------------------------------------------------------- tables (CSV)

_MARKER = re.compile(r"# overdeq-table v1 rows=(\d+) sha256=([0-9a-f]{64})")
_MARKER_START = b"# overdeq-table"


def table_marker(body: str) -> str:
    """The first line of a table whose content after that line is ``body`` (header + rows)."""
    rows = max(sum(1 for _ in csv.reader(io.StringIO(body))) - 1, 0)
    digest = hashlib.sha256(body.encode("utf-8")).hexdigest()
    return f"# overdeq-table v1 rows={rows} sha256={digest}\n"


def write_csv(
    path: str | os.PathLike, rows: Iterable[Mapping[str, Any]], columns: list[str] | None = None
) -> None:
    """Write dict rows as CSV atomically, after the completeness marker; floats keep full
    precision (repr), None becomes an empty cell."""
    rows = list(rows)
    if columns is None:
        columns = []
        for row in rows:
            columns.extend(k for k in row if k not in columns)
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=columns, lineterminator="\n", extrasaction="ignore")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: ("" if row.get(k) is None else row.get(k)) for k in columns})
    body = buf.getvalue()
    atomic_write_text(path, table_marker(body) + body)


def _table_text(path: str | os.PathLike, made_by: str | None) -> str:
    """The table's header and rows, after checking its marker."""
    data = _read_bytes(path, made_by)
    first, _, body = data.partition(b"\n")
    match = _MARKER.fullmatch(first.decode("utf-8", errors="replace"))
    if match is None:
        if first.startswith(_MARKER_START):
            raise _error(path, "has a damaged completeness marker (its first line)", made_by)
        raise _error(
            path,
            "has no completeness marker (its first line): it was written by hand or by an "
            "older overdeq, and this version reads only tables whose completeness it can check",
            made_by,
        )
    expected = int(match[1])
    if hashlib.sha256(body).hexdigest() != match[2]:
        text = body.decode("utf-8", errors="replace")
        found = max(sum(1 for _ in csv.reader(io.StringIO(text))) - 1, 0)
        if found < expected or not text.endswith("\n"):
            last = ", the last one cut short" if not text.endswith("\n") else ""
            what = f"is truncated (its marker says {expected} rows, {found} found{last})"
        elif found > expected:
            what = f"has {found} rows but its marker says {expected} (rows were added later)"
        else:
            what = "was changed after it was written (its bytes do not match its marker)"
        raise _error(path, what, made_by)
    return body.decode("utf-8")


def _parses(kind: type, cell: str) -> bool:
    if kind is str:
        return True
    if kind is bool:
        return cell in ("True", "False", "true", "false", "0", "1")
    try:
        kind(cell)
    except ValueError:
        return False
    return True


def _check_columns(
    path: str | os.PathLike,
    header: Sequence[str],
    rows: list[dict[str, str]],
    columns: Columns,
    made_by: str | None,
) -> None:
    if not columns:
        return
    missing = [c for c in columns if c not in header]
    if missing:
        raise _error(path, f"lacks the column(s) {missing} (it has {list(header)})", made_by)
    if not isinstance(columns, Mapping):
        return
    for name, kind in columns.items():
        for i, row in enumerate(rows, start=1):
            cell = row[name]
            if cell is None:  # a row with fewer cells than the header
                raise _error(path, f"has a short row {i} (no cell for column {name!r})", made_by)
            if cell != "" and not _parses(kind, cell):
                raise _error(
                    path,
                    f"holds {cell!r} in column {name!r} of row {i}, not a valid {kind.__name__}",
                    made_by,
                )


def read_csv(
    path: str | os.PathLike, *, columns: Columns = None, made_by: str | None = None
) -> list[dict[str, str]]:
    """The rows of a table written by :func:`write_csv`, as dicts of strings ('' = no value).

    Checks the completeness marker; ``columns`` names the columns the reader needs (a
    mapping also gives each one's type: every non-empty cell must parse as it). ``made_by``
    says which rule or command makes the file, for the error message.
    """
    text = _table_text(path, made_by)
    reader = csv.DictReader(io.StringIO(text))
    rows = list(reader)
    _check_columns(path, reader.fieldnames or [], rows, columns, made_by)
    return rows


def read_table(
    path: str | os.PathLike, *, columns: Columns = None, made_by: str | None = None
) -> Any:
    """A table written by :func:`write_csv` as a pandas DataFrame, checked as in
    :func:`read_csv` (pandas parses the same bytes as ``pandas.read_csv(path, skiprows=1)``)."""
    import pandas as pd

    text = _table_text(path, made_by)
    reader = csv.DictReader(io.StringIO(text))
    rows = list(reader)
    _check_columns(path, reader.fieldnames or [], rows, columns, made_by)
    if not reader.fieldnames:
        return pd.DataFrame()
    return pd.read_csv(io.StringIO(text))


def atomic_torch_save(obj: Any, path: str | os.PathLike) -> None:
    """``torch.save`` to a temporary file, then rename into place."""
    import torch  # here, not at the top: io serves light modules (values) too

    buf = io.BytesIO()
    torch.save(obj, buf)
    atomic_write_bytes(path, buf.getvalue())
