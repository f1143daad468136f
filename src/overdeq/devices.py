"""``--device cuda:auto``: each process claims a GPU no other overdeq process holds.

Snakemake limits how many GPU jobs run at once (``--resources gpu=N``) but does not tell a
job which GPU to use, so on a multi-GPU workstation every job would land on ``cuda:0``.
Instead each job claims one itself: an exclusive ``flock`` on a per-GPU lock file, held for
the rest of the process's life. The kernel drops the lock when the process exits, however
it exits (SIGKILL included), so a killed job never leaves a GPU marked busy.

GPUs are named by their ``CUDA_VISIBLE_DEVICES`` entry (the physical id), not by the torch
index, so two processes that see different subsets never confuse one GPU for another.
Lock files live in ``/tmp/overdeq-gpu-locks-<uid>`` (or ``$OVERDEQ_GPU_LOCK_DIR``). Under
SLURM, ``--gpus=1`` already gives the job a GPU of its own through CUDA_VISIBLE_DEVICES (on
clusters that constrain devices, every job sees it as "0"), so locks are kept per SLURM job
and the claim is simply the first visible GPU.
"""

from __future__ import annotations

import fcntl
import os
import platform
import re
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "AUTO",
    "GpuClaim",
    "GpuUnavailable",
    "visible_gpus",
    "lock_dir",
    "claim_gpu",
    "resolve_device",
]

AUTO = "cuda:auto"
_REMIND_EVERY_S = 300.0  # while waiting, repeat the "all busy" line this often


class GpuUnavailable(ValueError):
    """No GPU could be claimed: none is visible, or all stayed busy past the timeout."""


@dataclass(frozen=True)
class GpuClaim:
    """A GPU held by this process until it exits (or :meth:`release` is called)."""

    index: int  # torch index: the device is cuda:<index>
    gpu_id: str  # the CUDA_VISIBLE_DEVICES entry (physical id or UUID), or the index
    lock_path: Path
    fd: int

    @property
    def device(self) -> str:
        return f"cuda:{self.index}"

    def release(self) -> None:
        """Give the GPU back early (tests); normally the process exit does this."""
        if self in _HELD:
            _HELD.remove(self)
            os.close(self.fd)  # closing the only descriptor drops the flock


_HELD: list[GpuClaim] = []  # keeps every claim's descriptor open for the process lifetime


def visible_gpus(
    device_count: int | None = None, env: Mapping[str, str] | None = None
) -> list[str]:
    """Ids of the GPUs this process may use, in torch index order.

    ``device_count`` defaults to ``torch.cuda.device_count()`` (tests pass a number to fake
    GPUs). With ``CUDA_VISIBLE_DEVICES`` set, its entries name the devices; CUDA ignores
    entries past the first invalid one, which the device count already reflects.
    """
    env = os.environ if env is None else env
    if device_count is None:
        import torch

        device_count = torch.cuda.device_count()
    raw = env.get("CUDA_VISIBLE_DEVICES")
    if raw is None:
        return [str(i) for i in range(device_count)]
    ids = [part.strip() for part in raw.split(",") if part.strip()]
    return ids[:device_count]


def lock_dir(env: Mapping[str, str] | None = None) -> Path:
    """Where the per-GPU lock files live (one folder per user, or per SLURM job).

    Deliberately not $TMPDIR: Snakemake may give each job its own temporary folder, and
    then jobs would not see each other's locks.
    """
    env = os.environ if env is None else env
    if env.get("OVERDEQ_GPU_LOCK_DIR"):
        return Path(env["OVERDEQ_GPU_LOCK_DIR"])
    name = f"overdeq-gpu-locks-{os.getuid()}"
    if env.get("SLURM_JOB_ID"):  # SLURM already isolates the job's GPUs
        name += f"-slurm{env['SLURM_JOB_ID']}"
    return Path("/tmp") / name


def _lock_name(gpu_id: str) -> str:
    return "gpu-" + re.sub(r"[^A-Za-z0-9_.-]", "_", gpu_id) + ".lock"


def _try_claim(folder: Path, index: int, gpu_id: str) -> GpuClaim | None:
    path = folder / _lock_name(gpu_id)
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    # who holds it, for the "all busy" message of processes that have to wait
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"pid {os.getpid()} on {platform.node()}\n".encode(), 0)
    return GpuClaim(index=index, gpu_id=gpu_id, lock_path=path, fd=fd)


def _holders(folder: Path, ids: list[str]) -> str:
    out = []
    for gpu_id in ids:
        try:
            who = (folder / _lock_name(gpu_id)).read_text().strip()
        except OSError:
            who = ""
        out.append(f"GPU {gpu_id}: {who or 'unknown'}")
    return "; ".join(out)


def _stderr(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def claim_gpu(
    *,
    timeout: float = 3600.0,
    poll: float = 1.0,
    device_count: int | None = None,
    folder: Path | None = None,
    log: Callable[[str], None] = _stderr,
) -> GpuClaim:
    """Claim the first free visible GPU, waiting up to ``timeout`` seconds for one.

    Raises GpuUnavailable when no GPU is visible, or when all stay busy until the timeout.
    """
    ids = visible_gpus(device_count)
    if not ids:
        raise GpuUnavailable(
            "--device cuda:auto: no CUDA device is visible to this process "
            f"(CUDA_VISIBLE_DEVICES={os.environ.get('CUDA_VISIBLE_DEVICES', '<unset>')}). "
            "Use --device cpu, or run where a GPU is (under SLURM: request one with gpu=1)."
        )
    folder = lock_dir() if folder is None else Path(folder)
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    start = time.monotonic()
    last_log = None
    while True:
        for index, gpu_id in enumerate(ids):
            claim = _try_claim(folder, index, gpu_id)
            if claim is not None:
                if last_log is not None:
                    log(
                        f"overdeq: GPU {gpu_id} became free after "
                        f"{time.monotonic() - start:.0f} s of waiting"
                    )
                _HELD.append(claim)
                return claim
        waited = time.monotonic() - start
        if waited >= timeout:
            raise GpuUnavailable(
                f"--device cuda:auto: all {len(ids)} visible GPUs stayed busy for "
                f"{timeout:.0f} s ({_holders(folder, ids)}; locks in {folder}). Run at most "
                f"{len(ids)} GPU jobs at once (snakemake --resources gpu={len(ids)}), or wait "
                "longer with --gpu-wait SECONDS."
            )
        if last_log is None or time.monotonic() - last_log >= _REMIND_EVERY_S:
            log(
                f"overdeq: all {len(ids)} visible GPUs are busy ({_holders(folder, ids)}); "
                f"waiting up to {timeout - waited:.0f} s more for one to become free"
            )
            last_log = time.monotonic()
        time.sleep(max(0.0, min(poll, timeout - waited)))


def resolve_device(device: str, **claim_options) -> str:
    """``cuda:auto`` -> ``cuda:<index>`` of a GPU claimed for this process; others unchanged."""
    if device != AUTO:
        return device
    claim = claim_gpu(**claim_options)
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    where = f" of CUDA_VISIBLE_DEVICES={visible}" if visible is not None else ""
    _stderr(
        f"overdeq: --device cuda:auto -> {claim.device} (GPU {claim.gpu_id}{where}; "
        f"lock {claim.lock_path})"
    )
    return claim.device
