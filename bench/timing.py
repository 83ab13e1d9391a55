"""Timing helpers the executor benchmarks share: repeated calls and their median."""
from __future__ import annotations

import statistics
import time
from typing import Callable, List


def median_ms(samples: List[float]) -> float:
    """The median of ``samples`` (seconds), in milliseconds to one decimal."""
    return round(statistics.median(samples) * 1000, 1)


def timed(fn: Callable[[], object], rounds: int) -> List[float]:
    """``rounds`` wall times of ``fn()`` in seconds, after one call that warms it up."""
    fn()
    samples = []
    for _ in range(rounds):
        t = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - t)
    return samples
