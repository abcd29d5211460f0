"""How well the serving models read the drawings held out from training (one in five by id).

GET /drawings/stats is open to everyone and the Drawings tab asks on every refresh, so the
measure is computed at most once per change (issue 18 item 4): keyed on the store's change
counter and the serving models' files, one computation at a time per database - callers
arriving meanwhile wait for it and share its result - reading only the held-out drawings,
a batch at a time. Before, 40 parallel requests after one new drawing each loaded every
drawing and ran both models on them: RSS 210 MB -> 6.7 GB.
"""
from __future__ import annotations

import threading
from typing import Any

import numpy as np

from drawings.store import DrawingStore
from inference.predictor import ModelUnavailableError, Predictor, file_signature

_cache: dict[int, tuple[tuple, dict[str, Any]]] = {}  # id(database) -> (key, measure)
_locks: dict[int, threading.Lock] = {}
_locks_guard = threading.Lock()


def held_out_accuracy(store: DrawingStore, predictor: Predictor) -> dict[str, Any]:
    """{"held_out": N, "models": {model: accuracy or None}}, measured through the predictor; measured
    again only when the drawings or a served model changed."""
    database = id(store.database)
    with _locks_guard:
        lock = _locks.setdefault(database, threading.Lock())
    with lock:
        key = (store.changes(), tuple(file_signature(predictor.paths(name)["onnx"]) for name in predictor.names))
        cached = _cache.get(database)
        if cached is not None and cached[0] == key:
            return cached[1]
        measured = _measure(store, predictor)
        _cache[database] = (key, measured)
        return measured


def _measure(store: DrawingStore, predictor: Predictor) -> dict[str, Any]:
    held = store.held_out_drawings()
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
