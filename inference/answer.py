"""One /predict answer, computed the same way wherever it runs.

The REST API answers a request on its event loop, in a worker thread or in a
prediction worker process (inference/pool.py); all three call `predict_answer`
and send `encode(payload)`, so the JSON a client sees never depends on where the
work was done. Imports nothing of the web stack: worker processes stay lean.
"""
from __future__ import annotations

import base64
import io
import json
import time
from typing import TYPE_CHECKING, Any

import numpy as np
from PIL import Image

from inference.image_io import EmptyImageError, ImageInputError
from inference.predictor import ModelUnavailableError, Predictor
from inference.preprocess import preprocess
from training.onnx_contract import to_pixels

if TYPE_CHECKING:  # imported by its user (a worker imports onnx only once asked to explain)
    from inference.explain.explainer import Explainer

DEFAULT_MODEL = "model2"  # the CNN, as in the original app: the REST default and the page's first choice
ALL_MODELS = "all"  # "model": "all" runs every model on the same preprocessed image


def predict_answer(predictor: Predictor, image: Any, model: str, invert: bool = False,
                   include_input: bool = False, explainer: "Explainer | None" = None) -> tuple[int, dict[str, Any]]:
    """(HTTP status, JSON payload) for one prediction request: decode, preprocess, infer.

    Success is 200 with {"prediction", "probabilities", "verdict", "model", "latency_ms"}
    ("candidates" too when the verdict is "unsure"; inference/verdict.py) (or, for
    "all", {"predictions": {...}, "unavailable": {...}}); a problem with the input or a
    model is a 4xx/503 with {"error": "<what is wrong and how to fix it>"}.
    With `include_input`, a success also carries "model_input": the 28x28 image the
    models read, as a PNG data URL (see model_input_png). With an `explainer`, each model's
    answer also carries its "explanation" (inference/explain/; computed on the same
    preprocessed image), or {"error": ...} when that model's export cannot be explained.
    """
    start = time.perf_counter()
    if model != ALL_MODELS and model not in predictor.models:
        shown = model if len(model) <= 40 else model[:40] + "..."  # the name comes from the client
        return 422, {"error": f"Unknown model {shown!r}; choose one of: {', '.join([*predictor.models, ALL_MODELS])}"}
    try:
        x = preprocess(image, invert=invert)
    except EmptyImageError as exc:
        return 422, {"error": str(exc)}
    except ImageInputError as exc:
        return 400, {"error": str(exc)}
    if model == ALL_MODELS:
        status, payload = _answer_all(predictor, x, start)
    else:
        try:
            result = predictor.predict(x, model)
        except ModelUnavailableError as exc:
            return 503, {"error": f"{model} cannot predict: {exc.reason}", "model": model, "reason": exc.reason}
        status, payload = 200, {"prediction": result.digit, "probabilities": result.probabilities,
                                **_verdict(result), "model": model, "latency_ms": _elapsed_ms(start)}
    if include_input and status == 200:
        payload["model_input"] = model_input_png(x)
    if explainer is not None and status == 200:
        for name, answer in (payload["predictions"].items() if model == ALL_MODELS else [(model, payload)]):
            answer["explanation"] = explanation(explainer, x, name)
    return status, payload


def explanation(explainer: "Explainer", x: np.ndarray, model: str) -> dict[str, Any]:
    """One model's "explanation" for the preprocessed image x, or {"error": why not}."""
    try:
        return explainer.to_dict(explainer.explain(x, model))
    except ModelUnavailableError as exc:
        return {"error": f"{model} cannot be explained: {exc.reason}"}


def model_input_png(x: np.ndarray) -> str:
    """The [28, 28, 1] model input as a data URL of a 28x28 grayscale PNG (white ink on black).

    ~0.4 KB and ~60 us: small enough to send with every live prediction, so the page can
    show what the models saw without a second request; the page enlarges it pixelated.
    """
    pixels = to_pixels(x)
    buffer = io.BytesIO()
    Image.fromarray(pixels, mode="L").save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def _answer_all(predictor: Predictor, x, start: float) -> tuple[int, dict[str, Any]]:
    results = predictor.predict_all(x)
    unavailable = {name: predictor.model_status(name)["reason"] or "unavailable"
                   for name in predictor.models if name not in results}
    if not results:
        return 503, {"error": "No model can predict: " + "; ".join(f"{k}: {v}" for k, v in unavailable.items()),
                     "unavailable": unavailable}
    return 200, {
        "model": ALL_MODELS,
        "predictions": {name: {"prediction": r.digit, "probabilities": r.probabilities, **_verdict(r),
                               "model": name, "latency_ms": round(r.latency_ms, 3)} for name, r in results.items()},
        "unavailable": unavailable,
        "latency_ms": _elapsed_ms(start),
    }


def _verdict(result) -> dict[str, Any]:
    """"verdict" ("digit", "unsure", "not_a_digit") and, when unsure, the two "candidates"."""
    if result.verdict == "unsure":
        return {"verdict": result.verdict, "candidates": result.candidates}
    return {"verdict": result.verdict}


def _elapsed_ms(start: float) -> float:
    return round((time.perf_counter() - start) * 1000, 3)


def encode(payload: dict[str, Any]) -> bytes:
    """The JSON bytes of a payload, exactly as Starlette's JSONResponse renders them."""
    return json.dumps(payload, ensure_ascii=False, allow_nan=False, indent=None, separators=(",", ":")).encode()
