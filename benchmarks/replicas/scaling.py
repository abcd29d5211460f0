"""What replicas cost and give on this machine (issue 20): /predict throughput with 1, 2 and 3 replicas on
one PostgreSQL, and the drawings' write rate with 16 writers on SQLite and on PostgreSQL, none lost.

Every replica is a real `python app.py` (its default prediction workers), addressed directly: the
load's clients are spread evenly over the replicas, as a round-robin balancer would, without a
balancer's own cost on these same cores. On a 2-core machine the cores bound the throughput, not the
number of processes: more replicas only share them (the figures say so); replicas pay off on more
machines or cores. Writes: 16 threads POST /drawings (a real correction: decoded, read by the models,
stored) to one replica for WRITE_SECONDS; afterwards the database must hold every row answered 201.

    MNIST_DIR is not needed.   python -m benchmarks.replicas.scaling    # ~2 minutes on 2 cores

PostgreSQL: a throwaway server started like the tests' (tests/postgres.py: Debian's postgresql package).
"""
from __future__ import annotations

import base64
import contextlib
import json
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Iterator

from benchmarks.speed.load import run_load
from benchmarks.speed.servers import ROOT, ServerProcess, free_port, private_data, request, server_env, workers_ready

REPLICA_COUNTS = (1, 2, 3)
CLIENTS = 8  # in all, spread over the replicas
LOAD_SECONDS = 4.0
WRITERS = 16
WRITE_SECONDS = 5.0
START_TIMEOUT = 120.0
IMAGE = "data:image/png;base64," + base64.b64encode((ROOT / "examples" / "digit.png").read_bytes()).decode()


@contextlib.contextmanager
def postgres() -> Iterator[object]:
    """A throwaway PostgreSQL server (tests/postgres.py), or the reason there is none."""
    from tests.postgres import PostgresServer, find_bindir

    bindir = find_bindir()
    if bindir is None:
        raise RuntimeError("PostgreSQL's programs (initdb, pg_ctl) are not installed: apt-get install postgresql")
    server = PostgresServer.start(bindir)
    try:
        yield server
    finally:
        server.close()


@contextlib.contextmanager
def replicas(count: int, work: Path, database_url: str | None, label: str) -> Iterator[list[ServerProcess]]:
    """`count` app.py on one database (DATABASE_URL, else one SQLite file in a shared DATA_DIR), started
    together and ready (every prediction worker up)."""
    shared = work / f"{label}-shared-data"
    servers = []
    try:
        for index in range(count):
            port = free_port()
            data = private_data(work / f"{label}-data-{index}")
            if database_url is None:
                data["DATA_DIR"] = str(shared)
            env = server_env(GRADIO_SERVER_PORT=str(port), EXPORTS_DIR=str(ROOT / "exports"), **data,
                             **({"DATABASE_URL": database_url} if database_url else {}))
            servers.append(ServerProcess(f"replica {index}", [sys.executable, "app.py"], port, env=env,
                                         log_path=work / f"{label}-{index}.log").start())
        for server in servers:
            server.wait_until(workers_ready(server.port), timeout=START_TIMEOUT)
        yield servers
    finally:
        for server in servers:
            server.stop()


def throughput(servers: list[ServerProcess], clients: int = CLIENTS, seconds: float = LOAD_SECONDS) -> dict:
    """/predict (Model 2, the canvas PNG) from `clients` keep-alive clients spread over `servers`."""
    body = json.dumps({"image": IMAGE, "model": "model2"}).encode()
    for server in servers:  # warm each replica's workers
        run_load(server.port, "/predict", body, clients=2, max_requests=40, max_seconds=2.0)
    runs: list = [None] * len(servers)
    shares = [clients // len(servers) + (index < clients % len(servers)) for index in range(len(servers))]

    def load(index: int) -> None:
        runs[index] = run_load(servers[index].port, "/predict", body, clients=shares[index], max_requests=10 ** 6,
                               max_seconds=seconds)

    threads = [threading.Thread(target=load, args=(index,)) for index in range(len(servers))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    ok = sum(run.ok for run in runs)
    wall = max(run.seconds for run in runs)
    latencies = sorted(value for run in runs for value in run.latencies_ms)
    return {"replicas": len(servers), "clients": clients, "requests": ok, "errors": sum(run.errors for run in runs),
            "rps": ok / wall if wall else 0.0, "p50_ms": latencies[len(latencies) // 2] if latencies else None}


def write_rate(server: ServerProcess, writers: int = WRITERS, seconds: float = WRITE_SECONDS) -> dict:
    """POST /drawings from `writers` threads for `seconds`; then the rows stored vs the 201s answered."""
    before = _stored(server)
    acknowledged, failures = [0] * writers, []
    stop = time.monotonic() + seconds

    def writer(index: int) -> None:
        body = {"image": IMAGE, "label": index % 10}
        while time.monotonic() < stop:
            status, answer = request(server.port, "POST", "/drawings", body, timeout=30.0)
            if status == 201:
                acknowledged[index] += 1
            else:
                failures.append(f"{status}: {str(answer)[:120]}")

    started = time.monotonic()
    threads = [threading.Thread(target=writer, args=(index,)) for index in range(writers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    wall = time.monotonic() - started
    stored = _stored(server) - before
    return {"writers": writers, "acknowledged": sum(acknowledged), "stored": stored,
            "lost": sum(acknowledged) - stored, "failures": len(failures), "failure_samples": failures[:3],
            "per_second": sum(acknowledged) / wall}


def _stored(server: ServerProcess) -> int:
    status, answer = request(server.port, "GET", "/drawings/stats", timeout=30.0)
    if status != 200:
        raise RuntimeError(f"/drawings/stats answered {status}: {answer}")
    return int(answer["total"])


def measure(work: Path, log=print, *, counts: tuple[int, ...] = REPLICA_COUNTS, load_seconds: float = LOAD_SECONDS,
            write_seconds: float = WRITE_SECONDS) -> dict:
    """Both measures; `log` reports as it goes."""
    results: dict = {"throughput": [], "writes": {}}
    with postgres() as server:
        for count in counts:
            url = server.new_database()
            with replicas(count, work, url, f"throughput-{count}") as running:
                figures = throughput(running, seconds=load_seconds)
            results["throughput"].append(figures)
            log(f"  {count} replica(s): {figures['rps']:.0f} req/s, p50 {figures['p50_ms']:.1f} ms, "
                f"{figures['errors']} errors")
        for backend, url in (("SQLite", None), ("PostgreSQL", server.new_database())):
            with replicas(1, work, url, f"writes-{backend.lower()}") as (running,):
                figures = write_rate(running, seconds=write_seconds)
            results["writes"][backend] = figures
            log(f"  {backend}: {figures['per_second']:.0f} drawings/s from {figures['writers']} writers, "
                f"{figures['acknowledged']} acknowledged, {figures['lost']} lost, {figures['failures']} failed")
    return results


def main() -> int:
    with tempfile.TemporaryDirectory(prefix="replica-scaling-") as work:
        measure(Path(work))
    return 0


if __name__ == "__main__":
    sys.exit(main())
