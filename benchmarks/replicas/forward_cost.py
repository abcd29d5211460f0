"""What a hop between replicas costs: a small Gradio request served by the replica it reaches, against the
same request forwarded to the replica its `ds_replica` cookie names (api/affinity.py), and a gradio_client
prediction straight to one replica against one through the round-robin proxy (two of three of its
requests forwarded).

    python -m benchmarks.replicas.forward_cost             # starts three replicas; ~1-2 minutes on 2 cores

Prints medians and 90th percentiles (ms) and the machine's load average; everything on loopback.
"""
from __future__ import annotations

import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.machine import load_average
from benchmarks.replicas.proxy import running_proxy
from benchmarks.speed.servers import HOST, ROOT, ServerProcess, free_port, request

REPLICAS = 3
REQUESTS = 300  # small requests per case
PREDICTIONS = 40  # gradio_client predictions per case
DIGIT_PNG = ROOT / "examples" / "digit.png"


def percentiles(samples: list[float]) -> str:
    ordered = sorted(samples)
    return f"p50 {statistics.median(ordered) * 1000:.2f} ms, p90 {ordered[int(len(ordered) * 0.9)] * 1000:.2f} ms"


def timed(call, count: int) -> list[float]:
    call()  # warm: connections, caches
    samples = []
    for _ in range(count):
        started = time.perf_counter()
        call()
        samples.append(time.perf_counter() - started)
    return samples


def main() -> None:
    import httpx
    from gradio_client import Client, handle_file

    folder = Path(tempfile.mkdtemp(prefix="forward-cost-"))
    ports = [free_port() for _ in range(REPLICAS)]
    servers = []
    for port in ports:
        env = {**os.environ, "GRADIO_SERVER_NAME": HOST, "GRADIO_SERVER_PORT": str(port), "DATA_DIR": str(folder),
               "REPLICA_URL": f"http://{HOST}:{port}", "PREDICT_WORKERS": "0", "GRADIO_ANALYTICS_ENABLED": "False"}
        servers.append(ServerProcess(f"replica {port}", [sys.executable, "app.py"], port, env=env,
                                     log_path=folder / f"app{port}.log").start())
    try:
        urls = [f"http://{HOST}:{port}/" for port in ports]
        for server, port in zip(servers, ports):
            server.wait_until(lambda port=port: request(port, "GET", "/robots.txt")[0] == 200, timeout=300)
        ids = [httpx.get(url + "robots.txt").headers["x-ds-replica"] for url in urls]
        with httpx.Client(timeout=30) as http:
            deadline = time.monotonic() + 30
            while http.get(urls[0] + "robots.txt", headers={"cookie": f"ds_replica={ids[1]}"}).headers[
                    "x-ds-replica"] != ids[1]:
                assert time.monotonic() < deadline, "replica 0 never saw replica 1"
                time.sleep(0.2)
            for name, cookie in (("served where it lands", ids[0]), ("forwarded to a peer", ids[1])):
                samples = timed(lambda: http.get(urls[0] + "robots.txt", headers={"cookie": f"ds_replica={cookie}"}),
                                REQUESTS)
                print(f"GET /robots.txt {name}: {percentiles(samples)}")
        with running_proxy(urls) as proxy:
            for name, url in (("straight to one replica", urls[0]), ("through the round-robin proxy", proxy.url)):
                client = Client(url, verbose=False)
                try:
                    samples = timed(lambda: client.predict(handle_file(str(DIGIT_PNG)), "model2", False,
                                                           api_name="/predict"), PREDICTIONS)
                finally:
                    client.close()
                print(f"gradio_client predict {name}: {percentiles(samples)}")
    finally:
        for server in servers:
            server.stop()
    print(f"load average: {load_average()}, {os.cpu_count()} CPUs")


if __name__ == "__main__":
    main()
