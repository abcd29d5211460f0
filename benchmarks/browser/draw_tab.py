"""(5) The Draw tab in headless Chromium: pen lifted -> every answer shown, requests, server CPU, 100 users.

Starts the real app (`python app.py`), opens the page in Debian's Chromium (Playwright,
never a downloaded browser) and draws the digits 0-9 with mouse strokes
(benchmarks/browser/pen.py). A probe in the page notes the time of every `pointerup` and the
first animation frame at which every model's caption (#caption-model1, #caption-model2, ...)
show the answer to the drawing as it was at that moment: when the page marks each
caption with the drawing version it answers (`data-version`, our canvas does), the
caption must carry the version the canvas had at pen-up; otherwise both captions'
text must have changed. Meanwhile every request the page sends is counted, with its
body size, and the server's CPU time (its process group: server and prediction
workers, from /proc/<pid>/stat) is read before and after.

Then the page's own prediction request (captured from the browser: the JSON it POSTs
to /predict) is replayed to measure the server CPU per prediction precisely, and
100 paced users each send it every 300 ms (benchmarks/speed/paced_load.py), beside the
same load of plain REST requests.

BENCH_APP_ROOT=<checkout> runs another checkout's app.py (e.g. the code before the
canvas) with this harness, for before/after figures from the same machine.
"""
from __future__ import annotations

import json
import os
import statistics
import sys
import time
from pathlib import Path

from benchmarks.context import Context
from benchmarks.machine import group_pids, process_cpu_seconds
from benchmarks.outcome import SectionResult
from benchmarks.speed.paced_load import paced_load
from benchmarks.browser.pen import CHROMIUM, CHROMIUM_ARGS, DIGIT_STROKES, draw_mouse
from benchmarks.speed.servers import ROOT, ServerProcess, free_port, private_data, server_env, workers_ready
from training.registry import MODELS

NAME = "browser"
TITLE = "The Draw tab in headless Chromium: pen-up to answers, requests, server CPU, 100 drawing users"

LATENCY_TARGET_MS = 100.0  # pen lifted -> every model's answer shown, median
CPU_TARGET_MS = 3.0  # server CPU per UI prediction
BYTES_TARGET = 16 * 1024  # "a few KB" per prediction request
LOAD_P95_TARGET_MS = 250.0
ANSWER_WAIT = 10.0  # s: the longest we wait for the captions after a pen-up
IDLE_SECONDS = 3.0  # s: the server's background CPU is measured this long before drawing

# Installed once the page has loaded: records pen-ups and when every caption answers them.
PROBE = """() => {
  if (window.__pen) return;
  const pen = window.__pen = {ups: []};
  const captions = () => CAPTIONS.map(s => document.querySelector(s));
  // The answer's words only: Gradio's progress timer ("0.4s") also shows inside a busy caption.
  const words = (c) => ((c ? c.innerText : '').match(/(Reads|Not sure|That doesn't|Not available)[^\\n]*/) || [''])[0];
  const version = () => Number(document.querySelector('#sketchpad canvas')?.dataset.version ?? NaN);
  window.addEventListener('pointerup', () => {
    const up = {t: performance.now(), version: version(), texts: captions().map(words),
                done: null, during: pen.changes || 0};
    pen.ups.push(up);
    const check = () => {
      const now = captions();
      const ok = now.every((c, i) => words(c) && (
        c.dataset.version !== undefined ? Number(c.dataset.version) >= up.version : words(c) !== up.texts[i]));
      if (ok) { up.done = performance.now(); return; }
      if (performance.now() - up.t < 15000) requestAnimationFrame(check);
    };
    requestAnimationFrame(check);
  }, true);
  // Caption changes while the pen is down: answers while drawing.
  pen.changes = 0;
  let down = false;
  window.addEventListener('pointerdown', () => { down = true; }, true);
  window.addEventListener('pointerup', () => { down = false; }, true);
  new MutationObserver(() => { if (down) pen.changes += 1; })
    .observe(document.querySelector('#caption-model2') || document.body, {childList: true, subtree: true,
                                                                          characterData: true, attributes: true});
}""".replace("CAPTIONS", json.dumps([f"#caption-{name}" for name in MODELS]))  # every registered model


def run(ctx: Context) -> SectionResult:
    result = SectionResult(NAME, TITLE)
    app_root = Path(os.environ.get("BENCH_APP_ROOT") or ROOT).resolve()
    if not CHROMIUM.is_file():
        raise RuntimeError(f"Debian's chromium is not installed at {CHROMIUM} (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    port = free_port()
    exports = ctx.exports_copy("browser")
    env = server_env(GRADIO_SERVER_PORT=str(port), EXPORTS_DIR=str(exports), PYTHONPATH=str(app_root),
                     **private_data(exports.with_name(exports.name + "-data")))
    server = ServerProcess("app.py", [sys.executable, "app.py"], port, env=env, cwd=app_root,
                           log_path=ctx.work / "app-browser.log")
    with server:
        server.wait_until(workers_ready(port), timeout=ctx.config.server_start_timeout)
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
            try:
                drawing = _draw_digits(ctx, browser, port, server.process.pid)
            finally:
                browser.close()
        result.data["app_root"] = str(app_root)
        result.data["drawing"] = drawing
        body = drawing.pop("page_request_body", None)
        if body is not None:
            result.data["replay"] = _replay_cpu(ctx, port, server.process.pid, body.encode())
            rest_body = json.dumps({"image": json.loads(body)["image"], "model": "model2"}).encode()
            result.data["replay_rest"] = _replay_cpu(ctx, port, server.process.pid, rest_body)
            result.data["load"] = _load(ctx, port, body.encode())
        else:
            result.note("The page sent no JSON prediction request to /predict (the Gradio Sketchpad path): "
                        "there is no page request to replay or load-test; the issue's gradio_client "
                        "figures stand for that path.")
    _report(result)
    return result


def _draw_digits(ctx: Context, browser, port: int, pid: int) -> dict:
    page = browser.new_page(viewport={"width": 1280, "height": 960})
    page.set_default_timeout(90_000)
    sent: list[dict] = []
    page.on("request", lambda req: sent.append(_describe(req)))
    page.goto(f"http://127.0.0.1:{port}/", wait_until="load")
    page.wait_for_selector("#sketchpad canvas")
    page.wait_for_selector("#caption-model2", state="attached")
    page.evaluate(PROBE)
    digits = list(DIGIT_STROKES)[: ctx.config.browser_digits]
    # One warm-up digit: the first prediction of a fresh page also loads what it needs.
    _draw_one(page, DIGIT_STROKES[digits[0]])
    _clear(page)
    sent.clear()
    page.evaluate("() => { window.__pen.ups = []; }")
    # The server's own background CPU (Gradio's tasks, the event loop) while nothing is asked,
    # so the figure while drawing can be given net of it.
    idle_began, idle_cpu = time.perf_counter(), group_cpu_seconds(pid)
    time.sleep(IDLE_SECONDS)
    idle_rate = (group_cpu_seconds(pid) - idle_cpu) / (time.perf_counter() - idle_began)
    cpu_before, began = group_cpu_seconds(pid), time.perf_counter()
    per_digit = []
    for digit in digits:
        first = len(sent)
        ups_before = page.evaluate("() => window.__pen.ups.length")
        _draw_one(page, DIGIT_STROKES[digit])
        ups = page.evaluate("(n) => window.__pen.ups.slice(n)", ups_before)
        answers = [page.inner_text(f"#caption-{name}") for name in MODELS]
        ctx.log(f"  drew {digit}: pen-up -> answers {[u['done'] and round(u['done'] - u['t']) for u in ups]} ms; "
                f"{answers}")
        requests = sent[first:]
        per_digit.append({
            "digit": digit, "strokes": len(ups),
            "pen_up_to_answers_ms": [None if u["done"] is None else round(u["done"] - u["t"], 1) for u in ups],
            "caption_changes_while_drawing": page.evaluate("() => window.__pen.changes"),
            "captions": answers,
            "requests": len(requests), "request_bytes": sum(r["bytes"] for r in requests),
            "predict_posts": sum(r["predict"] for r in requests),
            "upload_posts": sum(r["upload"] for r in requests),
        })
        page.evaluate("() => { window.__pen.changes = 0; }")
        _clear(page)
    cpu_seconds, wall = group_cpu_seconds(pid) - cpu_before, time.perf_counter() - began
    predictions = sum(r["predict"] for r in sent)
    body = next((r["body"] for r in reversed(sent) if r["predict"] and r["body"]), None)
    page.close()
    return {"digits": per_digit, "server_cpu_seconds": round(cpu_seconds, 3), "seconds": round(wall, 1),
            "idle_cpu_share": round(idle_rate, 4), "predictions": predictions,
            "requests": len(sent), "request_bytes": sum(r["bytes"] for r in sent), "page_request_body": body}


def _describe(req) -> dict:
    data = req.post_data_buffer or b""
    # Playwright gives no body for a multipart file upload: its Content-Length says the size.
    size = len(data) or int(req.headers.get("content-length", 0) or 0)
    path = req.url.split("?", 1)[0]
    # The REST route, not Gradio's own routes (under /gradio_api/, some also end in "/predict").
    json_predict = req.method == "POST" and path.endswith("/predict") and "/gradio_api/" not in path
    gradio_predict = req.method == "POST" and "/queue/join" in path  # the old path: one join per event
    body = None  # the page's own /predict JSON only (replayed below), never a Gradio queue message
    if json_predict:
        try:
            body = data.decode()
            if "image" not in json.loads(body):
                body = None
        except (ValueError, TypeError):
            body = None
    return {"method": req.method, "path": path, "bytes": size, "predict": json_predict or gradio_predict,
            "upload": req.method == "POST" and "/upload" in path, "body": body}


def _draw_one(page, strokes) -> None:
    done_before = page.evaluate("() => window.__pen.ups.length")
    for stroke in strokes:
        draw_mouse(page, [stroke])
        _wait_answered(page, done_before)
        done_before += 1


def _wait_answered(page, index: int) -> None:
    deadline = time.monotonic() + ANSWER_WAIT
    while time.monotonic() < deadline:
        if page.evaluate("(i) => { const u = window.__pen.ups[i]; return !!(u && u.done); }", index):
            return
        time.sleep(0.02)


def _clear(page) -> None:
    page.click("#clear")
    deadline = time.monotonic() + ANSWER_WAIT
    while time.monotonic() < deadline and page.inner_text("#caption-model2").strip().startswith("Reads"):
        time.sleep(0.05)
    time.sleep(0.3)  # the old sketchpad re-initialises its canvas after a reset


def group_cpu_seconds(pgid: int) -> float:
    """User + system CPU of every process in the server's group."""
    total = 0.0
    for pid in group_pids(pgid):
        try:
            total += process_cpu_seconds(pid)
        except (OSError, ValueError, IndexError):
            continue  # the process ended while we looked
    return total


def _replay_cpu(ctx: Context, port: int, pid: int, body: bytes) -> dict:
    """Server CPU per prediction for the page's own request, sent N times one after another."""
    import http.client

    count = ctx.config.browser_cpu_requests
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    headers = {"Content-Type": "application/json"}
    answer_bytes = 0
    try:
        for _ in range(5):  # warm-up
            connection.request("POST", "/predict", body=body, headers=headers)
            connection.getresponse().read()
        before, began = group_cpu_seconds(pid), time.perf_counter()
        for _ in range(count):
            connection.request("POST", "/predict", body=body, headers=headers)
            answer_bytes = len(connection.getresponse().read())
        seconds, cpu = time.perf_counter() - began, group_cpu_seconds(pid) - before
    finally:
        connection.close()
    return {"requests": count, "server_cpu_ms_per_prediction": round(1000 * cpu / count, 3),
            "wall_ms_per_prediction": round(1000 * seconds / count, 3), "request_bytes": len(body),
            "answer_bytes": answer_bytes}


def _load(ctx: Context, port: int, page_body: bytes) -> dict:
    config = ctx.config
    rest_body = json.dumps({"image": json.loads(page_body)["image"], "model": "model2"}).encode()
    figures = {}
    for label, body in (("page", page_body), ("rest", rest_body)):
        ctx.log(f"  {config.browser_users} paced users, {label} requests, {config.browser_load_seconds:.0f} s")
        figures[label] = paced_load(port, "/predict", [body], users=config.browser_users,
                                    interval=config.browser_interval, seconds=config.browser_load_seconds)
        level = figures[label]
        ctx.log(f"    p50 {level['p50_ms']:.1f} ms, p95 {level['p95_ms']:.1f} ms, {level['throughput_rps']:.0f} req/s, "
                f"{level['errors']} errors")
        time.sleep(1)
    return figures


def _report(result: SectionResult) -> None:
    drawing = result.data["drawing"]
    digits = drawing["digits"]
    last_ups = [d["pen_up_to_answers_ms"][-1] if d["pen_up_to_answers_ms"] else None for d in digits]
    all_ups = [v for d in digits for v in d["pen_up_to_answers_ms"]]
    measured = [v for v in last_ups if v is not None]
    missing = len(last_ups) - len(measured)
    median = statistics.median(measured) if measured else None
    spread = f"{min(measured):.0f}-{max(measured):.0f} ms" if measured else "n/a"
    result.check("Pen lifted -> every model's answer shown (median over the digits' last strokes)",
                 f"<= {LATENCY_TARGET_MS:.0f} ms",
                 "n/a" if median is None else f"{median:.0f} ms (range {spread}; {missing} never answered)",
                 median, median is not None and median <= LATENCY_TARGET_MS and not missing,
                 why="see the per-digit table: the time is spent between the pen-up and the captions.")
    strokes = sum(d["strokes"] for d in digits)
    predictions = drawing["predictions"]
    per_stroke = drawing["requests"] / strokes if strokes else 0
    result.check("Requests per stroke (all kinds) and predictions asked", "info",
                 f"{per_stroke:.1f} requests per stroke; {predictions} predictions for {strokes} strokes",
                 per_stroke, None)
    uploads = sum(d["upload_posts"] for d in digits)
    bytes_per_prediction = drawing["request_bytes"] / predictions if predictions else None
    result.check("Bytes the page sends per prediction", f"<= {BYTES_TARGET // 1024} KB in 1 request",
                 "n/a" if bytes_per_prediction is None else
                 f"{bytes_per_prediction / 1024:.1f} KB; {drawing['requests'] / max(predictions, 1):.1f} requests "
                 f"per prediction ({uploads} file uploads)",
                 bytes_per_prediction, bytes_per_prediction is not None and bytes_per_prediction <= BYTES_TARGET
                 and uploads == 0 and drawing["requests"] == predictions)
    net_cpu = drawing["server_cpu_seconds"] - drawing["idle_cpu_share"] * drawing["seconds"]
    cpu_ms = 1000 * max(net_cpu, 0.0) / predictions if predictions else None
    replay, rest = result.data.get("replay"), result.data.get("replay_rest")
    precise = replay["server_cpu_ms_per_prediction"] if replay else cpu_ms
    result.check("Server CPU per UI prediction", f"<= {CPU_TARGET_MS:.0f} ms",
                 (f"{precise:.2f} ms replaying the page's request x{replay['requests']} (plain REST model2: "
                  f"{rest['server_cpu_ms_per_prediction']:.2f} ms); " if replay else "")
                 + ("n/a" if cpu_ms is None else f"{cpu_ms:.2f} ms while drawing (server CPU net of its idle "
                                                  f"{100 * drawing['idle_cpu_share']:.1f}%, / predictions)"),
                 precise, precise is not None and precise <= CPU_TARGET_MS,
                 why="the server's CPU time over the predictions, process group (server + workers); CPU time "
                     "per request grows when other processes share the cores (caches, hyperthreads).")
    during = sum(d["caption_changes_while_drawing"] > 0 for d in digits)
    result.check("Answers while drawing (digits whose captions changed with the pen down)", f"{len(digits)} of "
                 f"{len(digits)}", f"{during} of {len(digits)}", during, during == len(digits))
    right = sum(all(f"Reads {d['digit']}" in c for c in d["captions"]) for d in digits)
    result.check("Every model reads the drawn digit", "info", f"{right} of {len(digits)} digits", right, None)
    result.table("Per digit (mouse strokes at 1280x960)",
                 ["Digit", "Strokes", "Pen-up -> answers (ms)", "Caption changes while drawing", "Requests",
                  "KB sent", "File uploads", "Answers", "Target", "Status"],
                 [[d["digit"], d["strokes"], ", ".join("-" if v is None else f"{v:.0f}" for v in d["pen_up_to_answers_ms"]),
                   d["caption_changes_while_drawing"], d["requests"], f"{d['request_bytes'] / 1024:.1f}",
                   d["upload_posts"], " / ".join(d["captions"]), "info", "info"] for d in digits])
    if all_ups:
        values = [v for v in all_ups if v is not None]
        if values:
            result.note(f"Every stroke (not only each digit's last): median {statistics.median(values):.0f} ms, "
                        f"range {min(values):.0f}-{max(values):.0f} ms over {len(values)} strokes.")
    load = result.data.get("load")
    if load:
        page, rest = load["page"], load["rest"]
        ok = page["errors"] == 0 and page["p95_ms"] is not None and page["p95_ms"] <= LOAD_P95_TARGET_MS
        result.check(f"{page['clients']} drawing users, one page prediction each every {page['interval_ms']} ms",
                     f"p95 <= {LOAD_P95_TARGET_MS:.0f} ms, 0 errors",
                     f"p95 {page['p95_ms']:.1f} ms, p50 {page['p50_ms']:.1f} ms, {page['throughput_rps']:.0f} req/s, "
                     f"{page['errors']} errors (plain REST: p95 {rest['p95_ms']:.1f} ms)", page["p95_ms"], ok,
                     why=f"errors {page['error_samples'][:2]}; {page['late_starts']} requests started late")
        result.table("Paced users (each on its own keep-alive connection)",
                     ["Requests", "Users", "Offered req/s", "Served req/s", "p50 ms", "p95 ms", "p99 ms", "max ms",
                      "Errors", "Late starts", "Target", "Status"],
                     [[label, level["clients"], level["offered_rps"], f"{level['throughput_rps']:.0f}",
                       f"{level['p50_ms']:.1f}", f"{level['p95_ms']:.1f}", f"{level['p99_ms']:.1f}",
                       f"{level['max_ms']:.0f}", level["errors"], level["late_starts"],
                       f"p95 <= {LOAD_P95_TARGET_MS:.0f} ms" if level is page else "info (comparison)",
                       ("PASS" if ok else "MISS") if level is page else "info"]
                      for label, level in (("page (model all + include_input)", page), ("plain REST (model2)", rest))])
    result.note("Chromium, the app and the load generator share this machine's cores; the latency probe reads the "
                "captions once per animation frame, so figures include up to one frame (~16 ms).")
