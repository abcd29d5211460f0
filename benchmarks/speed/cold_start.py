"""(6) Server cold start and resident memory.

Cold start: from launching `python app.py` to its first successful /predict
(the median of several launches). Memory: the server's resident set (its whole
process group), idle after start-up and at its peak under load.
"""
from __future__ import annotations

import statistics
import time
from pathlib import Path

from benchmarks.context import Context
from benchmarks.speed.load import run_load
from benchmarks.outcome import SectionResult
from benchmarks.speed.rest_load import THROUGHPUT_CLIENTS
from benchmarks.machine import group_pids, process_group_pss
from benchmarks.speed.servers import RssSampler, app_server, free_port, predict_ready, workers_ready

NAME = "cold_start"
TITLE = "Server cold start and memory"

COLD_START_TARGET = 10.0  # seconds


def run(ctx: Context) -> SectionResult:
    result = SectionResult(NAME, TITLE)
    config = ctx.config
    body = ctx.predict_body("model2")
    exports = ctx.exports_copy("cold-start")
    starts, memory, tensorflow_loaded = [], {}, None
    for attempt in range(config.cold_starts):
        port = free_port()
        with app_server(port, exports, ctx.work / f"app-cold-start-{attempt}.log") as server:
            seconds = server.wait_until(predict_ready(port, body), timeout=config.server_start_timeout)
            starts.append(seconds)
            ctx.log(f"  start {attempt + 1}: first /predict after {seconds:.2f} s")
            if attempt == config.cold_starts - 1:
                tensorflow_loaded = _loads_tensorflow(server.process.pid)
                server.wait_until(workers_ready(port), timeout=config.server_start_timeout)
                time.sleep(1.0)
                memory["idle_mib"] = server.rss_bytes() / 2 ** 20
                memory["processes"] = len(group_pids(server.process.pid))
                pss = process_group_pss(server.process.pid)
                memory["pss_idle_mib"] = pss / 2 ** 20 if pss else None
                with RssSampler(server) as sampler:
                    load = run_load(port, "/predict", body, clients=THROUGHPUT_CLIENTS, max_requests=10 ** 6,
                                    max_seconds=config.memory_load_seconds)
                memory["under_load_mib"] = sampler.peak / 2 ** 20
                memory["load_requests"] = load.ok
                memory["load_errors"] = load.errors
    median = statistics.median(starts)
    result.data = {"starts_s": [round(value, 3) for value in starts], "median_s": median,
                   "rss_idle_mib": round(memory["idle_mib"], 1),
                   "rss_under_load_mib": round(memory["under_load_mib"], 1),
                   "pss_idle_mib": memory["pss_idle_mib"] and round(memory["pss_idle_mib"], 1),
                   "processes": memory["processes"],
                   "load_requests": memory["load_requests"], "load_errors": memory["load_errors"],
                   "tensorflow_loaded": tensorflow_loaded}
    start_status = result.check("Cold start: `python app.py` to first /predict",
                                f"<= {COLD_START_TARGET:.0f} s", f"{median:.2f} s (median of {len(starts)})",
                                median, median <= COLD_START_TARGET,
                                why=f"importing Gradio, FastAPI and onnxruntime and building the UI take "
                                    f"{median:.1f} s before the first request is served.")
    tf_status = result.check("Server does not load TensorFlow", "not loaded",
                             "loaded" if tensorflow_loaded else "not loaded", float(bool(tensorflow_loaded)),
                             not tensorflow_loaded, why="app.py (or something it imports) imports TensorFlow at "
                                                        "start-up; prediction must not need it.")
    processes = f"server + {memory['processes'] - 1} prediction workers" if memory["processes"] > 1 else "server"
    result.check(f"Server resident memory ({processes}), idle / under load", "info",
                 f"{memory['idle_mib']:.0f} MiB / {memory['under_load_mib']:.0f} MiB RSS; "
                 f"{_mib(memory['pss_idle_mib'])} PSS idle", memory["under_load_mib"], None)
    result.table("Start-up and memory", ["Measure", "Value", "Target", "Status"], [
        ["Cold start, each launch", ", ".join(f"{value:.2f} s" for value in starts), "info", "info"],
        ["Cold start, median", f"{median:.2f} s", f"<= {COLD_START_TARGET:.0f} s", start_status],
        ["TensorFlow in the server process", "loaded" if tensorflow_loaded else "not loaded", "not loaded",
         tf_status],
        [f"Resident memory (RSS summed over the {processes}), idle", f"{memory['idle_mib']:.0f} MiB", "info",
         "info"],
        ["Proportional memory (PSS: pages shared by the processes, such as libraries, counted once), idle",
         _mib(memory["pss_idle_mib"]), "info", "info"],
        [f"Resident memory, peak under {THROUGHPUT_CLIENTS} clients ({memory['load_requests']:,} requests, "
         f"{memory['load_errors']} errors)", f"{memory['under_load_mib']:.0f} MiB", "info", "info"],
    ])
    return result


def _mib(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.0f} MiB"


def _loads_tensorflow(pid: int) -> bool | None:
    """Whether TensorFlow's shared library is mapped into the server (i.e. it was imported)."""
    try:
        maps = Path(f"/proc/{pid}/maps").read_text()
    except OSError:
        return None
    return "libtensorflow" in maps or "_pywrap_tensorflow" in maps
