"""(4) REST /predict on loopback: the real app vs a server built the original way (Flask + Keras).

Both servers get the same request (a 280x280 RGBA PNG data URL for Model 2), the
same concurrency levels and the same bounds. Our app runs on a private copy of
the shipped models, because one run also trains Model 1 through the API while
it serves, and a training run replaces the exported files. Ours is also loaded
with `"model": "all"` (every registered model reads the drawing in one request,
as the Draw tab asks) at 1 and 8 clients, against the same targets (issue 21).
"""
from __future__ import annotations

import sys
import time

from benchmarks.context import Context
from benchmarks.speed.load import measure, run_load, summarize
from inference.answer import ALL_MODELS
from inference.pool import usable_cores
from benchmarks.outcome import SectionResult, ratio
from benchmarks.speed.servers import (RssSampler, ServerProcess, app_server, free_port, predict_ready, request,
                                server_env, workers_ready)

NAME = "rest"
TITLE = "REST /predict on loopback: latency and throughput"

P50_TARGET_MS = 3.0  # one client
THROUGHPUT_TARGET = 500.0  # requests/s with 8 clients
THROUGHPUT_CLIENTS = 8
MODEL = "model2"  # the CNN: the model the original server ran with Keras
ALL_CLIENTS = (1, THROUGHPUT_CLIENTS)  # "model": "all" is loaded at the two levels that have targets


def run(ctx: Context) -> SectionResult:
    result = SectionResult(NAME, TITLE)
    body = ctx.predict_body(MODEL)
    ours = _measure_server(ctx, "Digit Studio (FastAPI + onnxruntime)", _start_app(ctx), body, train=True)
    result.data["ours"] = ours
    baseline = _measure_server(ctx, "original way (Flask + Keras predict)", _start_baseline(ctx), body,
                               train=False)
    result.data["baseline"] = baseline
    _report(ctx, result, ours, baseline)
    result.plots.append("rest_load.png")
    return result


def _start_app(ctx: Context) -> ServerProcess:
    port = free_port()
    return app_server(port, ctx.exports_copy("rest"), ctx.work / "app-rest.log")


def _start_baseline(ctx: Context) -> ServerProcess:
    port = free_port()
    argv = [sys.executable, "-m", "benchmarks.speed.baseline_flask_keras", "--port", str(port),
            "--model", str(ctx.exports / "model2.keras")]
    return ServerProcess("Flask + Keras baseline", argv, port, env=server_env(),
                         log_path=ctx.work / "baseline-rest.log")


def _measure_server(ctx: Context, label: str, server: ServerProcess, body: bytes, *, train: bool) -> dict:
    config = ctx.config
    ctx.log(f"starting {label} on 127.0.0.1:{server.port}")
    with server:
        ready_seconds = server.wait_until(predict_ready(server.port, body), timeout=config.server_start_timeout)
        if train:  # ours: also wait for its prediction worker processes (they start beside the server)
            server.wait_until(workers_ready(server.port), timeout=config.server_start_timeout)
        status, answer = request(server.port, "POST", "/predict", body)
        prediction = answer.get("prediction") if status == 200 and isinstance(answer, dict) else None
        data = {"label": label, "ready_seconds": round(ready_seconds, 2), "prediction": prediction,
                "answer_correct": prediction == ctx.request_label, "levels": {}}
        run_load(server.port, "/predict", body, clients=1, max_requests=config.warmup_requests, max_seconds=10)
        time.sleep(0.5)
        data["rss_idle_mib"] = round(server.rss_bytes() / 2 ** 20, 1)
        with RssSampler(server) as sampler:
            for clients in config.concurrency:
                level = measure(server.port, "/predict", body, clients=clients,
                                max_requests=config.load_requests[clients],
                                max_seconds=config.load_round_seconds, rounds=config.load_rounds)
                data["levels"][str(clients)] = level
                ctx.log(f"  {clients:>2} clients: p50 {level['p50_ms']:.2f} ms, p99 {level['p99_ms']:.2f} ms, "
                        f"{level['throughput_rps']:.0f} req/s, {level['errors']} errors")
        data["rss_under_load_mib"] = round(sampler.peak / 2 ** 20, 1)
        if train:  # ours: every model in one request ("model": "all"), then loaded while Model 1 trains
            data["all_models"] = _measure_all(ctx, server)
            data["prediction_workers"] = request(server.port, "GET", "/env")[1].get("prediction_workers")
            data["during_training"] = _load_while_training(ctx, server, body)
    return data


def _measure_all(ctx: Context, server: ServerProcess) -> dict:
    """/predict with "model": "all" at ALL_CLIENTS, bounded and counted like the single-model levels."""
    config = ctx.config
    body = ctx.predict_body(ALL_MODELS)
    status, answer = request(server.port, "POST", "/predict", body)
    predictions = answer.get("predictions", {}) if status == 200 and isinstance(answer, dict) else {}
    data = {"models": sorted(predictions), "answers": {name: p.get("prediction") for name, p in predictions.items()},
            "levels": {}}
    run_load(server.port, "/predict", body, clients=1, max_requests=config.warmup_requests, max_seconds=10,
             expect=b'"predictions"')
    for clients in ALL_CLIENTS:
        level = measure(server.port, "/predict", body, clients=clients, max_requests=config.load_requests[clients],
                        max_seconds=config.load_round_seconds, rounds=config.load_rounds, expect=b'"predictions"')
        data["levels"][str(clients)] = level
        ctx.log(f"  \"all\" ({len(data['models'])} models), {clients:>2} clients: p50 {level['p50_ms']:.2f} ms, "
                f"p99 {level['p99_ms']:.2f} ms, {level['throughput_rps']:.0f} req/s, {level['errors']} errors")
    return data


def _load_while_training(ctx: Context, server: ServerProcess, body: bytes) -> dict:
    """Start a Model 1 training job through the API, then load /predict while it runs."""
    config = ctx.config
    # The job manager's own presets: the model's QUICK options for a quick run, else its defaults.
    options = {"preset": "quick"} if config.training_options == "quick" else {}
    before = _served_model1(server)
    status, answer = request(server.port, "POST", "/train/model1", options)
    info = {"train_http_status": status, "train_options": options or "defaults"}
    if status not in (200, 202):
        info["error"] = f"POST /train/model1 answered {status}: {answer}"
        return info
    # Half the clients ask the model being retrained, so its hot reload happens under load too.
    bodies = [ctx.predict_body("model1"), body]
    runs, trained_during = [], 0
    began = time.perf_counter()
    # Load in short chunks so we notice when the job ends; every chunk overlaps the running job.
    while time.perf_counter() - began < config.training_load_seconds:
        chunk = run_load(server.port, "/predict", bodies, clients=THROUGHPUT_CLIENTS, max_requests=10 ** 6,
                         max_seconds=min(1.0, config.training_load_seconds))
        runs.append(chunk)
        job = request(server.port, "GET", "/train_status/model1")[1]
        trained_during += 1
        if not (isinstance(job, dict) and job.get("running")):
            break
    info.update(summarize(runs))
    info["chunks"] = trained_during
    # Wait for the job, bounded; then one more /predict must succeed on the freshly trained model.
    deadline = time.perf_counter() + config.training_wait_seconds
    job: dict = {}
    while time.perf_counter() < deadline:
        job = request(server.port, "GET", "/train_status/model1")[1]
        if not (isinstance(job, dict) and job.get("running")):
            break
        time.sleep(0.5)
    info["job_finished"] = isinstance(job, dict) and not job.get("running")
    info["job_status"] = job.get("status") if isinstance(job, dict) else str(job)[:200]
    info["job_error"] = job.get("error") if isinstance(job, dict) else None
    info["job_accuracy"] = job.get("accuracy") if isinstance(job, dict) else None
    after = request(server.port, "POST", "/predict", ctx.predict_body("model1"))
    info["predict_after_training_ok"] = after[0] == 200
    # The new export is served without a restart: /model_status reports the new training time.
    info["new_model_served"] = _served_model1(server) not in (None, before)
    return info


def _served_model1(server: ServerProcess):
    """When the model1 being served was trained, per /model_status."""
    status, answer = request(server.port, "GET", "/model_status")
    return answer.get("model1", {}).get("trained_at") if status == 200 and isinstance(answer, dict) else None


def _report(ctx: Context, result: SectionResult, ours: dict, baseline: dict) -> None:
    level_status = _checks(result, ours, baseline)
    result.table("Latency (ms) and throughput per concurrency level",
                 ["Server", "Clients", "p50", "p95", "p99", "req/s", "Errors", "Target", "Status"],
                 _level_rows(ours, baseline, level_status))
    result.table("Ours vs the original way (Flask + Keras model.predict)",
                 ["Clients", "req/s (ours vs Flask)", "Throughput ratio", "p50 ms (ours vs Flask)",
                  "Latency ratio", "Target", "Status"], _comparison_rows(ours, baseline))
    result.table("Server memory and start-up",
                 ["Server", "Ready after", "RSS idle", "RSS peak under load", "Target", "Status"],
                 [[data["label"], f"{data['ready_seconds']:.1f} s", f"{data['rss_idle_mib']:.0f} MiB",
                   f"{data['rss_under_load_mib']:.0f} MiB", "info", "info"] for data in (ours, baseline)])
    for data in (ours, baseline):
        if not data["answer_correct"]:
            result.note(f"{data['label']} answered {data['prediction']} for the request's drawn "
                        f"{ctx.request_label} (black ink on white, as a canvas sends it).")
        for clients, level in data["levels"].items():
            if level["errors"]:
                result.note(f"{data['label']}, {clients} clients: {level['errors']} errors, e.g. "
                            f"{level['error_samples'][:2]}")
    workers = ours.get("prediction_workers")
    if workers:
        requests = sum(level["requests"] for level in ours["levels"].values()) + ctx.config.warmup_requests
        result.note(f"{ours['label']} ran {workers['configured']} prediction worker processes (PREDICT_WORKERS; "
                    f"memory figures include them). They answered {workers['answered']:,} of the ~{requests:,} "
                    "requests above: those that overlapped others; a lone request is answered in the server "
                    "process, which saves the hop to a worker.")
    result.note("Clients run in the benchmark process on the same cores as the servers, each with one keep-alive "
                "connection. Latency percentiles pool every request of every round; req/s is the median over "
                "rounds. The Flask server logs each request as Flask does by default, like the original app.")


def _checks(result: SectionResult, ours: dict, baseline: dict) -> dict[str, str]:
    """The section's targets; returns the status of each concurrency level that has one."""
    statuses = {}
    one, eight = ours["levels"].get("1"), ours["levels"].get(str(THROUGHPUT_CLIENTS))
    if one:
        statuses["1"] = result.check(
            "REST /predict p50 latency, 1 client", f"<= {P50_TARGET_MS:.0f} ms", f"{one['p50_ms']:.2f} ms",
            one["p50_ms"], one["p50_ms"] is not None and one["p50_ms"] <= P50_TARGET_MS,
            why=f"one request takes {one['p50_ms']:.2f} ms end to end (client, HTTP, JSON, PNG decode, "
                f"preprocessing, onnxruntime).")
    if eight:
        base = baseline["levels"].get(str(THROUGHPUT_CLIENTS), {})
        versus = eight["throughput_rps"] / base["throughput_rps"] if base.get("throughput_rps") else None
        statuses[str(THROUGHPUT_CLIENTS)] = result.check(
            f"REST /predict throughput, {THROUGHPUT_CLIENTS} clients", f">= {THROUGHPUT_TARGET:.0f} req/s",
            f"{eight['throughput_rps']:.0f} req/s ({ratio(versus)} the Flask + Keras server's rate)",
            eight["throughput_rps"], eight["throughput_rps"] >= THROUGHPUT_TARGET,
            why=f"{THROUGHPUT_CLIENTS} clients and the server share {usable_cores()} cores; the server's CPU "
                f"time per request bounds the rate.")
    statuses.update(_all_checks(result, ours.get("all_models")))
    levels = [*ours["levels"].values(), *ours.get("all_models", {}).get("levels", {}).values()]
    errors = sum(level["errors"] for level in levels)
    requests = sum(level["requests"] for level in levels)
    samples = [sample for level in levels for sample in level["error_samples"]][:2]
    result.check("REST /predict errors at 1, 8 and 32 clients (and \"all\" at 1 and 8)", "0 errors",
                 f"{errors} of {requests:,}", errors, errors == 0, why=f"failed requests, e.g. {samples}")

    training = ours.get("during_training", {})
    if "error" in training:
        result.check("REST /predict while Model 1 trains", "0 errors", "training did not start", None, False,
                     why=training["error"])
    elif training:
        training_ok = (training["errors"] == 0 and training.get("job_finished") and not training.get("job_error")
                       and training.get("predict_after_training_ok") and training.get("new_model_served"))
        result.check("REST /predict while Model 1 trains", "0 errors; the new model is served",
                     f"{training['errors']} errors in {training['requests']:,}; "
                     f"{training['throughput_rps']:.0f} req/s; job: {training.get('job_status')}",
                     training["errors"], bool(training_ok),
                     why=f"errors {training.get('error_samples')}, job error {training.get('job_error')!r}, "
                         f"job finished: {training.get('job_finished')}, /predict after training OK: "
                         f"{training.get('predict_after_training_ok')}, new model served: "
                         f"{training.get('new_model_served')}")
    return statuses


def _all_checks(result: SectionResult, every: dict | None) -> dict[str, str]:
    """The same targets for "model": "all" (issue 21: every model in one request); statuses keyed "all:<clients>"."""
    if not every:
        return {}
    statuses = {}
    count = len(every["models"])
    one, eight = every["levels"].get("1"), every["levels"].get(str(THROUGHPUT_CLIENTS))
    if one:
        statuses["all:1"] = result.check(
            'REST /predict "model": "all" p50 latency, 1 client', f"<= {P50_TARGET_MS:.0f} ms",
            f"{one['p50_ms']:.2f} ms ({count} models)", one["p50_ms"],
            one["p50_ms"] is not None and one["p50_ms"] <= P50_TARGET_MS,
            why=f"one request runs all {count} models ({', '.join(every['models'])}) on one preprocessed image.")
    if eight:
        statuses[f"all:{THROUGHPUT_CLIENTS}"] = result.check(
            f'REST /predict "model": "all" throughput, {THROUGHPUT_CLIENTS} clients',
            f">= {THROUGHPUT_TARGET:.0f} req/s", f"{eight['throughput_rps']:.0f} req/s ({count} models)",
            eight["throughput_rps"], eight["throughput_rps"] >= THROUGHPUT_TARGET,
            why=f"{THROUGHPUT_CLIENTS} clients and the server share {usable_cores()} cores; each request runs "
                f"{count} models.")
    return statuses


def _level_rows(ours: dict, baseline: dict, statuses: dict[str, str]) -> list[list]:
    targets = {"1": f"p50 <= {P50_TARGET_MS:.0f} ms, 0 errors",
               str(THROUGHPUT_CLIENTS): f">= {THROUGHPUT_TARGET:.0f} req/s, 0 errors"}
    rows = []
    every = ours.get("all_models")
    servers = [("ours", ours["label"], ours["levels"], "")]
    if every:
        servers.append(("ours", f'{ours["label"]}, "model": "all" ({len(every["models"])} models)',
                        every["levels"], "all:"))
    servers.append(("baseline", baseline["label"], baseline["levels"], ""))
    for key, label, levels, prefix in servers:
        for clients, level in levels.items():
            if key == "baseline":
                target, status = "info (comparison)", "info"
            else:
                target = targets.get(clients, "0 errors")
                status = statuses.get(prefix + clients, "PASS") if level["errors"] == 0 else "MISS"
            rows.append([label, clients, *_latencies(level), f"{level['throughput_rps']:.0f}",
                         f"{level['errors']} / {level['requests']:,}", target, status])
    training = ours.get("during_training", {})
    if training and "error" not in training:
        rows.append([f"{ours['label']}, while Model 1 trains (clients split over both models)",
                     THROUGHPUT_CLIENTS, *_latencies(training), f"{training['throughput_rps']:.0f}",
                     f"{training['errors']} / {training['requests']:,}", "0 errors",
                     "PASS" if training["errors"] == 0 else "MISS"])
    return rows


def _comparison_rows(ours: dict, baseline: dict) -> list[list]:
    rows = []
    for clients, a in ours["levels"].items():
        b = baseline["levels"].get(clients)
        if not b or not b["throughput_rps"] or not a["p50_ms"] or not b["p50_ms"]:
            continue
        rows.append([clients, f"{a['throughput_rps']:.0f} vs {b['throughput_rps']:.0f}",
                     f"{ratio(a['throughput_rps'] / b['throughput_rps'])} higher",
                     f"{a['p50_ms']:.2f} vs {b['p50_ms']:.1f}", f"{ratio(b['p50_ms'] / a['p50_ms'])} lower",
                     "info", "info"])
    return rows


def _latencies(level: dict) -> list[str]:
    return [_f(level["p50_ms"]), _f(level["p95_ms"]), _f(level["p99_ms"])]


def _f(value: float | None) -> str:
    return "n/a" if value is None else (f"{value:.2f}" if value < 100 else f"{value:.0f}")
