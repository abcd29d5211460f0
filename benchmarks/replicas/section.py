"""(10) Replicas on one database (issue 20): what N `python app.py` give on this machine and how fast they
agree. Three measures, each with real processes and a throwaway PostgreSQL (tests/postgres.py):

- /predict throughput with 1, 2 and 3 replicas (benchmarks/replicas/scaling.py); on 2 cores the cores
  bound it, not the processes;
- the drawings' write rate with 16 writers on SQLite and on PostgreSQL, every 201 in the database;
- serving a version on one replica -> both others serve it, 20 switches under /predict load
  (benchmarks/replicas/switch_time.py; needs MNIST_DIR for the quick Model 1 that is version 2).
"""
from __future__ import annotations

import os

from benchmarks.context import Context
from benchmarks.outcome import SectionResult
from benchmarks.replicas import scaling, switch_time

NAME = "replicas"
TITLE = "Replicas on one database: throughput, drawings' write rate, version switches"

SWITCH_TARGET_MS = 2000.0  # serve on A -> B and C serve it (issue 20)


def run(ctx: Context) -> SectionResult:
    result = SectionResult(NAME, TITLE)
    config = ctx.config
    figures = scaling.measure(ctx.work, log=ctx.log, counts=config.replica_counts,
                              load_seconds=config.replica_load_seconds, write_seconds=config.replica_write_seconds)
    rows = []
    for entry in figures["throughput"]:
        rows.append([entry["replicas"], entry["clients"], f"{entry['rps']:.0f}", f"{entry['p50_ms']:.1f}",
                     entry["errors"], "info"])
    result.table(f"/predict (Model 2, the canvas PNG) from {scaling.CLIENTS} keep-alive clients spread evenly over "
                 "the replicas",
                 ["Replicas", "Clients", "req/s", "p50 ms", "Errors", "Status"], rows)
    one, three = figures["throughput"][0], figures["throughput"][-1]
    result.check(f"/predict throughput, {' / '.join(str(n) for n in config.replica_counts)} replicas on one "
                 "PostgreSQL (the machine's cores bound it)", "info",
                 " / ".join(f"{entry['rps']:.0f}" for entry in figures["throughput"]) + " req/s, "
                 f"{sum(entry['errors'] for entry in figures['throughput'])} errors", three["rps"], None)
    writes = figures["writes"]
    lost = sum(entry["lost"] for entry in writes.values())
    result.table(f"Drawings saved by {scaling.WRITERS} writers (POST /drawings, each a real correction) for "
                 f"{config.replica_write_seconds:.0f} s",
                 ["Database", "Saved per s", "Answered 201", "In the database", "Lost", "Other answers"],
                 [[name, f"{entry['per_second']:.0f}", entry["acknowledged"], entry["stored"], entry["lost"],
                   entry["failures"]] for name, entry in writes.items()])
    result.check("Drawings' write rate with 16 writers, SQLite / PostgreSQL; none lost", "0 lost",
                 " / ".join(f"{entry['per_second']:.0f}" for entry in writes.values()) + f" per s; {lost} lost",
                 float(lost), lost == 0)
    if config.replica_switches and os.environ.get("MNIST_DIR"):
        with scaling.postgres() as server:
            switches = switch_time.measure(server.new_database(), ctx.work / "switches", log=ctx.log,
                                           switches=config.replica_switches)
        result.check(f"Serve a version on one replica -> the 2 others serve it (median, max of "
                     f"{switches['switches']}, under load)",
                     f"<= {SWITCH_TARGET_MS / 1000:.0f} s, 0 failed /predict",
                     f"median {switches['median_ms']:.0f} ms, max {switches['max_ms']:.0f} ms; "
                     f"{switches['predictions']:,} /predict, {switches['failed']} failed",
                     switches["max_ms"], switches["max_ms"] <= SWITCH_TARGET_MS and switches["failed"] == 0)
        figures["switches"] = switches
    elif config.replica_switches:
        result.note("Version switches not measured: set MNIST_DIR (version 2 is a quick Model 1 trained on a replica).")
    result.data = figures
    result.note(f"Throughput: {one['rps']:.0f} req/s with one replica and {three['rps']:.0f} with three on this "
                "machine's 2 cores: replicas share the cores here; they add capacity on more cores or machines.")
    return result
