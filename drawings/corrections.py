"""Saving a correction: the drawing as sent, the 28x28 input the models see, its label, what they read.

    save_correction(store, predictor, image, label, client_id)   # -> the new drawing's id

Used by REST (POST /drawings), the Draw tab's "Right" / "Wrong? It's a ..." buttons
and the import. The image goes through the same decoding limits and preprocessing as
a prediction (inference/image_io.py, inference/preprocess.py); a bad one raises
ImageInputError with a user-facing message and nothing is stored.
"""
from __future__ import annotations

import hashlib
import io
import threading
from typing import Any

import numpy as np
from PIL import Image

from drawings.limits import WINDOW, RateLimiter
from drawings.store import ClientRateError, DrawingStore, StoreDiskFullError, StoreError, StoreFullError
from inference.image_io import EmptyImageError, ImageInputError, decode_base64, load_image
from inference.predictor import Predictor, file_signature
from inference.preprocess import preprocess
from training.artifacts import read_metadata

PROBABILITY_DIGITS = 4  # decimals kept of each stored probability


class LabelError(ValueError):
    """The label is not a digit 0-9 (the message is user-facing)."""


class RateLimitedError(RuntimeError):
    """This client saved too many corrections in the last minute."""

    def __init__(self, retry_after: float):
        super().__init__(f"Too many drawings saved from here in the last minute: wait {retry_after:.0f} s "
                         "and try again")
        self.retry_after = retry_after


# The errors a correction can meet, and the HTTP status each is answered with: by REST (api/drawings.py)
# and by the Gradio events that save drawings (ui/refusals.py), so both say the same.
CORRECTION_ERRORS = (ImageInputError, LabelError, RateLimitedError, StoreError)


def error_status(error: Exception) -> int:
    """422 nothing drawn or a bad label, 429 too many, 507 the store or its disk is full, 503 the store is
    unavailable, 400 an image that cannot be read."""
    if isinstance(error, (EmptyImageError, LabelError)):
        return 422
    if isinstance(error, RateLimitedError):
        return 429
    if isinstance(error, (StoreFullError, StoreDiskFullError)):
        return 507
    if isinstance(error, StoreError):
        return 503
    return 400


def check_label(label: Any) -> int:
    """The label as an int 0-9; a bool, a string ("7"), a float or anything else raises LabelError."""
    if isinstance(label, (bool, np.bool_)) or not isinstance(label, (int, np.integer)) or not 0 <= label <= 9:
        raise LabelError(f"label must be a whole number from 0 to 9 (the digit that was drawn), got {label!r:.40}")
    return int(label)


def save_correction(store: DrawingStore, predictor: Predictor, image: Any, label: Any, client_id: str | None = None,
                    *, limiter: RateLimiter | None = None, created_at: str | None = None) -> int:
    """Store `image` (a data URL, base64 text or encoded bytes; also a PIL image, array or Sketchpad value)
    labelled `label`; returns its id.

    `limiter` (with `client_id`) applies a per-client rate; callers pass it for anonymous
    visitors of a server with TRAIN_TOKEN. Raises LabelError, ImageInputError (and
    EmptyImageError), RateLimitedError, drawings.store.StoreFullError.
    """
    digit = check_label(label)
    png, picture = _png_and_image(image)
    model_input = preprocess(picture)  # raises EmptyImageError for a blank canvas
    if limiter is not None:
        # After the checks: a client's mistakes do not use up its rate.
        wait = limiter.allow(_client_key(client_id))
        if wait is not None:
            raise RateLimitedError(wait)
    predictions = {name: {"digit": p.digit, "probabilities": [round(v, PROBABILITY_DIGITS) for v in p.probabilities]}
                   for name, p in predictor.predict_all(model_input).items()}
    client = _client_key(client_id) if client_id or limiter is not None else None
    try:
        # The limiter above is this process's; the database counts the visitor's drawings from every
        # replica on it (N replicas would otherwise allow N times the rate).
        return store.add(label=digit, png=png, model_input=model_input, predictions=predictions,
                         model_versions=serving_versions(predictor), client=client, created_at=created_at,
                         rate=(limiter.per_minute, WINDOW) if limiter is not None else None)
    except ClientRateError as error:
        raise RateLimitedError(error.retry_after) from None


def _png_and_image(image: Any) -> tuple[bytes, Image.Image]:
    """(the PNG to keep, the decoded image). Encoded bytes are kept as sent when they are a PNG;
    anything else (JPEG, an array, a Sketchpad value) is kept re-encoded as PNG."""
    if isinstance(image, str):
        image = decode_base64(image)
    if isinstance(image, (bytes, bytearray, memoryview)):
        data = bytes(image)
        picture = load_image(data)
        if data[:8] == b"\x89PNG\r\n\x1a\n":
            return data, picture
    else:
        picture = load_image(image)
    buffer = io.BytesIO()
    picture.save(buffer, format="PNG")
    return buffer.getvalue(), picture


def _client_key(client_id: str | None) -> str:
    # Stored and counted hashed: the database never holds a visitor's address.
    return hashlib.sha256((client_id or "anonymous").encode()).hexdigest()[:16]


_versions_cache: dict[tuple, Any] = {}
_versions_lock = threading.Lock()


def serving_versions(predictor: Predictor) -> dict[str, Any]:
    """model -> the version number its serving metadata names (None before versions exist), read
    from each <model>.json only when that file changed."""
    versions = {}
    for name in predictor.names:
        path = predictor.paths(name)["metadata"]
        key = (str(path), file_signature(path))
        with _versions_lock:
            if key not in _versions_cache:
                if len(_versions_cache) > 64:
                    _versions_cache.clear()
                _versions_cache[key] = (read_metadata(path) or {}).get("version")
            versions[name] = _versions_cache[key]
    return versions
