"""A bounded HTTP load generator: N threads, each with one keep-alive connection.

The clients run in this process, on the same cores as the server, as a real
deployment on this machine would. Each run stops at a request count or a
wall-time cap, whichever comes first, and every socket has a timeout.
"""
from __future__ import annotations

import http.client
import itertools
import threading
import time
from dataclasses import dataclass, field

import numpy as np

from benchmarks.speed.servers import HOST


@dataclass
class LoadRun:
    clients: int
    seconds: float  # wall time from the first request to the last response
    latencies_ms: list[float] = field(default_factory=list)  # successful requests only
    errors: int = 0
    error_samples: list[str] = field(default_factory=list)

    @property
    def ok(self) -> int:
        return len(self.latencies_ms)

    @property
    def throughput(self) -> float:
        return self.ok / self.seconds if self.seconds > 0 else 0.0


def run_load(port: int, path: str, body: bytes | list[bytes], *, clients: int, max_requests: int,
             max_seconds: float, expect: bytes = b'"prediction"', timeout: float = 30.0) -> LoadRun:
    """POST `body` to `path` from `clients` threads until `max_requests` are sent or `max_seconds` pass.

    With a list of bodies, client i sends bodies[i % len(bodies)] (e.g. one model per client).
    A request counts as an error unless it returns 200 with `expect` in its body.
    """
    bodies = body if isinstance(body, list) else [body]
    tickets = itertools.count()  # next() on a count is atomic in CPython: a shared request budget
    start_line = threading.Barrier(clients + 1)
    per_thread: list[LoadRun] = [LoadRun(clients, 0.0) for _ in range(clients)]
    headers = {"Content-Type": "application/json"}
    deadline_box: list[float] = []

    def client(mine: LoadRun, body: bytes) -> None:
        connection = http.client.HTTPConnection(HOST, port, timeout=timeout)
        start_line.wait()
        deadline = deadline_box[0]
        try:
            while next(tickets) < max_requests and time.perf_counter() < deadline:
                began = time.perf_counter()
                try:
                    connection.request("POST", path, body=body, headers=headers)
                    response = connection.getresponse()
                    answer = response.read()
                    if response.status == 200 and expect in answer:
                        mine.latencies_ms.append(1000 * (time.perf_counter() - began))
                    else:
                        _error(mine, f"HTTP {response.status}: {answer[:200]!r}")
                except (OSError, http.client.HTTPException) as error:
                    _error(mine, f"{type(error).__name__}: {error}")
                    connection.close()  # the next request reconnects
        finally:
            connection.close()

    threads = [threading.Thread(target=client, args=(mine, bodies[i % len(bodies)]), daemon=True)
               for i, mine in enumerate(per_thread)]
    for thread in threads:
        thread.start()
    began = time.perf_counter()
    deadline_box.append(began + max_seconds)
    start_line.wait()
    for thread in threads:
        thread.join(max_seconds + timeout + 5)
    result = LoadRun(clients, time.perf_counter() - began)
    for mine in per_thread:
        result.latencies_ms.extend(mine.latencies_ms)
        result.errors += mine.errors
        result.error_samples.extend(mine.error_samples[:3])
    if any(thread.is_alive() for thread in threads):
        result.errors += 1
        result.error_samples.append("a client thread did not finish in time")
    return result


def _error(run: LoadRun, message: str) -> None:
    run.errors += 1
    if len(run.error_samples) < 3:
        run.error_samples.append(message)


def summarize(runs: list[LoadRun]) -> dict:
    """Latency percentiles over every request of every run; throughput as the median over runs."""
    latencies = np.array([value for run in runs for value in run.latencies_ms], dtype=float)
    throughputs = [run.throughput for run in runs]

    def percentile(q: float) -> float | None:
        return float(np.percentile(latencies, q)) if latencies.size else None

    return {
        "clients": runs[0].clients,
        "runs": len(runs),
        "requests": int(latencies.size + sum(run.errors for run in runs)),
        "ok": int(latencies.size),
        "errors": int(sum(run.errors for run in runs)),
        "error_samples": [sample for run in runs for sample in run.error_samples][:5],
        "p50_ms": percentile(50),
        "p95_ms": percentile(95),
        "p99_ms": percentile(99),
        "mean_ms": float(latencies.mean()) if latencies.size else None,
        "max_ms": float(latencies.max()) if latencies.size else None,
        "throughput_rps": float(np.median(throughputs)) if throughputs else 0.0,
        "throughput_per_run": [round(value, 1) for value in throughputs],
        "seconds": round(sum(run.seconds for run in runs), 2),
    }


def measure(port: int, path: str, body: bytes | list[bytes], *, clients: int, max_requests: int, max_seconds: float,
            rounds: int, expect: bytes = b'"prediction"') -> dict:
    runs = [run_load(port, path, body, clients=clients, max_requests=max_requests, max_seconds=max_seconds,
                     expect=expect) for _ in range(rounds)]
    return summarize(runs)
