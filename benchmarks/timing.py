"""Timing a call: warm up, calibrate a loop length, then the median of repeated runs."""
from __future__ import annotations

import statistics
import time
from typing import Any, Callable


def time_call(fn: Callable[[], Any], *, repeats: int, run_seconds: float, warmup: int = 3,
              max_loop: int = 20_000) -> dict[str, float]:
    """Seconds per call of `fn`: the median over `repeats` runs, each looping for about `run_seconds`."""
    for _ in range(warmup):
        fn()
    began = time.perf_counter()
    fn()
    one_call = max(time.perf_counter() - began, 1e-7)
    loop = max(1, min(max_loop, int(run_seconds / one_call)))
    per_call = []
    for _ in range(repeats):
        began = time.perf_counter()
        for _ in range(loop):
            fn()
        per_call.append((time.perf_counter() - began) / loop)
    return {"median_s": statistics.median(per_call), "min_s": min(per_call), "max_s": max(per_call),
            "repeats": repeats, "calls_per_run": loop}
