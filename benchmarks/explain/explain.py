"""(9) "Why this digit?": are the maps faithful, is Model 1's exact, what do they cost, how fast do they show.

From the shipped ONNX models, in this process (inference/explain/, as the server runs it):
- Deletion test (Petsiuk et al. 2018) per model and method, on MNIST test digits and on drawn
  digits (benchmarks/reading/drawn_sets.py, the quick-size sets): the area under the top class's
  probability as pixels are erased in the map's order, against random, reverse and ink-only
  orders (benchmarks/explain/faithfulness.py). The default method must be clearly below ink-only: the
  95% interval of the paired difference (map - ink) lies below 0.
- Sanity check (Adebayo et al. 2018): Spearman correlation over the ink between the maps of the
  trained model and of a copy with random weights; the default method must stay below SANITY_MAX.
- Model 1: every map plus its bias equals the served graph's logit to 1e-4.
- Integrated gradients' completeness error (the Riemann sum vs the score change), and the time
  each method takes per explanation.
Then against a live `python app.py`: the server CPU per explained prediction (the page's own
explain request, replayed), and in Chromium the ten digits drawn with the Explain view closed and
open: pen-up -> answers shown, pen-up -> maps shown.
"""
from __future__ import annotations

import base64
import json
import statistics
import sys
import time

import numpy as np

from benchmarks.context import Context, as_model_input
from benchmarks.explain.faithfulness import ORDERS, deletion, randomised_explainer, rank_correlations
from benchmarks.outcome import SectionResult
from inference.explain.explainer import (EXACT, GRAD_CAM, GRADIENT_X_INPUT, INTEGRATED_GRADIENTS, OCCLUSION, RISE,
                                         Explainer)
from training.registry import MODELS

NAME = "explain"
TITLE = "Why this digit?: faithful maps (deletion, sanity check), Model 1's exact sums, cost and latency"

MAPS_TARGET_MS = 150.0  # pen-up -> maps shown, median, Explain view open
ANSWERS_TARGET_MS = 50.0  # pen-up -> answers shown, median, view closed and open
EXACT_TOLERANCE = 1e-4
SANITY_MAX = 0.5  # median rank correlation (trained vs randomised weights) a default method must stay below
WAIT = 15.0  # s: the longest we wait for answers or maps after a pen-up
SEED = 19


def methods_for(explainer: Explainer, name: str) -> list[str]:
    """The model's default method first, then the alternatives its graph allows."""
    info = explainer.graphs.get(name).info
    candidates = ([EXACT] if info.linear_head is not None else []) + (
        [INTEGRATED_GRADIENTS, GRADIENT_X_INPUT, GRAD_CAM] if info.differentiable else []) + [OCCLUSION, RISE]
    default = explainer.method_for(name)
    return [default] + [method for method in candidates if method != default]


def run(ctx: Context) -> SectionResult:
    result = SectionResult(NAME, TITLE)
    names = [name for name in MODELS if (ctx.exports / f"{name}.onnx").is_file()]
    explainer = Explainer({name: ctx.exports / f"{name}.onnx" for name in names},
                          **Explainer.registry_settings({name: MODELS[name] for name in names}))
    samples = _samples(ctx)
    _faithfulness(ctx, result, explainer, names, samples)
    _exactness(result, explainer, names, samples)
    _cost(ctx, result, explainer, names, samples)
    _live(ctx, result)
    result.plots.append("explain_deletion.png")
    return result


def _samples(ctx: Context) -> dict[str, np.ndarray]:
    """MNIST test digits and drawn digits, seeded samples of the configured size: [N, 28, 28, 1]."""
    from benchmarks.reading.drawn_sets import DIGIT_SETS, QUICK_SIZE, load_drawn_sets

    rng = np.random.default_rng(SEED)
    count = ctx.config.explain_samples
    mnist = as_model_input(ctx.mnist.x_test[rng.choice(len(ctx.mnist.x_test), count, replace=False)])
    sets = load_drawn_sets(ctx.mnist, QUICK_SIZE)  # the same renders the drawn section's quick run caches
    drawn = np.concatenate([sets[name].x for name in DIGIT_SETS if name in sets])
    drawn = as_model_input(drawn[rng.choice(len(drawn), count, replace=False)])
    return {"MNIST test": mnist, "drawn digits": drawn}


# -- faithfulness ---------------------------------------------------------------------------

def _faithfulness(ctx: Context, result: SectionResult, explainer: Explainer, names: list[str],
                  samples: dict[str, np.ndarray]) -> None:
    rows, sanity_rows, data = [], [], {}
    for name in names:
        title = MODELS[name].title
        default = explainer.method_for(name)
        randomised = randomised_explainer(explainer, name, seed=SEED)
        data[name] = {"default": default, "deletion": {}, "sanity": {}}
        for method in methods_for(explainer, name)[: None if ctx.config.explain_every_method else 1]:
            data[name]["deletion"][method] = {}
            for set_name, images in samples.items():
                began = time.perf_counter()
                deleted = deletion(explainer, name, method, images, seed=SEED)
                difference = deleted.areas["map"] - deleted.areas["ink"]
                upper = float(difference.mean() + 1.96 * difference.std(ddof=1) / np.sqrt(len(difference)))
                below = {order: deleted.mean("map") < deleted.mean(order) for order in ("random", "reverse", "ink")}
                clearly = upper < 0 and all(below.values())
                data[name]["deletion"][method][set_name] = {
                    **{order: round(deleted.mean(order), 4) for order in ORDERS},
                    "map_minus_ink_upper95": round(upper, 4), "images": len(images),
                    "map_below_ink_share": round(float(np.mean(difference < 0)), 3),
                    "curves": {order: np.round(curve, 4).tolist() for order, curve in deleted.curves.items()},
                    "seconds": round(time.perf_counter() - began, 1)}
                is_default = method == default
                space = "what its linear layer reads, through it" if method == EXACT else "model input"
                rows.append([title, method + (" (default)" if is_default else ""), set_name, len(images), space,
                             *[f"{deleted.mean(order):.3f}" for order in ORDERS],
                             f"{np.mean(difference < 0):.0%}", f"{upper:+.3f}",
                             "below ink, random, reverse" if is_default else "info",
                             ("PASS" if clearly else "MISS") if is_default else "info"])
                if is_default:
                    result.check(f"{title}: deletion area of its maps ({method}) on {set_name}",
                                 "clearly below ink-only, random and reverse",
                                 f"{deleted.mean('map'):.3f} vs ink {deleted.mean('ink'):.3f}, random "
                                 f"{deleted.mean('random'):.3f}, reverse {deleted.mean('reverse'):.3f}",
                                 deleted.mean("map"), clearly,
                                 why=f"the 95% interval of map - ink reaches {upper:+.3f}")
                ctx.log(f"  {name} {method} {set_name}: " + ", ".join(f"{order} {deleted.mean(order):.3f}"
                                                                       for order in ORDERS))
            sanity_images = samples["MNIST test"][: ctx.config.explain_sanity_samples]
            correlations = rank_correlations(explainer, randomised, name, method, sanity_images)
            median = float(np.median(correlations))
            data[name]["sanity"][method] = {"median": round(median, 3), "mean": round(float(correlations.mean()), 3),
                                            "images": len(correlations)}
            is_default = method == default
            sanity_rows.append([title, method + (" (default)" if is_default else ""), len(correlations),
                                f"{median:+.2f}", f"{correlations.mean():+.2f}",
                                f"< {SANITY_MAX}" if is_default else "info",
                                ("PASS" if abs(median) < SANITY_MAX else "MISS") if is_default else "info"])
            if is_default:
                result.check(f"{title}: sanity check, its maps ({method}) vs a randomised-weights copy's",
                             f"rank correlation < {SANITY_MAX}", f"median {median:+.2f} over {len(correlations)} "
                             f"images (the ink-only map: +1.00 by construction)", median, abs(median) < SANITY_MAX)
        sanity_rows.append([title, "ink only (reference)", "-", "+1.00", "+1.00", "info", "info"])
    result.data["faithfulness"] = data
    result.table("Deletion test: area under the top class's probability as pixels are erased (lower = the map "
                 "found the evidence)",
                 ["Model", "Method", "Set", "Images", "Erased in", *[f"{order} order" for order in ORDERS],
                  "Map below ink (images)", "Map - ink, 95% upper", "Target", "Status"], rows)
    result.table("Sanity check: rank correlation over the ink between the trained and the randomised model's maps "
                 "(near 0 = the maps depend on what the model learned)",
                 ["Model", "Method", "Images", "Median", "Mean", "Target", "Status"], sanity_rows)


# -- Model 1's exactness, integrated gradients' completeness ----------------------------------

def _exactness(result: SectionResult, explainer: Explainer, names: list[str], samples: dict[str, np.ndarray]) -> None:
    images = np.concatenate(list(samples.values()))
    for name in names:
        served = explainer.graphs.get(name)
        info = served.info
        if info.linear_head is not None:
            worst = 0.0
            for image in images:
                explanation = explainer.explain(image, name, layers=False)
                values = served.run(image[None])
                logits = np.asarray(values[info.logits], np.float64)[0] * info.inverse_temperature
                calibrated = np.asarray(values[info.served_logits], np.float64)[0]
                top, runner_up, contrast = explanation.maps
                worst = max(worst, *(abs(item.values.sum() + item.bias - logits[item.digit]) for item in (top, runner_up)),
                            abs(contrast.values.sum() + contrast.bias
                                - (calibrated[contrast.digit] - calibrated[contrast.against])))
            result.data.setdefault("exact", {})[name] = {"images": len(images), "max_abs_error": worst}
            result.check(f"{MODELS[name].title}: each map + bias = the served logit", f"within {EXACT_TOLERANCE:.0e}",
                         f"largest difference {worst:.1e} over {len(images)} images x 3 maps", worst,
                         worst <= EXACT_TOLERANCE)
        elif explainer.method_for(name) == INTEGRATED_GRADIENTS:
            relative = []
            for image in images:
                explanation = explainer.explain(image, name, layers=False)
                changes = [item.score - item.baseline for item in explanation.maps]
                largest = max(abs(change) for change in changes) or 1.0
                relative.append(max(abs(item.values.sum() - change) for item, change in zip(explanation.maps, changes))
                                / largest)
            result.data.setdefault("completeness", {})[name] = {
                "images": len(images), "median": round(float(np.median(relative)), 4),
                "max": round(float(np.max(relative)), 4)}
            result.check(f"{MODELS[name].title}: integrated gradients' sum vs the score change (completeness)", "info",
                         f"off by {np.median(relative):.1%} of the largest change (median; worst {np.max(relative):.1%}) "
                         f"over {len(images)} images", float(np.median(relative)), None)


def _cost(ctx: Context, result: SectionResult, explainer: Explainer, names: list[str],
          samples: dict[str, np.ndarray]) -> None:
    """Time per explanation in this process (one thread), each method, the drawn digits."""
    images = samples["drawn digits"][:20]
    rows, data = [], {}
    for name in names:
        for method in methods_for(explainer, name)[: None if ctx.config.explain_every_method else 1]:
            explainer.to_dict(explainer.explain(images[0], name, method))  # warm
            times, cpu = [], []
            for image in images:
                began, began_cpu = time.perf_counter(), time.process_time()
                explainer.to_dict(explainer.explain(image, name, method))
                times.append(time.perf_counter() - began)
                cpu.append(time.process_time() - began_cpu)
            data.setdefault(name, {})[method] = {"wall_ms": round(1000 * statistics.median(times), 2),
                                                 "cpu_ms": round(1000 * statistics.median(cpu), 2)}
            rows.append([MODELS[name].title, method + (" (default)" if method == explainer.method_for(name) else ""),
                         len(times), f"{1000 * statistics.median(times):.1f}", f"{1000 * statistics.median(cpu):.1f}",
                         "info", "info"])
    result.data["explain_ms"] = data
    result.table("Time per explanation with its PNGs and JSON (this process, one BLAS thread as in the server's "
                 "explanation worker; median)", ["Model", "Method", "Drawings", "wall ms", "CPU ms", "Target", "Status"],
                 rows)


# -- the live server and the page --------------------------------------------------------------

PROBE = """() => {
  if (window.__explain) return;
  const probe = window.__explain = {ups: []};
  const version = () => Number(document.querySelector('#sketchpad canvas').dataset.version);
  const answered = (v) => [...document.querySelectorAll('#answers .ds-caption')].every(c => Number(c.dataset.version) >= v);
  const explained = (v) => [...document.querySelectorAll('#explain-view .ds-explain-model')]
      .every(s => Number(s.dataset.version) >= v);
  window.addEventListener('pointerup', () => {
    const up = {t: performance.now(), version: version(), open: document.querySelector('#explain').open,
                answers: null, maps: null};
    probe.ups.push(up);
    const check = () => {
      const now = performance.now();
      if (up.answers === null && answered(up.version)) up.answers = now - up.t;
      if (up.open && up.maps === null && explained(up.version)) up.maps = now - up.t;
      if ((up.answers === null || (up.open && up.maps === null)) && now - up.t < 15000) requestAnimationFrame(check);
    };
    requestAnimationFrame(check);
  }, true);
}"""


def _live(ctx: Context, result: SectionResult) -> None:
    from benchmarks.browser.pen import CHROMIUM, CHROMIUM_ARGS, DIGIT_STROKES, canvas_png
    from benchmarks.speed.servers import ServerProcess, free_port, server_env, workers_ready

    port = free_port()
    env = server_env(GRADIO_SERVER_PORT=str(port), EXPORTS_DIR=str(ctx.exports_copy("explain")))
    server = ServerProcess("app.py", [sys.executable, "app.py"], port, env=env, log_path=ctx.work / "app-explain.log")
    image = "data:image/png;base64," + base64.b64encode(canvas_png(DIGIT_STROKES[7])).decode()
    with server:
        server.wait_until(workers_ready(port), timeout=ctx.config.server_start_timeout)
        server.wait_until(_explainers_ready(port), timeout=ctx.config.server_start_timeout)
        pid = server.process.pid
        replay = {kind: _replay(ctx, port, pid, json.dumps({"image": image, "model": "all", **extra}).encode())
                  for kind, extra in (("explained", {"explain": True}), ("plain", {}))}
        result.data["replay"] = replay
        explained, plain = replay["explained"], replay["plain"]
        result.check("Server CPU per explained prediction (every model, the page's request)", "info",
                     f"{explained['server_cpu_ms']:.1f} ms (the same request without explain: "
                     f"{plain['server_cpu_ms']:.1f} ms); answer {explained['answer_bytes'] / 1024:.0f} KB, "
                     f"{explained['wall_ms']:.1f} ms wall", explained["server_cpu_ms"], None)
        if not CHROMIUM.is_file():
            result.note(f"Chromium is not installed at {CHROMIUM}: the page's latencies were not measured.")
            return
        from playwright.sync_api import sync_playwright

        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
            try:
                page_figures = _draw(ctx, browser, port)
            finally:
                browser.close()
    result.data["page"] = page_figures
    rows = []
    for label, key, target in (("closed", "answers", ANSWERS_TARGET_MS), ("open", "answers", ANSWERS_TARGET_MS),
                               ("open", "maps", MAPS_TARGET_MS)):
        values = [value for value in page_figures[label][key] if value is not None]
        missing = len(page_figures[label][key]) - len(values)
        median = statistics.median(values) if values else None
        shown = "answers" if key == "answers" else "maps"
        result.check(f"Explain view {label}: pen lifted -> {shown} shown (median over the digits' last strokes)",
                     f"<= {target:.0f} ms", "n/a" if median is None else
                     f"{median:.0f} ms (range {min(values):.0f}-{max(values):.0f} ms; {missing} never shown)",
                     median, median is not None and median <= target and not missing,
                     why="see the per-digit table; the machine's load is in the section's header")
        rows.extend([label, shown, digit, "-" if value is None else f"{value:.0f}", f"<= {target:.0f} ms", "info"]
                    for digit, value in zip(page_figures["digits"], page_figures[label][key]))
    result.table("Per digit: pen lifted -> shown (ms), mouse strokes at 1280x960",
                 ["Explain view", "Shown", "Digit", "ms", "Target", "Status"], rows)
    result.note("Chromium, the app (server, 3 prediction workers, 1 explanation worker) and the benchmark share "
                "this machine's cores; the probe reads the page once per animation frame (~16 ms).")


def _explainers_ready(port: int):
    from benchmarks.speed.servers import request

    def ready() -> bool:
        try:
            status, body = request(port, "GET", "/env")
        except OSError:
            return False
        return status == 200 and body.get("explanation_workers", {}).get("ready", 0) >= 1

    return ready


def _replay(ctx: Context, port: int, pid: int, body: bytes) -> dict:
    import http.client

    from benchmarks.browser.draw_tab import group_cpu_seconds

    count = ctx.config.explain_cpu_requests
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    headers = {"Content-Type": "application/json"}
    try:
        for _ in range(3):
            connection.request("POST", "/predict", body=body, headers=headers)
            connection.getresponse().read()
        before, began = group_cpu_seconds(pid), time.perf_counter()
        size = 0
        for _ in range(count):
            connection.request("POST", "/predict", body=body, headers=headers)
            response = connection.getresponse()
            size = len(response.read())
            if response.status != 200:
                raise RuntimeError(f"/predict answered {response.status} during the replay")
        seconds, cpu = time.perf_counter() - began, group_cpu_seconds(pid) - before
    finally:
        connection.close()
    return {"requests": count, "server_cpu_ms": round(1000 * cpu / count, 2), "wall_ms": round(1000 * seconds / count, 2),
            "answer_bytes": size}


def _draw(ctx: Context, browser, port: int) -> dict:
    from benchmarks.browser.pen import DIGIT_STROKES, draw_mouse

    page = browser.new_page(viewport={"width": 1280, "height": 960})
    page.set_default_timeout(90_000)
    page.goto(f"http://127.0.0.1:{port}/", wait_until="load")
    page.wait_for_selector("#sketchpad canvas")
    page.wait_for_selector("#explain summary")
    page.evaluate(PROBE)
    digits = list(DIGIT_STROKES)[: ctx.config.explain_browser_digits]
    figures = {"digits": digits}
    for label in ("closed", "open"):
        if label == "open":
            page.click("#explain summary")
        _draw_one(page, DIGIT_STROKES[digits[0]], draw_mouse)  # warm-up
        figures[label] = {"answers": [], "maps": []}
        for digit in digits:
            _draw_one(page, DIGIT_STROKES[digit], draw_mouse)
            last = page.evaluate("() => window.__explain.ups[window.__explain.ups.length - 1]")
            figures[label]["answers"].append(last["answers"])
            if label == "open":
                figures[label]["maps"].append(last["maps"])
            ctx.log(f"  Explain view {label}, drew {digit}: answers {last['answers'] and round(last['answers'])} ms"
                    + (f", maps {last['maps'] and round(last['maps'])} ms" if label == "open" else ""))
    page.close()
    return figures


def _draw_one(page, strokes, draw_mouse) -> None:
    page.click("#clear")
    time.sleep(0.3)
    for stroke in strokes:
        draw_mouse(page, [stroke])
        deadline = time.monotonic() + WAIT
        while time.monotonic() < deadline:
            done = page.evaluate("""() => { const u = window.__explain.ups[window.__explain.ups.length - 1];
                                            return !!u && u.answers !== null && (!u.open || u.maps !== null); }""")
            if done:
                break
            time.sleep(0.02)
