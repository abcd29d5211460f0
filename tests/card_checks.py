"""Checks shared by the trainers' tests: the test-set figures a run records for the Models tab
(training/evaluation.py) are those of the ONNX file it wrote, measured again here independently."""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np

from training import evaluation, onnx_contract


def check_recorded_test_results(folder: Path, name: str, mnist, probabilities: np.ndarray | None = None) -> dict:
    """Assert `folder`'s <name>.json records the confusion matrix and confident mistakes of <name>.onnx on
    MNIST test (`probabilities`: that file's on MNIST test, when the caller has them); returns the record."""
    metadata = json.loads((folder / f"{name}.json").read_text())
    onnx_bytes = (folder / f"{name}.onnx").read_bytes()
    results = metadata[evaluation.KEY]
    assert results["onnx_sha256"] == hashlib.sha256(onnx_bytes).hexdigest()
    assert evaluation.describes(results, hashlib.sha256(onnx_bytes).hexdigest())

    if probabilities is None:
        probabilities = onnx_contract.run_onnx(onnx_bytes, onnx_contract.to_model_input(mnist.x_test))
    probabilities = np.asarray(probabilities, dtype=np.float64)
    read = probabilities.argmax(1)
    expected = np.zeros((10, 10), np.int64)
    np.add.at(expected, (mnist.y_test, read), 1)
    assert np.array_equal(np.asarray(results["confusion_matrix"]), expected)
    assert results["images"] == len(mnist.y_test) == expected.sum()
    assert results["accuracy"] == metadata["onnx_test_accuracy"]

    mistakes = results["confident_mistakes"]
    wrong = np.flatnonzero(read != mnist.y_test)
    assert len(mistakes) == min(evaluation.MISTAKES, len(wrong))
    confidences = [m["confidence"] for m in mistakes]
    assert confidences == sorted(confidences, reverse=True)
    for mistake in mistakes:
        index = mistake["index"]
        assert mistake["label"] == mnist.y_test[index] != mistake["read"] == read[index]
        assert abs(mistake["confidence"] - probabilities[index, read[index]]) <= 1e-4
        assert np.array_equal(evaluation.decode_png(mistake["png"]), mnist.x_test[index])
    # None of the other wrong answers was given more confidently than the least confident one kept.
    others = np.setdiff1d(wrong, [m["index"] for m in mistakes])
    if len(others):
        assert probabilities[others, read[others]].max() <= confidences[-1] + 1e-4
    return results
