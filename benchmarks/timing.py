"""Timing helper shared by the benchmark scripts (run them as `python benchmarks/NAME.py`)."""

from __future__ import annotations

import time
from collections.abc import Callable


def best_seconds(function: Callable[[], object], repeats: int) -> float:
    """Minimum wall time of ``repeats`` calls [s]: the least disturbed by other load."""
    timings = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        timings.append(time.perf_counter() - start)
    return min(timings)
