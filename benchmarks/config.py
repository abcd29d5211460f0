"""How big each benchmark run is: the full run (`python -m benchmarks`) and the QUICK miniature.

The full run is sized to finish in under 10 minutes on 2 cores; QUICK runs every
section on tiny samples in well under a minute and exists to prove the harness
works (its figures are not representative).
"""
from __future__ import annotations

from dataclasses import dataclass, field

# Section name (what --only takes) -> module. The order is the run order and the numbering:
# TensorFlow enters the benchmark process only at "inference" (and "training"), and the
# server sections run before training has heated anything up.
SECTIONS = {
    "accuracy": "benchmarks.reading.accuracy",
    "robustness": "benchmarks.reading.robustness",
    "drawn": "benchmarks.reading.drawn",
    "inference": "benchmarks.speed.inference_speed",
    "rest": "benchmarks.speed.rest_load",
    "browser": "benchmarks.browser.draw_tab",
    "training": "benchmarks.speed.training_time",
    "cold_start": "benchmarks.speed.cold_start",
    "explain": "benchmarks.explain.explain",  # issue 19: last, so the sections before keep their numbers
    "replicas": "benchmarks.replicas.section",  # issue 20: N app.py on one database
}


@dataclass(frozen=True)
class BenchConfig:
    quick: bool = False
    # (1) accuracy: MNIST test images scored per model (None = all 10,000)
    accuracy_samples: int | None = None
    # (2) robustness: MNIST test digits rendered per drawing variant
    robustness_samples: int = 1000
    # (3) inference: repeated timing runs (the median is reported) and the
    # minimum wall time of one run, so fast calls are timed in loops
    timing_repeats: int = 7
    timing_run_seconds: float = 0.25
    # (4) REST load: concurrency levels; per level, `load_rounds` rounds each bounded
    # by a request count and a wall-time cap (whichever comes first)
    concurrency: tuple[int, ...] = (1, 8, 32)
    load_requests: dict[int, int] = field(default_factory=lambda: {1: 500, 8: 2000, 32: 2000})
    load_round_seconds: float = 4.0
    load_rounds: int = 3
    warmup_requests: int = 30
    # load while a training job runs: the longest window and how long to wait for the job
    training_load_seconds: float = 10.0
    training_wait_seconds: float = 180.0
    # browser: digits drawn in Chromium (0..9), server-CPU replays of the page's request, and
    # the paced load: users, seconds between one user's predictions, how long
    browser_digits: int = 10
    browser_cpu_requests: int = 500
    browser_users: int = 100
    browser_interval: float = 0.3
    browser_load_seconds: float = 20.0
    # (5) training: "defaults" (full runs) or "quick" (each model's QUICK options)
    training_options: str = "defaults"
    # ... and, if set, the MNIST digits each training takes (plus their canvas mix) in place of the options' own
    training_limit: int | None = None
    # (6) cold start: server starts (median reported) and the load window for memory
    cold_starts: int = 3
    memory_load_seconds: float = 4.0
    # how long a server may take to answer its first /predict before we give up
    server_start_timeout: float = 90.0
    # (9) explain: digits per set (MNIST test, drawn) for the deletion test, of those for the sanity
    # check, replays of the page's explain request for the server CPU, digits drawn in Chromium
    explain_samples: int = 200
    explain_sanity_samples: int = 40
    explain_cpu_requests: int = 100
    explain_browser_digits: int = 10
    explain_every_method: bool = True  # False: each model's default method only (the quick run)
    # (10) replicas: how many replicas the throughput is measured with, seconds of /predict load and of
    # drawings writes, version switches timed (each switch: serve on one replica, both others follow)
    replica_counts: tuple[int, ...] = (1, 2, 3)
    replica_load_seconds: float = 4.0
    replica_write_seconds: float = 5.0
    replica_switches: int = 20  # 0: not measured


FULL = BenchConfig()

QUICK = BenchConfig(
    quick=True,
    accuracy_samples=None,  # all 10,000: scoring them in batches takes about a second
    robustness_samples=100,
    timing_repeats=3,
    timing_run_seconds=0.03,
    load_requests={1: 40, 8: 120, 32: 128},
    load_round_seconds=2.0,
    load_rounds=1,
    warmup_requests=5,
    training_load_seconds=3.0,
    training_wait_seconds=90.0,
    training_options="quick",
    # Model 3's QUICK (3,000 digits: 7,984 images with the mix, 2 epochs) took 54 s of training on a slow 2-core
    # VM, most of the quick run's training section; 1,000 digits prove the harness as well.
    training_limit=1000,
    cold_starts=1,
    memory_load_seconds=1.0,
    browser_digits=3,
    browser_cpu_requests=50,
    browser_users=20,
    browser_load_seconds=2.0,
    explain_samples=6,
    explain_sanity_samples=3,
    explain_cpu_requests=30,  # the CPU clock ticks every 10 ms: 5 plain requests (~9 ms) could read as 0
    explain_browser_digits=1,
    explain_every_method=False,
    replica_counts=(1, 2),
    replica_load_seconds=1.0,
    replica_write_seconds=1.0,
    replica_switches=0,  # the switches need a training first (about a minute): tests/test_versions_replicas.py
)
