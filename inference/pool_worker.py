"""A prediction worker process: `python -m inference.pool_worker <exports_dir> [<data_dir>] [--explain]`.

Started by inference/pool.py, never by hand. It owns one Predictor (its own
onnxruntime sessions) serving what the server serves: with a data_dir, the serving
version kept there (training/model_versions.py), else the exports as they are. Hot
reload works here too, because every prediction checks which files serve. It answers requests framed on stdin, one at a time, on stdout:

    request:  header (image length: 4 bytes, model name length: 2, invert: 1, include_input: 1, explain: 1;
              big-endian),
              then the model name and the image string, UTF-8 (binary, not JSON: no escaping
              pass over a string that may be megabytes long)
    answer:   4-byte big-endian length, 2-byte HTTP status, then the JSON body (inference/answer.py)

The first answer is a READY_STATUS frame, sent once the models are loaded and warm.
End of stdin (the server closed the pipe or died) ends the worker.

The same program serves the explanation workers (inference/explain/lane.py), started with
EXPLAIN_FLAG: they open the models for explaining (import onnx, read each graph) before they
say they are ready, and their requests have `explain` set. A prediction worker is never asked
to explain (if it were, it would open them then) and never imports onnx.
"""
from __future__ import annotations

import os
import signal
import struct
import sys
import traceback
from typing import BinaryIO

REQUEST_HEADER = struct.Struct(">IH???")
ANSWER_HEADER = struct.Struct(">IH")
READY_STATUS = 100  # the first frame: loaded and warm, send requests


EXPLAIN_FLAG = "--explain"  # an explanation worker: opens the models for explaining before it says it is ready


def serve(exports_dir: str, requests: BinaryIO, answers: BinaryIO, data_dir: str | None = None,
          explain: bool = False) -> None:
    # Imported here, after main() has set the thread limits they read at import time.
    import numpy as np

    from inference.answer import encode, predict_answer
    from inference.predictor import Predictor
    from training.model_versions import ModelVersions

    source = ModelVersions(data_dir=data_dir, shipped_dir=exports_dir) if data_dir else exports_dir
    predictor = Predictor(source)
    explainer = None
    if explain:
        from inference.explain.explainer import Explainer

        explainer = Explainer.for_predictor(predictor)
    for name in predictor.models:  # the first onnxruntime run of a session is the slow one
        if predictor.is_available(name):
            predictor.predict(np.zeros((28, 28, 1), np.float32), name)
            if explainer is not None:  # imports onnx and opens the graph (seconds on a busy machine)
                explainer.explain(np.zeros((28, 28, 1), np.float32), name)
    _send(answers, READY_STATUS, b"{}")
    while True:
        header = requests.read(REQUEST_HEADER.size)
        if len(header) < REQUEST_HEADER.size:
            return  # the server closed our stdin: it is shutting down (or gone)
        image_length, model_length, invert, include_input, explain = REQUEST_HEADER.unpack(header)
        payload = requests.read(model_length + image_length)
        if len(payload) < model_length + image_length:
            return
        try:
            model = payload[:model_length].decode(errors="surrogatepass")
            image = payload[model_length:].decode(errors="surrogatepass")
            if explain and explainer is None:
                from inference.explain.explainer import Explainer

                explainer = Explainer.for_predictor(predictor)
            status, payload = predict_answer(predictor, image, model, invert, include_input,
                                             explainer if explain else None)
            body = encode(payload)
        except Exception as exc:  # noqa: BLE001 - one bad request must not end the worker
            traceback.print_exc(file=sys.stderr)
            status = 500
            body = encode({"error": f"Internal error ({type(exc).__name__}); the server logged the details"})
        _send(answers, status, body)


def request_frame(image: str, model: str, invert: bool, include_input: bool = False, explain: bool = False) -> bytes:
    """One request as the worker reads it (see the module docstring)."""
    # surrogatepass: JSON may carry a lone surrogate ("\ud800"); it must reach the decoder (a 400), not fail here.
    model_bytes, image_bytes = model.encode(errors="surrogatepass"), image.encode(errors="surrogatepass")
    return (REQUEST_HEADER.pack(len(image_bytes), len(model_bytes), invert, include_input, explain)
            + model_bytes + image_bytes)


def _send(answers: BinaryIO, status: int, body: bytes) -> None:
    answers.write(ANSWER_HEADER.pack(len(body), status) + body)
    answers.flush()


def main() -> None:
    arguments = sys.argv[1:]
    explain = EXPLAIN_FLAG in arguments[-1:]
    if explain:
        arguments = arguments[:-1]
    if len(arguments) not in (1, 2):
        sys.exit(f"usage: python -m inference.pool_worker <exports_dir> [<data_dir>] [{EXPLAIN_FLAG}] "
                 "(started by inference/pool.py)")
    # Ctrl+C in a terminal reaches the whole process group: the server decides when workers
    # stop (by closing stdin), so a worker does not die mid-request or print a traceback.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # Each worker does one request at a time on one core: extra math threads would only compete.
    for variable in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(variable, "1")
    from inference import privacy

    privacy.apply()  # no telemetry from this process either (it inherits the server's environment too)
    answers = sys.stdout.buffer
    sys.stdout = sys.stderr  # stdout carries frames only: a stray print() must not corrupt them
    serve(arguments[0], sys.stdin.buffer, answers, *arguments[1:], explain=explain)


if __name__ == "__main__":
    main()
