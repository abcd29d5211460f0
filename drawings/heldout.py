"""How well the serving models read the drawings held out from training (one in five by id).

GET /drawings/stats is open to everyone and the Drawings tab asks on every refresh, so the
measure is computed at most once per change (issue 18 item 4): keyed on the store's change
counter and the serving models' files, one computation at a time per database - callers
arriving meanwhile wait for it and share its result - reading only the held-out drawings,
and only those a serving model has not read yet (what each model version read is remembered,
a few bytes per drawing), CHUNK at a time. Before, 40 parallel requests after one new drawing
each loaded every drawing and ran both models on them all at once: RSS 210 MB -> 6.7 GB. One
run over 2,000 held-out drawings alone took the server from 93 to 586 MB (onnxruntime keeps
the buffers of the largest batch it ran: Model 2's first layer alone is 2,000 x 32 x 26 x 26
floats); in chunks of 256, 90 -> 155 MB and flat after.
"""
from __future__ import annotations

import threading
import weakref
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from drawings.store import DrawingStore, is_held_out
from inference.predictor import ModelUnavailableError, Predictor, file_signature

CHUNK = 256  # held-out drawings per model run


@dataclass
class _Memory:
    """What is remembered for one database (weakly keyed on it: it goes when the database goes)."""

    lock: threading.Lock = field(default_factory=threading.Lock)  # one measure at a time
    measure: tuple[tuple, dict[str, Any]] | None = None  # (key, measure)
    # model -> (its file's signature and the database's generation, {drawing id: digit it read})
    readings: dict[str, tuple[tuple, dict[int, int]]] = field(default_factory=dict)


_memories: "weakref.WeakKeyDictionary[Any, _Memory]" = weakref.WeakKeyDictionary()
_memories_lock = threading.Lock()


def held_out_accuracy(store: DrawingStore, predictor: Predictor) -> dict[str, Any]:
    """{"held_out": N, "models": {model: accuracy or None}}, measured through the predictor; measured
    again only when the drawings or a served model changed."""
    with _memories_lock:
        memory = _memories.setdefault(store.database, _Memory())
    with memory.lock:
        key = (store.changes(), tuple(file_signature(predictor.paths(name)["onnx"]) for name in predictor.names))
        if memory.measure is not None and memory.measure[0] == key:
            return memory.measure[1]
        measured = _measure(store, predictor, memory)
        memory.measure = (key, measured)
        return measured


def _measure(store: DrawingStore, predictor: Predictor, memory: _Memory) -> dict[str, Any]:
    held = [(drawing_id, label) for drawing_id, label in store.labels() if is_held_out(drawing_id)]
    ids = [drawing_id for drawing_id, _ in held]
    labels = np.array([label for _, label in held], dtype=np.int64)
    models: dict[str, float | None] = {}
    for name in predictor.names:
        if not held:
            models[name] = None
            continue
        try:
            read = _readings(store, predictor, name, ids, memory)
        except ModelUnavailableError:
            models[name] = None
            continue
        models[name] = round(float(np.mean(np.array([read[i] for i in ids]) == labels)), 6)
    return {"held_out": len(held), "models": models}


def _readings(store: DrawingStore, predictor: Predictor, name: str, ids: list[int], memory: _Memory) -> dict[int, int]:
    """drawing id -> the digit model `name` reads, for `ids`: remembered for drawings this version of the
    model has read before, run now (CHUNK at a time) for the others. A new drawing costs one prediction,
    not one per held-out drawing. (Called under memory.lock.)"""
    version = (file_signature(predictor.paths(name)["onnx"]), store.database.generation)
    remembered = memory.readings.get(name)
    known = remembered[1] if remembered is not None and remembered[0] == version else {}
    missing = [drawing_id for drawing_id in ids if drawing_id not in known]
    if missing:
        data = store.inputs(missing)
        images = (data.images.astype(np.float32) / 255.0)[..., None]
        digits = [predictor.predict_digits(images[start:start + CHUNK], name) for start in range(0, len(images), CHUNK)]
        known = {**known, **dict(zip(data.ids.tolist(), np.concatenate(digits).tolist() if digits else []))}
    known = {drawing_id: known[drawing_id] for drawing_id in ids if drawing_id in known}  # deleted ones leave
    memory.readings[name] = (version, known)
    return known
