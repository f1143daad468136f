"""Raw data files: pinned checksums, verification, and downloads that never leave a bad file.

A :class:`RemoteFile` names one original archive, its size and its pinned SHA-256 and MD5,
and the URLs it can be fetched from (tried in order). :func:`ensure` is the one entry point
the loaders use: a file already in place (downloaded earlier or dropped there by hand) is
verified and used without touching the network; a missing file is downloaded only when the
network is allowed, otherwise the error says which file, where to put it, where it comes
from and its checksum.

Downloads stream into a hidden temporary file next to the destination
(``.<name>.<random>.part``), hashing as they go; only a file whose size and checksums match
is moved into place (``os.replace``, atomic), so an interrupted or corrupted transfer leaves
nothing under the final name. A failed attempt deletes its temporary file. One left by a
killed process is deleted by the next attempt: a download holds an exclusive ``flock`` on its
temporary file while it runs, so a temporary file nobody holds is stale.

Something that is not a regular file where a raw file belongs (a folder, say) is an error
saying so, never "missing" and never overwritten.

Network policy, strongest first: the ``download=`` argument of :func:`ensure`, then
:func:`network_allowed` (a context manager the CLI uses for ``--no-download``), then the
environment variable ``OVERDEQ_OFFLINE=1`` (forbids downloads, e.g. on compute nodes).
"""

from __future__ import annotations

import contextlib
import contextvars
import fcntl
import glob
import hashlib
import os
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, TextIO

__all__ = [
    "RemoteFile",
    "DataFileError",
    "MissingFileError",
    "ChecksumError",
    "DownloadError",
    "Digests",
    "LocalFile",
    "file_digests",
    "verify",
    "fetch_file",
    "ensure",
    "ensure_all",
    "network_allowed",
    "downloads_allowed",
    "remove_stale_parts",
    "check_place",
]

_CHUNK = 1 << 20
_PART = ".part"  # suffix of a download's temporary file
_ALLOW: contextvars.ContextVar[bool | None] = contextvars.ContextVar(
    "overdeq_download", default=None
)


class DataFileError(ValueError):
    """A raw data file is missing, corrupt or not what it claims; the message says the fix."""


class MissingFileError(DataFileError):
    """A raw file is not in place and may not (or could not) be downloaded."""


class ChecksumError(DataFileError):
    """A file's size or checksum differs from the pinned value."""


class DownloadError(DataFileError):
    """Every URL of a file failed (network error or wrong content)."""


@dataclass(frozen=True)
class RemoteFile:
    """One original archive: its file name, size in bytes, pinned digests and its URLs."""

    name: str
    size: int
    sha256: str
    md5: str
    urls: tuple[str, ...]
    dataset: str  # human name used in messages, e.g. "MNIST"

    def describe(self) -> str:
        """Where it comes from and how to check it by hand (for error messages)."""
        urls = "\n".join(f"      {u}" for u in self.urls)
        return (
            f"    {self.name} ({self.size} bytes) from any of:\n{urls}\n"
            f"      sha256 {self.sha256}\n      md5    {self.md5}"
        )


@dataclass(frozen=True)
class Digests:
    """Size in bytes and hex digests of a file's content."""

    size: int
    sha256: str
    md5: str


@dataclass(frozen=True)
class LocalFile:
    """A raw file in place whose size and checksums matched the pins."""

    path: Path
    digests: Digests

    def as_meta(self) -> dict[str, object]:
        """JSON-able record for a Dataset's meta (provenance of prepared data)."""
        d = self.digests
        return {
            "name": self.path.name,
            "path": str(self.path),
            "bytes": d.size,
            "sha256": d.sha256,
            "md5": d.md5,
        }


def _hash_stream(stream: BinaryIO, sink: BinaryIO | None = None) -> Digests:
    sha, md5, size = hashlib.sha256(), hashlib.md5(usedforsecurity=False), 0
    while chunk := stream.read(_CHUNK):
        sha.update(chunk)
        md5.update(chunk)
        size += len(chunk)
        if sink is not None:
            sink.write(chunk)
    return Digests(size=size, sha256=sha.hexdigest(), md5=md5.hexdigest())


def file_digests(path: str | os.PathLike) -> Digests:
    """Size, SHA-256 and MD5 of a file, read in 1 MiB chunks."""
    with open(path, "rb") as fh:
        return _hash_stream(fh)


def _mismatch(rf: RemoteFile, got: Digests) -> str | None:
    """Why ``got`` is not ``rf`` (expected vs actual), or None when it matches."""
    if got.size != rf.size:
        return (
            f"size {got.size} bytes and sha256 {got.sha256}, expected {rf.size} bytes and "
            f"sha256 {rf.sha256}"
        )
    if got.sha256 != rf.sha256:
        return f"sha256 {got.sha256}, expected {rf.sha256}"
    if got.md5 != rf.md5:
        return f"md5 {got.md5}, expected {rf.md5}"
    return None


def verify(path: str | os.PathLike, rf: RemoteFile) -> Digests:
    """Check a file in place against its pinned size and checksums; raise ChecksumError."""
    path = Path(path)
    got = file_digests(path)
    why = _mismatch(rf, got)
    if why is not None:
        raise ChecksumError(
            f"{path} is not the original {rf.dataset} file {rf.name}: {why}. It is truncated, "
            f"corrupted or a different file. Delete it and run 'overdeq data fetch --data "
            f"{_cli_name(rf)} --data-root {_root_of(path)}', or put the original there:\n"
            f"{rf.describe()}"
        )
    return got


def _cli_name(rf: RemoteFile) -> str:
    return {"MNIST": "mnist", "CIFAR-10": "cifar10"}.get(rf.dataset, rf.dataset.lower())


def _root_of(path: Path) -> str:
    # <root>/raw/<set>/<file> -> <root>; only used to make the suggested command exact
    parts = path.parts
    return str(Path(*parts[:-3])) if len(parts) >= 4 and parts[-3] == "raw" else "<root>"


def downloads_allowed(download: bool | None = None) -> bool:
    """Resolve the network policy (argument > network_allowed() > OVERDEQ_OFFLINE)."""
    if download is not None:
        return download
    ctx = _ALLOW.get()
    if ctx is not None:
        return ctx
    return os.environ.get("OVERDEQ_OFFLINE", "").strip().lower() not in ("1", "true", "yes")


@contextlib.contextmanager
def network_allowed(allowed: bool) -> Iterator[None]:
    """Within the block, loaders may (True) or may not (False) download missing files."""
    token = _ALLOW.set(allowed)
    try:
        yield
    finally:
        _ALLOW.reset(token)


def fetch_file(
    rf: RemoteFile, dest: str | os.PathLike, *, timeout: float = 60.0, log: TextIO | None = None
) -> Digests:
    """Fetch ``rf`` to ``dest``, trying its URLs in order; only a verified file lands there.

    Each attempt streams into a temporary file in ``dest``'s folder while hashing; on a
    size or checksum mismatch the temporary file is deleted and the next URL is tried. If
    every URL fails, DownloadError lists each URL with its failure (expected vs actual).
    """
    dest = Path(dest)
    check_place(dest, rf)
    dest.parent.mkdir(parents=True, exist_ok=True)
    stream = log if log is not None else sys.stderr
    removed = remove_stale_parts(dest)
    if removed:
        print(f"removed {len(removed)} stale partial download(s) of {dest}", file=stream)
    failures: list[str] = []
    for url in rf.urls:
        fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=_PART, dir=dest.parent)
        try:
            t0 = time.perf_counter()
            print(f"downloading {url} -> {dest}", file=stream, flush=True)
            with os.fdopen(fd, "wb") as sink:
                fcntl.flock(sink.fileno(), fcntl.LOCK_EX)  # held until moved into place
                with urllib.request.urlopen(url, timeout=timeout) as resp:
                    got = _hash_stream(resp, sink)
                sink.flush()
                os.fsync(sink.fileno())
                why = _mismatch(rf, got)
                if why is None:
                    os.replace(tmp, dest)
            if why is not None:
                failures.append(f"{url}: wrong content ({why}); the partial file was deleted")
                continue
            print(
                f"  {got.size} bytes in {time.perf_counter() - t0:.1f} s, sha256 "
                f"{got.sha256} verified",
                file=stream,
                flush=True,
            )
            return got
        except urllib.error.HTTPError as exc:
            failures.append(f"{url}: HTTP {exc.code} {exc.reason}")
        except (urllib.error.URLError, OSError, ValueError) as exc:
            failures.append(f"{url}: {getattr(exc, 'reason', None) or exc}")
        finally:
            Path(tmp).unlink(missing_ok=True)
    tried = "\n".join(f"    {f}" for f in failures)
    raise DownloadError(
        f"could not download {rf.dataset} file {rf.name} to {dest}; every URL failed:\n{tried}\n"
        f"  Without network access, fetch the file elsewhere, check its checksum and put it at "
        f"{dest}:\n{rf.describe()}"
    )


def remove_stale_parts(dest: str | os.PathLike) -> list[Path]:
    """Delete the temporary files of downloads of ``dest`` that no running process holds.

    Every download holds an exclusive flock on its temporary file from just after creating
    it until it is renamed or deleted; the lock dies with its process, so a file whose lock
    can be taken was left by a killed download. Returns the files deleted.
    """
    dest = Path(dest)
    removed = []
    for part in sorted(dest.parent.glob(f".{glob.escape(dest.name)}.*{_PART}")):
        try:
            fd = os.open(part, os.O_RDONLY)
        except OSError:  # gone meanwhile (renamed or deleted by its owner)
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:  # held: a download in progress
            continue
        else:
            part.unlink(missing_ok=True)
            removed.append(part)
        finally:
            os.close(fd)
    return removed


def check_place(path: str | os.PathLike, rf: RemoteFile) -> None:
    """Refuse a raw file's place that holds something else (a folder, say), or whose folder
    cannot exist because a file stands where a folder of its path should be."""
    path = Path(path)
    if path.exists() and not path.is_file():
        kind = "a folder" if path.is_dir() else "not a regular file"
        raise DataFileError(
            f"{path} is {kind}, but the {rf.dataset} file {rf.name} belongs there. Move it "
            f"away, then run 'overdeq data fetch --data {_cli_name(rf)} --data-root "
            f"{_root_of(path)}' or put the original file there:\n{rf.describe()}"
        )
    for parent in path.parents:
        if parent.exists():
            if not parent.is_dir():
                raise DataFileError(
                    f"{parent} is a file, but {rf.dataset}'s raw files go in the folder "
                    f"{path.parent}; move {parent} away or choose another --data-root"
                )
            break


def ensure(rf: RemoteFile, folder: str | os.PathLike, *, download: bool | None = None) -> LocalFile:
    """The verified file ``rf`` in ``folder``: use a file in place, else download it.

    A file already present is verified (never replaced: a mismatch is an error the user
    resolves); the network is used only for a missing file and only when allowed.
    """
    path = Path(folder) / rf.name
    check_place(path, rf)
    if path.is_file():
        return LocalFile(path, verify(path, rf))
    if not downloads_allowed(download):
        raise _missing([rf], Path(folder))
    return LocalFile(path, fetch_file(rf, path))


def ensure_all(
    files: Sequence[RemoteFile], folder: str | os.PathLike, *, download: bool | None = None
) -> dict[str, LocalFile]:
    """:func:`ensure` for several files; offline, all missing ones are named in one error."""
    folder = Path(folder)
    for rf in files:
        check_place(folder / rf.name, rf)
    if not downloads_allowed(download):
        missing = [rf for rf in files if not (folder / rf.name).is_file()]
        if missing:
            raise _missing(missing, folder)
    return {rf.name: ensure(rf, folder, download=download) for rf in files}


def _missing(files: Sequence[RemoteFile], folder: Path) -> MissingFileError:
    rf = files[0]
    names = ", ".join(str(folder / f.name) for f in files)
    where = "\n".join(f.describe() for f in files)
    return MissingFileError(
        f"{rf.dataset} file(s) missing: {names}; downloading is switched off (--no-download "
        f"or OVERDEQ_OFFLINE=1). Put the original file(s) in {folder}/, or run 'overdeq data "
        f"fetch --data {_cli_name(rf)} --data-root {_root_of(folder / rf.name)}' on a machine "
        f"with network access:\n{where}"
    )
