"""How long "serve version N" on one replica takes to reach the others (issue 20, item 3), under load.

Three `python app.py` on one PostgreSQL, each with a DATA_DIR of its own (no shared disk: a version's
files reach a replica only through the database). A Model 1 trained quickly on replica A (REST
/train, MNIST_DIR) is version 2; then 20 times, one replica in turn serves version 2 or 1 (REST
POST /models/model1/versions/<n>/serve) while 3 clients post /predict to all three replicas, and
the time until both others answer /predict with the new version is measured (polled every 20 ms:
the figures include up to that much). Every /predict during the switches must be a 200.

    MNIST_DIR=... python -m benchmarks.replicas.switch_time          # ~2-3 minutes on 2 cores

PostgreSQL: $DATABASE_URL when it names one (a fresh database: the versions are replaced), else a
throwaway server started like the tests' (tests/postgres.py: Debian's postgresql package).
"""
from __future__ import annotations

import base64
import os
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Callable

from benchmarks.machine import load_average
from benchmarks.speed.servers import HOST, ROOT, ServerProcess, free_port, request

REPLICAS = 3
SWITCHES = 20
LOAD_CLIENTS = 3
POLL = 0.02  # s between looks at the other replicas
DIGIT_PNG = ROOT / "examples" / "digit.png"
IMAGE = "data:image/png;base64," + base64.b64encode(DIGIT_PNG.read_bytes()).decode()
MODEL = "model1"


def fingerprint(answer: dict) -> tuple:
    """What tells two versions apart in a /predict answer: the probabilities, to 5 decimals."""
    return tuple(round(p, 5) for p in answer["probabilities"])


def predict(http, url: str, model: str = MODEL) -> dict:
    response = http.post(url + "predict", json={"image": IMAGE, "model": model})
    response.raise_for_status()
    return response.json()


class PredictLoad:
    """`clients` threads posting /predict to the replicas in turn until stopped; counts what failed."""

    def __init__(self, urls: list[str], clients: int = LOAD_CLIENTS, model: str = MODEL):
        self.urls, self.model = urls, model
        self.answered, self.failures = 0, []
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._threads = [threading.Thread(target=self._run, args=(index,), daemon=True) for index in range(clients)]

    def __enter__(self) -> "PredictLoad":
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join()

    def _run(self, index: int) -> None:
        import httpx

        with httpx.Client(timeout=30) as http:
            turn = index
            while not self._stop.is_set():
                url = self.urls[turn % len(self.urls)]
                turn += 1
                try:
                    response = http.post(url + "predict", json={"image": IMAGE, "model": self.model})
                    ok = response.status_code == 200
                    outcome = None if ok else f"{response.status_code} {response.text[:200]}"
                except httpx.HTTPError as error:
                    outcome = repr(error)
                with self._lock:
                    self.answered += 1
                    if outcome is not None:
                        self.failures.append(f"{url}: {outcome}")


def switch(http, urls: list[str], on: int, version: int, expected: tuple, model: str = MODEL,
           timeout: float = 30.0) -> float:
    """Serve `version` on replica `on`; seconds until every other replica answers /predict with `expected`
    (a fingerprint), from the moment the serve request was sent."""
    started = time.perf_counter()
    response = http.post(f"{urls[on]}models/{model}/versions/{version}/serve")
    response.raise_for_status()
    waiting = [url for index, url in enumerate(urls) if index != on]
    while waiting:
        waiting = [url for url in waiting if fingerprint(predict(http, url, model)) != expected]
        if not waiting:
            break
        if time.perf_counter() - started > timeout:
            raise AssertionError(f"{waiting} did not serve {model} version {version} within {timeout:.0f} s")
        time.sleep(POLL)
    return time.perf_counter() - started


def fingerprints(http, url: str, versions: list[int], model: str = MODEL) -> dict[int, tuple]:
    """The /predict fingerprint of each version, served in turn on the replica at `url`."""
    found = {}
    for version in versions:
        http.post(f"{url}models/{model}/versions/{version}/serve").raise_for_status()
        found[version] = fingerprint(predict(http, url, model))
    if len(set(found.values())) != len(found):
        raise AssertionError(f"the versions {versions} answer alike; they cannot be told apart: {found}")
    return found


def train_quick(http, url: str, model: str = MODEL, timeout: float = 600) -> int:
    """Train `model` quickly on the replica at `url` (REST); returns the version it became."""
    response = http.post(f"{url}train/{model}", json={"preset": "quick"})
    if response.status_code != 202:
        raise AssertionError(f"training did not start: {response.status_code} {response.text[:300]}")
    deadline = time.monotonic() + timeout
    while True:
        status = http.get(f"{url}train_status/{model}").json()
        if status["state"] == "succeeded":
            break
        if status["state"] in ("failed", "cancelled") or time.monotonic() > deadline:
            raise AssertionError(f"training ended {status['state']}: {status.get('error')}")
        time.sleep(0.5)
    return http.get(f"{url}model_status").json()[model]["version"]


def start_postgres() -> tuple[str, Callable[[], None]]:
    """(a PostgreSQL address, how to clean up): $DATABASE_URL, else a throwaway server."""
    if os.environ.get("DATABASE_URL", "").startswith(("postgresql://", "postgres://")):
        return os.environ["DATABASE_URL"], lambda: None
    from tests.postgres import PostgresServer, find_bindir  # the same real server the tests start

    bindir = find_bindir()
    if bindir is None:
        sys.exit("PostgreSQL's programs (initdb, pg_ctl) are missing: apt-get install postgresql, or set DATABASE_URL")
    server = PostgresServer.start(bindir)
    return server.new_database(), server.close


def measure(url: str, folder: Path, log=print, switches: int = SWITCHES) -> dict:
    """Three replicas on the PostgreSQL at `url` (data locations under `folder`): a quick Model 1 on A, then
    `switches` switches under load; the figures. Needs MNIST_DIR."""
    import httpx

    ports = [free_port() for _ in range(REPLICAS)]
    servers = []
    try:
        for index, port in enumerate(ports):
            env = {**os.environ, "GRADIO_SERVER_NAME": HOST, "GRADIO_SERVER_PORT": str(port), "DATABASE_URL": url,
                   "DATA_DIR": str(folder / f"data{index}"), "PREDICT_WORKERS": "0", "MNIST_DOWNLOAD": "0",
                   "GRADIO_ANALYTICS_ENABLED": "False"}
            env.pop("TRAIN_TOKEN", None)
            servers.append(ServerProcess(f"replica {index}", [sys.executable, "app.py"], port, env=env,
                                         log_path=folder / f"app{index}.log").start())
        for server, port in zip(servers, ports):
            server.wait_until(lambda port=port: request(port, "GET", "/robots.txt")[0] == 200, timeout=300)
        urls = [f"http://{HOST}:{port}/" for port in ports]
        with httpx.Client(timeout=60) as http:
            started = time.perf_counter()
            trained = train_quick(http, urls[0])
            log(f"  version {trained} trained on replica A in {time.perf_counter() - started:.1f} s")
            known = fingerprints(http, urls[0], [1, trained])
            times = []
            with PredictLoad(urls) as load:
                for index in range(switches):
                    version = 1 if index % 2 == 0 else trained  # version 2 serves after fingerprints()
                    times.append(switch(http, urls, index % REPLICAS, version, known[version]))
                    time.sleep(0.3)
        figures = {"switches": switches, "median_ms": statistics.median(times) * 1000, "max_ms": max(times) * 1000,
                   "predictions": load.answered, "failed": len(load.failures), "failure_samples": load.failures[:5],
                   "clients": LOAD_CLIENTS}
        log(f"  {switches} switches (serve on one replica, the 2 others serving it), {LOAD_CLIENTS} clients posting "
            f"/predict meanwhile: median {figures['median_ms']:.0f} ms, max {figures['max_ms']:.0f} ms; "
            f"{load.answered} /predict, {len(load.failures)} failed")
        return figures
    finally:
        for server in servers:
            server.stop()


def main() -> None:
    if not os.environ.get("MNIST_DIR"):
        sys.exit("set MNIST_DIR: version 2 is a Model 1 trained quickly on replica A")
    url, cleanup = start_postgres()
    try:
        figures = measure(url, Path(tempfile.mkdtemp(prefix="switch-time-")))
        for failure in figures["failure_samples"]:
            print("  failed:", failure)
        print(f"load average {load_average()}")
    finally:
        cleanup()


if __name__ == "__main__":
    main()
