"""What the Models tab shows beyond the card's numbers, for the version being served: the weights
that read as images (inference/learned.py) and the test-set figures (training/evaluation.py).

The test-set figures come from the model's metadata JSON, where training (and, for older
exports, `python -m training.backfill_card`) records them together with the SHA-256 of the ONNX
file they were measured on; they are shown only when that is the file being served now. When
they are missing (an export from before they were recorded) and MNIST is available locally, they
are measured now through the same ONNX bytes (a few seconds for the CNN); otherwise the tab says
how to get them.

Everything is cached against the export it came from, the ONNX and JSON files' (mtime_ns, size,
inode): after a training run or a version switch the next look reads the new files; an unchanged
export costs a stat.
"""
from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any

from inference.learned import Learned, learned_from_bytes
from inference.predictor import NO_EXPORT_REASON, ModelUnavailableError, Predictor, file_signature
from training import evaluation
from training.artifacts import read_metadata

RECORDED, MEASURED_NOW = "recorded", "measured now"


@dataclass(frozen=True)
class Insight:
    model: str
    onnx_sha256: str
    version: int | None  # the served version's number (training/model_versions.py), when kept
    learned: Learned  # the weights read from the served ONNX graph (fields None when it has none)
    results: dict[str, Any] | None  # the "test_results" record of exactly this ONNX file
    results_from: str | None  # RECORDED (in the metadata) or MEASURED_NOW (on local MNIST)
    missing: str | None  # why there are no test-set figures, when there are none


class ModelInsights:
    def __init__(self, predictor: Predictor):
        self.predictor = predictor
        self._cache: dict[str, tuple[Any, Insight]] = {}
        self._locks = {name: threading.Lock() for name in predictor.names}
        self._test_set = None
        self._test_set_lock = threading.Lock()

    def get(self, name: str) -> Insight:
        """The served version of `name`. Raises ModelUnavailableError when it has no usable export."""
        files = self.predictor.source.serving_files(name)  # the serving version's files (after a switch, others)
        paths = files.paths
        with self._locks[name]:
            key = (file_signature(paths["onnx"]), file_signature(paths["metadata"]))
            cached = self._cache.get(name)
            if cached is not None and cached[0] == key:
                return cached[1]
            if key[0] is None:
                raise ModelUnavailableError(name, NO_EXPORT_REASON)
            if not self.predictor.is_available(name):  # a broken file: the predictor's reason says why
                raise ModelUnavailableError(name, self.predictor.model_status(name)["reason"] or NO_EXPORT_REASON)
            metadata = read_metadata(paths["metadata"]) or {}
            # Its number as the predictor reports it (a plain folder: what its metadata says, if anything).
            version = files.version if files.version is not None else metadata.get("version")
            insight = self._inspect(name, paths["onnx"].read_bytes(), metadata, version)
            self._cache[name] = (key, insight)
            return insight

    def _inspect(self, name: str, onnx_bytes: bytes, metadata: dict[str, Any], version: int | None) -> Insight:
        sha = evaluation.sha256_hex(onnx_bytes)
        try:
            learned = learned_from_bytes(onnx_bytes)
        except ValueError:  # replaced by a broken file since the availability check: nothing to show
            learned = Learned()
        results, results_from, missing = metadata.get(evaluation.KEY), RECORDED, None
        if not evaluation.describes(results, sha):
            results, results_from = None, None
            test_set = self._mnist_test()
            if test_set is None:
                missing = ("This version's metadata holds no test-set figures (it was trained before they were "
                           "recorded) and MNIST is not available here to measure them: run `python -m "
                           "training.backfill_card` where MNIST is, or set MNIST_DIR to a folder with the MNIST "
                           "files.")
            else:
                results = evaluation.evaluate(onnx_bytes, *test_set, source="measured by the app on this "
                                              "machine's MNIST test set")
                results_from = MEASURED_NOW
        return Insight(model=name, onnx_sha256=sha, version=version, learned=learned,
                       results=results, results_from=results_from, missing=missing)

    def _mnist_test(self):
        """(uint8 images, labels) of the local MNIST test set, or None when there is none. Never downloads."""
        from training.mnist import MnistError, load_mnist, locate_mnist

        with self._test_set_lock:
            if self._test_set is None:
                if locate_mnist() is None:
                    return None
                try:
                    data = load_mnist(download=False)
                except (MnistError, OSError):
                    return None
                self._test_set = (data.x_test, data.y_test)
            return self._test_set
