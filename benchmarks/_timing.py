"""Wall-clock timing shared by the benchmark scripts (GPU work is synchronised around each call)."""

from __future__ import annotations

import time
from collections.abc import Callable

import torch


def synchronize(device: torch.device | str) -> None:
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)


def timings(
    fn: Callable[[], object], repeats: int, device: torch.device | str = "cpu"
) -> list[float]:
    """Seconds of each of ``repeats`` calls of ``fn``."""
    times = []
    for _ in range(repeats):
        synchronize(device)
        t0 = time.perf_counter()
        fn()
        synchronize(device)
        times.append(time.perf_counter() - t0)
    return times
