"""Confusion matrices on the MNIST test set, computed through the serving ONNX predictor.

Computing one runs all 10,000 test images through a model (a few seconds for the
CNN), so each result is cached against the exact export it was computed from: the
ONNX file's (mtime_ns, size, inode). A retrained model gets a fresh matrix; an
unchanged one costs nothing.
"""
from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any

import numpy as np

from inference.predictor import Predictor, file_signature

CHUNK = 1000  # images per onnxruntime call: bounded memory, near full batch speed


@dataclass(frozen=True)
class Confusion:
    model: str
    matrix: np.ndarray  # int64 [10, 10]: rows true digit, columns predicted digit
    accuracy: float
    samples: int


class ConfusionMatrices:
    def __init__(self, predictor: Predictor):
        self.predictor = predictor
        self._cache: dict[str, tuple[Any, Confusion]] = {}
        self._locks = {name: threading.Lock() for name in predictor.names}
        self._test_set: tuple[np.ndarray, np.ndarray] | None = None
        self._test_set_lock = threading.Lock()

    def mnist_missing_reason(self) -> str | None:
        """Why there is no local MNIST test set, or None. Never downloads."""
        from training.mnist import locate_mnist

        if locate_mnist() is None:
            return ("MNIST is not available locally, so the confusion matrix cannot be computed: set MNIST_DIR "
                    "to a folder with the MNIST files, or train a model once (training downloads MNIST).")
        return None

    def get(self, name: str) -> Confusion:
        """The matrix for the model being served now. Raises ModelUnavailableError or MnistNotFoundError."""
        with self._locks[name]:
            key = file_signature(self.predictor.paths(name)["onnx"])
            cached = self._cache.get(name)
            if cached is not None and cached[0] == key:
                return cached[1]
            images, labels = self._mnist_test()
            predicted = np.concatenate([
                self.predictor.predict_digits(images[i:i + CHUNK], name)
                for i in range(0, len(images), CHUNK)
            ])
            matrix = np.zeros((10, 10), dtype=np.int64)
            np.add.at(matrix, (labels, predicted), 1)
            result = Confusion(model=name, matrix=matrix, accuracy=float(np.trace(matrix) / len(labels)),
                               samples=len(labels))
            self._cache[name] = (key, result)
            return result


    def _mnist_test(self) -> tuple[np.ndarray, np.ndarray]:
        with self._test_set_lock:
            if self._test_set is None:
                from training.mnist import load_mnist

                data = load_mnist(download=False)
                # The ONNX contract: float32 [N, 28, 28, 1] in [0, 1], white digit on black (MNIST as it is).
                images = (data.x_test.astype(np.float32) / 255.0)[..., np.newaxis]
                self._test_set = (images, np.asarray(data.y_test, dtype=np.int64))
            return self._test_set
