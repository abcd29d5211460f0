"""How well the serving models read the drawings held out from training (one in five by id)."""
from __future__ import annotations

from typing import Any

import numpy as np

from drawings.store import DrawingStore
from inference.predictor import ModelUnavailableError, Predictor


def held_out_accuracy(store: DrawingStore, predictor: Predictor) -> dict[str, Any]:
    """{"held_out": N, "models": {model: accuracy or None}}, measured now through the predictor."""
    _, held = store.training_drawings().split()
    images = (held.images.astype(np.float32) / 255.0)[..., None]
    models: dict[str, float | None] = {}
    for name in predictor.names:
        if not len(held):
            models[name] = None
            continue
        try:
            digits = np.array([p.digit for p in predictor.predict_batch(images, name)])
        except ModelUnavailableError:
            models[name] = None
            continue
        models[name] = round(float(np.mean(digits == held.labels)), 6)
    return {"held_out": len(held), "models": models}
