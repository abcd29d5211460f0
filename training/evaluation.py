"""The test-set figures kept with every model: its confusion matrix and the digits it gets most
confidently wrong, measured through the exact ONNX file that serves it.

    results = evaluate(onnx_bytes, test_images, test_labels)   # -> the metadata's "test_results"

They are written into the model's metadata JSON when it is trained (training/export.save_model,
the path every registry model's trainer ends in), so the Models tab shows them on a machine
without MNIST; `python -m training.backfill_card` adds them to exports that predate this.

Each record names the SHA-256 of the ONNX bytes it was measured on: a reader shows it only
for the file being served (`describes(results, sha)`), never for a file replaced since.
The mistakes' images are tiny PNGs (28x28 grey, MNIST's white digit on black, ~150-300
bytes each as base64), so the JSON stays a few kilobytes.

Needs numpy, onnxruntime and Pillow only: it runs in the serving-only install.
"""
from __future__ import annotations

import base64
import hashlib
import io
from typing import Any

import numpy as np

from training.onnx_contract import NUM_CLASSES, to_model_input

KEY = "test_results"  # the metadata key
MISTAKES = 8  # confident mistakes kept per model: a row of small images on the card
CHUNK = 1000  # images per onnxruntime call: bounded memory, near full batch speed


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def evaluate(onnx_bytes: bytes, images: np.ndarray, labels: np.ndarray, *, mistakes: int = MISTAKES,
             source: str = "measured when the model was trained") -> dict[str, Any]:
    """The "test_results" record for the ONNX model `onnx_bytes` on a labelled test set.

    `images`: uint8 [N, 28, 28] (MNIST as it is) or the model input float32 [N, 28, 28, 1] in [0, 1];
    `labels`: int [N], 0-9. Confidences are the served model's own (calibrated) probabilities.
    """
    labels = np.asarray(labels, dtype=np.int64).reshape(-1)
    model_input = _as_model_input(images)
    if len(model_input) != len(labels) or len(labels) == 0:
        raise ValueError(f"need one label per image and at least one image, got {len(model_input)} images "
                         f"and {len(labels)} labels")
    probabilities = _probabilities(onnx_bytes, model_input)
    read = probabilities.argmax(axis=1)
    matrix = np.zeros((NUM_CLASSES, NUM_CLASSES), dtype=np.int64)
    np.add.at(matrix, (labels, read), 1)
    return {
        "images": int(len(labels)),
        "accuracy": round(float(np.trace(matrix) / len(labels)), 6),
        "confusion_matrix": matrix.tolist(),  # rows: the true digit; columns: the digit read
        "confident_mistakes": confident_mistakes(model_input, labels, probabilities, mistakes),
        "onnx_sha256": sha256_hex(onnx_bytes),
        "source": source,
    }


def confident_mistakes(model_input: np.ndarray, labels: np.ndarray, probabilities: np.ndarray,
                       count: int = MISTAKES) -> list[dict[str, Any]]:
    """The `count` wrong answers given with the highest probability, most confident first."""
    read = probabilities.argmax(axis=1)
    confidence = probabilities[np.arange(len(read)), read]
    wrong = np.flatnonzero(read != labels)
    # Most confident first; equal confidences in test-set order, so the choice is repeatable.
    order = wrong[np.lexsort((wrong, -confidence[wrong]))][:count]
    return [{
        "index": int(i),  # its position in the test set
        "label": int(labels[i]),
        "read": int(read[i]),
        "confidence": round(float(confidence[i]), 4),
        "label_probability": round(float(probabilities[i, labels[i]]), 4),
        "png": encode_png(model_input[i]),
    } for i in order]


def describes(results: Any, onnx_sha256: str | None) -> bool:
    """True when `results` is a well-formed record measured on the ONNX file with this SHA-256."""
    if not isinstance(results, dict) or onnx_sha256 is None or results.get("onnx_sha256") != onnx_sha256:
        return False
    matrix = results.get("confusion_matrix")
    try:
        array = np.asarray(matrix, dtype=np.int64)
    except (TypeError, ValueError):
        return False
    return array.shape == (NUM_CLASSES, NUM_CLASSES) and bool((array >= 0).all())


def encode_png(model_input: np.ndarray) -> str:
    """A 28x28 model input as base64 PNG (grey, white digit on black)."""
    from PIL import Image

    from training.onnx_contract import to_pixels

    buffer = io.BytesIO()
    Image.fromarray(to_pixels(model_input), mode="L").save(buffer, format="PNG", optimize=True)
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def decode_png(text: str) -> np.ndarray:
    """uint8 [28, 28] from encode_png's base64. Raises ValueError for anything else."""
    from PIL import Image

    try:
        data = base64.b64decode(text, validate=True)
        with Image.open(io.BytesIO(data)) as image:
            if image.format != "PNG" or image.size != (28, 28):
                raise ValueError(f"not a 28x28 PNG ({image.format}, {image.size})")
            return np.asarray(image.convert("L"), dtype=np.uint8)
    except (ValueError, OSError, TypeError) as error:  # binascii.Error is a ValueError
        raise ValueError(f"not an image of a mistake: {error}") from None


def _as_model_input(images: np.ndarray) -> np.ndarray:
    array = np.asarray(images)
    if array.dtype == np.uint8:
        return to_model_input(array.reshape(-1, 28, 28))
    return array.astype(np.float32, copy=False).reshape(-1, 28, 28, 1)


def _probabilities(onnx_bytes: bytes, model_input: np.ndarray) -> np.ndarray:
    """One onnxruntime session over the bytes (not the predictor's): the figures then belong to
    exactly these bytes, whatever the predictor reloads meanwhile."""
    import onnxruntime as ort

    from training.onnx_contract import INPUT_NAME, OUTPUT_NAME

    session = ort.InferenceSession(onnx_bytes, providers=["CPUExecutionProvider"])
    return np.concatenate([session.run([OUTPUT_NAME], {INPUT_NAME: model_input[i:i + CHUNK]})[0]
                           for i in range(0, len(model_input), CHUNK)]).astype(np.float64)
