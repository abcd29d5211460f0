"""How well the serving models read the drawings held out from training (one in five by id)."""
from __future__ import annotations

import threading
from typing import Any

import numpy as np

from drawings.store import DrawingStore
from inference.predictor import ModelUnavailableError, Predictor, file_signature


_cache: dict[str, tuple[tuple, dict[str, Any]]] = {}
_cache_lock = threading.Lock()


def held_out_accuracy(store: DrawingStore, predictor: Predictor) -> dict[str, Any]:
    """{"held_out": N, "models": {model: accuracy or None}}, measured through the predictor; measured
    again only when the drawings or a served model changed (the Drawings tab asks on every refresh)."""
    key = (store.state(), tuple(file_signature(predictor.paths(name)["onnx"]) for name in predictor.names))
    with _cache_lock:
        cached = _cache.get(str(store.path))
    if cached is not None and cached[0] == key:
        return cached[1]
    measured = _measure(store, predictor)
    with _cache_lock:
        _cache[str(store.path)] = (key, measured)
    return measured


def _measure(store: DrawingStore, predictor: Predictor) -> dict[str, Any]:
    _, held = store.training_drawings().split()
    images = (held.images.astype(np.float32) / 255.0)[..., None]
    models: dict[str, float | None] = {}
    for name in predictor.names:
        if not len(held):
            models[name] = None
            continue
        try:
            digits = predictor.predict_digits(images, name)
        except ModelUnavailableError:
            models[name] = None
            continue
        models[name] = round(float(np.mean(digits == held.labels)), 6)
    return {"held_out": len(held), "models": models}
