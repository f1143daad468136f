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


def interleaved(
    fns: dict[str, Callable[[], object]], repeats: int, device: torch.device | str = "cpu"
) -> dict[str, list[float]]:
    """Seconds of ``repeats`` calls of each function, taken in turns (a, b, c, a, b, c, ...).

    On a machine shared with other jobs the load drifts; taking turns exposes every variant
    to the same load, so their ratios stay meaningful where back-to-back blocks would not.
    """
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            times[name] += timings(fn, 1, device)
    return times
