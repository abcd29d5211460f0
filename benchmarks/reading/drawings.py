"""Issue 12 figures: the drawings database under concurrent posts while a training reads it, and
what personalisation does for drawings of a style MNIST lacks.

    python -m benchmarks.reading.drawings load         # 16 clients POST /drawings for 10 s while Model 1 trains
    python -m benchmarks.reading.drawings personal     # before/after per model (full run and fine-tune), times
    python -m benchmarks.reading.drawings personal --writer italic   # the same for one far-slanted hand

`load` starts `python app.py` (a private copy of the exports, a fresh DATA_DIR), seeds 100
drawings, starts a Model 1 training with include_drawings (which reads the database), and
counts the posts answered 201 and every other answer. `personal` saves 10 drawings per digit by
one writer (`--writer segments`: seven-segment digits, benchmarks/reading/segment_digits.py, a style
MNIST has none of; `--writer italic`: one far-slanted, wide hand writing cursive digits,
benchmarks/reading/one_writer.py) through the same save_correction as the app, then trains each model
with the drawings and measures 300 other drawings of that writer it never saw, plus MNIST test, before
and after.
Prints one JSON object per measurement, with the load average (the machine is shared).
"""
from __future__ import annotations

import argparse
import base64
import http.client
import importlib
import json
import os
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

from benchmarks.speed.servers import HOST, ROOT, app_server, free_port, private_data, request, server_env

SEEDED = 100  # drawings in the database before the load starts
CLIENTS, SECONDS = 16, 10.0


def _load_average() -> list[float]:
    return [round(value, 2) for value in os.getloadavg()]


def _png_bodies(count: int, offset: int = 0) -> list[bytes]:
    from benchmarks.reading.segment_digits import segment_digit

    return [json.dumps({"image": "data:image/png;base64," + base64.b64encode(segment_digit(i % 10, offset + i)).decode(),
                        "label": i % 10}).encode() for i in range(count)]


def load(clients: int = CLIENTS, seconds: float = SECONDS) -> dict:
    work = Path(tempfile.mkdtemp(prefix="drawings-load-"))
    try:
        exports = work / "exports"
        exports.mkdir()
        for path in (ROOT / "exports").glob("*"):
            if path.is_file():
                shutil.copy2(path, exports / path.name)
        port = free_port()
        server = app_server(port, exports, work / "app.log")
        server.env = server_env(GRADIO_SERVER_PORT=str(port), EXPORTS_DIR=str(exports), MNIST_DOWNLOAD="0",
                                **private_data(work / "data"))
        bodies = _png_bodies(400)
        with server:
            server.wait_until(lambda: request(port, "GET", "/drawings/stats", timeout=5.0)[0] == 200, timeout=180)
            for body in bodies[:SEEDED]:
                assert request(port, "POST", "/drawings", body, timeout=30)[0] == 201
            status, _ = request(port, "POST", "/train/model1", json.dumps({"include_drawings": True}).encode())
            assert status == 202, status
            counts = [[0, 0, []] for _ in range(clients)]  # ok, errors, samples
            barrier = threading.Barrier(clients + 1)

            def client(number: int) -> None:
                connection = http.client.HTTPConnection(HOST, port, timeout=30)
                barrier.wait()
                deadline = time.perf_counter() + seconds
                index = number
                while time.perf_counter() < deadline:
                    try:
                        connection.request("POST", "/drawings", body=bodies[index % len(bodies)],
                                           headers={"Content-Type": "application/json"})
                        response = connection.getresponse()
                        answer = response.read()
                        if response.status == 201 and b'"id"' in answer:
                            counts[number][0] += 1
                        else:
                            counts[number][1] += 1
                            counts[number][2].append(f"{response.status}: {answer[:120]!r}")
                    except (OSError, http.client.HTTPException) as error:
                        counts[number][1] += 1
                        counts[number][2].append(repr(error))
                        connection.close()
                    index += clients
                connection.close()

            threads = [threading.Thread(target=client, args=(n,)) for n in range(clients)]
            for thread in threads:
                thread.start()
            barrier.wait()
            began = time.perf_counter()
            for thread in threads:
                thread.join()
            elapsed = time.perf_counter() - began
            training = request(port, "GET", "/train_status/model1")[1]
            deadline = time.monotonic() + 180
            while training["running"] and time.monotonic() < deadline:
                time.sleep(0.5)
                training = request(port, "GET", "/train_status/model1")[1]
            stats = request(port, "GET", "/drawings/stats")[1]
        ok = sum(c[0] for c in counts)
        errors = sum(c[1] for c in counts)
        personal = ((training.get("result") or {}).get("metadata") or {}).get("personal") or {}
        return {"measure": "POST /drawings under load while Model 1 trains with include_drawings",
                "clients": clients, "seconds": round(elapsed, 2), "posts_ok": ok, "errors": errors,
                "posts_per_second": round(ok / elapsed, 1), "error_samples": [s for c in counts for s in c[2]][:5],
                "rows_in_database": stats["total"], "expected_rows": SEEDED + ok,
                "training": {"state": training["state"], "status": training["status"],
                             "drawings_trained_on": personal.get("drawings_trained_on")},
                "load_average_after": _load_average()}
    finally:
        shutil.rmtree(work, ignore_errors=True)


# The writers `personal` can measure: name -> (module, its (digit, seed) -> PNG function), imported when used.
WRITERS = {"segments": ("benchmarks.reading.segment_digits", "segment_digit"),
           "italic": ("benchmarks.reading.one_writer", "writer_digit")}


def _writer(name: str):
    """The writer's drawing function: (digit, seed) -> PNG bytes."""
    module, function = WRITERS[name]
    return getattr(importlib.import_module(module), function)


def personal(models: list[str], modes: list[str], per_digit: int = 10, writer: str = "segments") -> list[dict]:
    """Before/after on the writer's unseen drawings and MNIST test, per model and mode, each from the
    shipped model in a fresh exports copy."""
    from inference.preprocess import preprocess

    draw = _writer(writer)
    fresh = np.stack([preprocess(draw(d, 1000 + s)) for s in range(30) for d in range(10)])
    labels = np.array([d for s in range(30) for d in range(10)])
    results = []
    for model in models:
        for mode in modes:
            work = Path(tempfile.mkdtemp(prefix="personal-"))
            try:
                results.append({"writer": writer, **_personal_run(model, mode, work, per_digit, fresh, labels, draw)})
            finally:
                shutil.rmtree(work, ignore_errors=True)
            print(json.dumps(results[-1]), flush=True)
    return results


def _personal_run(model: str, mode: str, work: Path, per_digit: int, fresh: np.ndarray, labels: np.ndarray,
                  draw) -> dict:
    from drawings.corrections import save_correction
    from drawings.store import DrawingStore
    from inference.predictor import Predictor
    from training.events import Result
    from training.model_versions import ModelVersions
    from training.registry import MODELS

    exports = work / "exports"
    exports.mkdir()
    for path in (ROOT / "exports").glob("*"):
        if path.is_file():
            shutil.copy2(path, exports / path.name)
    os.environ["EXPORTS_DIR"] = str(exports)
    os.environ.update(private_data(work / "data"))  # the runs below become versions there
    os.environ["DRAWINGS_DB"] = str(work / "drawings.sqlite3")
    predictor = Predictor(ModelVersions())  # what serves: the shipped model, then the run's version
    store = DrawingStore.from_environment()
    pairs = [(d, s) for s in range(per_digit) for d in range(10)]
    for index in np.random.default_rng(0).permutation(len(pairs)):  # in no particular order, like a person
        digit, seed = pairs[index]
        save_correction(store, predictor, draw(digit, seed), digit)

    def unseen_accuracy() -> float:
        predictor.reload(model)
        return round(float(np.mean(predictor.predict_digits(fresh, model) == labels)), 4)

    before = unseen_accuracy()
    options = {"include_drawings": True, "fine_tune": mode == "fine_tune"}
    started = time.perf_counter()
    result = None
    for event in MODELS[model].trainer()(options):
        if isinstance(event, Result):
            result = event
    wall = time.perf_counter() - started
    tuned = result.metadata["personal"]
    return {"model": model, "mode": mode, "drawings_saved": len(pairs),
            "trained_on": tuned["drawings_trained_on"], "held_out": tuned["drawings_held_out"],
            "unseen_300_before": before, "unseen_300_after": unseen_accuracy(),
            "held_out_before": tuned["before"]["drawings"], "held_out_after": tuned["after"]["drawings"],
            "mnist_test_before": tuned["before"]["mnist_test"], "mnist_test_after": tuned["after"]["mnist_test"],
            "run_wall_seconds": round(wall, 1), "fit_seconds": round(result.train_seconds, 1),
            "load_average_after": _load_average()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("what", choices=("load", "personal"))
    parser.add_argument("--models", default="model1,model2")
    parser.add_argument("--modes", default="full,fine_tune")
    parser.add_argument("--writer", choices=sorted(WRITERS), default="segments")
    args = parser.parse_args(argv)
    if args.what == "load":
        print(json.dumps(load()), flush=True)
    else:
        personal(args.models.split(","), args.modes.split(","), writer=args.writer)
    return 0


if __name__ == "__main__":
    sys.exit(main())
