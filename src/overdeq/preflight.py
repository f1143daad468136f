"""Checks before a training run does any work, and the lock it holds on its run folder.

``overdeq train`` refuses, before it calibrates or allocates anything:

* a ``--out`` it cannot use (:func:`check_out`): an existing file, a path under a file, a
  folder it cannot write to, a run file (``checkpoint.pt``, ...) that is a folder;
* a width whose memory does not fit (:func:`check_memory`, estimate :func:`training_bytes`);
* options that do nothing in the mode or with the data asked for (:func:`useless_options`).

While a run works on its folder it holds an exclusive lock there (:func:`run_lock`, with
``filelock``): a second ``overdeq train`` on the same folder, with or without
``--overwrite``, fails at once and names the process that holds it. The lock goes away with
the process (``flock``), so a killed run never leaves a stale one. :func:`clear_run` is how
``--overwrite`` starts over.
"""

from __future__ import annotations

import json
import os
import socket
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import filelock

from .config import ConfigError, RunConfig

__all__ = [
    "LOCK_NAME",
    "OWNER_NAME",
    "RUN_FILES",
    "RunLockedError",
    "check_out",
    "run_lock",
    "clear_run",
    "training_bytes",
    "input_dim_bound",
    "available_memory",
    "check_memory",
    "useless_options",
    "refuse_useless",
    "tags",
]

LOCK_NAME = ".overdeq-run.lock"  # flock'ed while a run works here
OWNER_NAME = ".overdeq-run.owner"  # JSON: pid, host, start time of the holder
# The files a run writes, in the order clear_run removes them: summary.json first, so a
# crash half way through leaves no summary that vouches for the files left.
RUN_FILES = ("summary.json", "checkpoint.pt", "history.csv", "spectrum.npz")

GB = 1e9  # --memory-budget-gb counts 10^9 bytes
RUNTIME = 200_000_000  # bytes torch's kernels take on first use, at any width
# Input dimension of each data set, an upper bound where it depends on preparation.
DIMS = {"digits": 64, "mnist": 784, "cifar10": 3072}


class RunLockedError(ConfigError):
    """Another process holds the run folder."""


# ---------------------------------------------------------------- the run folder


def _probe_writable(folder: Path, flag: str) -> None:
    """Create and delete a file in ``folder``; a ConfigError if that fails."""
    try:
        fd, name = tempfile.mkstemp(prefix=".overdeq-probe.", dir=folder)
        os.close(fd)
        os.unlink(name)
    except OSError as exc:
        raise ConfigError(
            f"{flag} {folder} cannot be written to ({exc.strerror or exc}); choose a folder on "
            "a writable file system, or fix its permissions"
        ) from None


def check_out(out: Path, flag: str = "--out") -> None:
    """Refuse a run folder that cannot hold a run, before any work.

    An existing file, a path under a file, a folder (or, for a new one, its nearest existing
    parent) that cannot be written to, and a run file (:data:`RUN_FILES`) that is not a file.
    """
    if out.exists() and not out.is_dir():
        raise ConfigError(
            f"{flag} {out} is a file, not a folder; a run folder holds {', '.join(RUN_FILES)}. "
            "Choose another --out, or move the file away"
        )
    for parent in out.parents:
        if parent.exists():
            if not parent.is_dir():
                raise ConfigError(
                    f"{flag} {out}: {parent} is a file, so no folder can be made under it; "
                    "choose another --out, or move the file away"
                )
            break
    existing = out if out.is_dir() else next(p for p in out.parents if p.exists())
    _probe_writable(existing, flag if existing == out else f"{flag} {out}: its parent")
    for name in RUN_FILES:
        path = out / name
        if path.exists() and not path.is_file():
            raise ConfigError(
                f"{path} is a folder, but the run writes its {name} there; move it away"
            )


def _holder(out: Path) -> tuple[str, str]:
    """Who holds the lock on ``out`` (from the owner file it wrote), and how to stop it."""
    try:
        owner = json.loads((out / OWNER_NAME).read_text())
        since = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(owner["started"]))
        pid = int(owner["pid"])
        return f"pid {pid} on {owner['host']}, running since {since}", f"kill {pid}"
    except (OSError, ValueError, KeyError, TypeError):
        return f"a process that has not recorded its pid in {out / OWNER_NAME}", "stop it"


_HELD: dict[Path, filelock.FileLock] = {}  # run folders this process holds


@contextmanager
def run_lock(out: Path | None) -> Iterator[None]:
    """Hold ``out`` exclusively for the block (``None``: no folder, nothing to hold).

    Makes the folder if needed (and removes it again if the block leaves nothing but the
    lock in a folder it made). The holder's pid goes to :data:`OWNER_NAME` beside the lock.
    Nested calls for the same folder in one process share the hold.
    """
    if out is None:
        yield
        return
    key = out.resolve()
    if key in _HELD:
        yield
        return
    made = not out.exists()
    out.mkdir(parents=True, exist_ok=True)
    lock = filelock.FileLock(out / LOCK_NAME, timeout=0)
    try:
        lock.acquire()
    except filelock.Timeout:
        who, stop = _holder(out)
        raise RunLockedError(
            f"--out {out} is in use by another overdeq train ({who}; lock {out / LOCK_NAME}). "
            f"Wait for it to finish, stop it ({stop}), or choose another --out; --overwrite "
            "does not take over a folder in use"
        ) from None
    _HELD[key] = lock
    try:
        owner = {"pid": os.getpid(), "host": socket.gethostname(), "started": time.time()}
        (out / OWNER_NAME).write_text(json.dumps(owner) + "\n")
        yield
    finally:
        (out / OWNER_NAME).unlink(missing_ok=True)
        del _HELD[key]
        lock.release()
        Path(lock.lock_file).unlink(missing_ok=True)
        if made and not any(out.iterdir()):
            out.rmdir()  # refused before any work: leave no empty run folder behind


def clear_run(out: Path, why: str) -> None:
    """Remove the run files of ``out`` (summary first) so a new run starts from nothing.

    Only :data:`RUN_FILES` and the temporary files of interrupted writes are removed;
    anything else in the folder stays. The caller holds :func:`run_lock`.
    """
    removed = []
    for name in RUN_FILES:
        path = out / name
        if path.is_file():
            path.unlink()
            removed.append(name)
    for stale in out.glob(".*.tmp"):
        stale.unlink()
    if removed:
        print(
            f"overdeq train: --overwrite: {why}; removed {', '.join(removed)} from {out} "
            "and starting over",
            file=sys.stderr,
        )


# ---------------------------------------------------------------- memory


def _gb(nbytes: float) -> str:
    """Bytes as GB with the digits that matter: 4,800,010 / 21.3 / 0.02."""
    x = nbytes / GB
    return f"{x:,.0f}" if x >= 100 else f"{x:.1f}" if x >= 1 else f"{x:.2g}"


def _dtype_bytes(precision: str) -> int:
    return 8 if precision == "float64" else 4


def training_bytes(n: int, d: int, width: int, precision: str) -> int:
    """Estimated peak memory of ``overdeq train`` in bytes (a cautious upper estimate).

    With b bytes per number (4, or 8 in float64) and P = m^2 + m d + 3 m + 1 parameters:

    * parameters, their gradients, the copy at init and a checkpoint's serialised copy: 4 P b;
    * the float64 audit of ||W||_2 (W, W^T W, the eigensolver's workspace) and the float64
      draws of the initial weights: 4 m^2 * 8, which also covers calibration's float64 twin;
    * activations: (n, m) iterates of the solvers (Anderson keeps 2 x 5 of them) and of
      autograd, about 20 of them in b bytes, plus 8 of the float64 calibration;
    * the (n, n) tangent Gram and its eigendecomposition in float64 (4 n^2 * 8) and the data;
    * 0.2 GB that torch's kernels take on first use (linear algebra, autograd), whatever m.
    """
    b = _dtype_bytes(precision)
    m = width
    params = m * m + m * d + 3 * m + 1
    fixed = 4 * params * b + 32 * m * m + n * m * (20 * b + 8 * 8) + 32 * n * n + 16 * n * d
    return fixed + RUNTIME


def input_dim_bound(name: str, n: int, d: int | None) -> int:
    """The input dimension of a data set, or an upper bound where it is not known yet."""
    if d is not None:
        return d
    return n if name in ("identity", "gaussian") else DIMS.get(name, 3072)


def _cgroup_free() -> int | None:
    """Bytes left under this process's cgroup (v2) memory limit, None when unlimited."""
    try:
        limit = Path("/sys/fs/cgroup/memory.max").read_text().strip()
        used = int(Path("/sys/fs/cgroup/memory.current").read_text())
    except (OSError, ValueError):
        return None
    return None if limit == "max" else max(0, int(limit) - used)


def available_memory(device: str) -> tuple[int, str]:
    """(bytes, what they are) the device can give a run now."""
    if device.startswith("cuda"):
        import torch

        free, total = torch.cuda.mem_get_info(torch.device(device))
        return free, f"free memory of {device} ({total / GB:.1f} GB in all)"
    available = None
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                available = int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    if available is None:
        available = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    cgroup = _cgroup_free()
    if cgroup is not None and cgroup < available:
        return cgroup, "memory left under this container's limit (cgroup memory.max)"
    return available, "available memory of this machine (MemAvailable)"


def _largest_width(n: int, d: int, precision: str, budget: float) -> int:
    """The largest width whose estimate fits ``budget`` bytes (0 if none does)."""
    lo, hi = 0, 1
    while training_bytes(n, d, hi, precision) <= budget:
        lo, hi = hi, 2 * hi
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (mid, hi) if training_bytes(n, d, mid, precision) <= budget else (lo, mid)
    return lo


def check_memory(run: RunConfig, n: int, d: int, budget_gb: float | None) -> None:
    """Refuse a run whose estimated memory (:func:`training_bytes`) exceeds the budget.

    The budget is ``budget_gb`` (--memory-budget-gb) when given, else what the device has
    free now. ``cuda:auto`` is checked once a GPU is claimed (the caller passes its name).
    """
    precision, device = run.train.precision, run.train.device
    need = training_bytes(n, d, run.model.width, precision)
    if budget_gb is not None:
        budget, what = budget_gb * GB, f"--memory-budget-gb {budget_gb:g}"
    elif device == "cuda:auto":
        return
    else:
        budget, what = available_memory(device)
    if need <= budget:
        return
    fits = _largest_width(n, d, precision, budget)
    way_out = (
        "or raise --memory-budget-gb"
        if budget_gb is not None
        else "use a device with more memory, or set --memory-budget-gb if the estimate "
        "(overdeq.preflight.training_bytes) is too cautious for your machine"
    )
    raise ConfigError(
        f"--width {run.model.width} needs about {_gb(need)} GB on {device} (W alone is "
        f"m x m = {run.model.width**2:.3g} numbers; n = {n}, d = {d}, {precision}), but "
        f"{what} allows {_gb(budget)} GB. Lower --width (about {fits} fits), {way_out}"
    )


# ---------------------------------------------------------------- options that do nothing


def useless_options(
    given: Mapping[str, Any], run: RunConfig, *, data: str | None, data_file: bool
) -> list[str]:
    """One line per option given that would change nothing in this run.

    ``given`` maps the flags given on the command line (knob names) to their values.
    """
    problems = []
    cfg = run.train
    if given.get("warm_start") and cfg.gradient != "implicit":
        problems.append(
            f"--warm-start does nothing with --gradient {cfg.gradient} (the mode {run.mode}'s "
            "gradient: the released algorithm always starts its solves from zero); drop it, "
            "or pass --gradient implicit"
        )
    if "allow_expansive" in given and run.mode != "paper":
        problems.append(
            f"--{'' if given['allow_expansive'] else 'no-'}allow-expansive does nothing in "
            f"--mode {run.mode} (only paper mode checks for a contraction); drop it"
        )
    if data_file:
        for name in ("data", "d", "classes", "labels", "data_root"):
            if name in given:
                flag = "--" + name.replace("_", "-")
                problems.append(
                    f"{flag} does nothing with --data-file (the prepared file fixes the data "
                    "set, its dimension, classes and labels); drop it"
                )
    elif "d" in given and data not in ("identity", "gaussian"):
        problems.append(
            f"--d does nothing for --data {data} (its images fix d); --d is for gaussian "
            "(and identity, d >= n) data; drop it"
        )
    if not data_file and "classes" in given and data in ("identity", "gaussian"):
        problems.append(
            f"--classes does nothing for --data {data} (synthetic data has no classes); drop it"
        )
    if not data_file and "data_root" in given and data in ("identity", "gaussian", "digits"):
        problems.append(
            f"--data-root does nothing for --data {data} (no raw files to read); drop it"
        )
    if "gpu_wait" in given and run.train.device != "cuda:auto":
        problems.append(
            f"--gpu-wait does nothing with --device {run.train.device} (only cuda:auto waits "
            "for a free GPU); drop it"
        )
    return problems


def refuse_useless(problems: list[str]) -> None:
    """A ConfigError listing every option that does nothing, or nothing."""
    if problems:
        raise ConfigError(
            "options that would do nothing in this run (refused, so a run never "
            "records a setting it did not use):\n  " + "\n  ".join(problems)
        )


def tags(items: list[str]) -> dict[str, str]:
    """--tag KEY=VALUE items as a dict; a malformed or repeated key is a ConfigError."""
    out: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"--tag expects KEY=VALUE, got {item!r}")
        if key in out and out[key] != value:
            raise ConfigError(f"--tag {key} is given twice ({out[key]!r} and {value!r})")
        out[key] = value
    return out
