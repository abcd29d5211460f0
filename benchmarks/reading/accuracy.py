"""(1) Accuracy on the MNIST test set, scored from the shipped ONNX files."""
from __future__ import annotations

import time

import numpy as np

from benchmarks.context import Context, as_model_input, onnx_probabilities, onnx_session
from benchmarks.outcome import SectionResult, pct
from training.artifacts import read_metadata
from training.registry import MODELS

NAME = "accuracy"
TITLE = "Accuracy on the MNIST test set (shipped ONNX models)"

# The project's targets: MNIST test accuracy per model.
TARGETS = {"model1": 0.920, "model2": 0.992, "model3": 0.996}  # model3: issue 21


def run(ctx: Context) -> SectionResult:
    result = SectionResult(NAME, TITLE)
    mnist = ctx.mnist
    count = ctx.config.accuracy_samples or len(mnist.y_test)
    images, labels = as_model_input(mnist.x_test[:count]), np.asarray(mnist.y_test[:count])
    rows = []
    for name, spec in MODELS.items():
        onnx_path = ctx.exports / f"{name}.onnx"
        if not onnx_path.is_file():
            raise FileNotFoundError(f"no shipped model at {onnx_path}: train and export it first "
                                    f"(python -m training {name})")
        began = time.perf_counter()
        predicted = onnx_probabilities(onnx_session(onnx_path), images).argmax(axis=1)
        seconds = time.perf_counter() - began
        accuracy = float(np.mean(predicted == labels))
        recorded = (read_metadata(ctx.exports / f"{name}.json") or {}).get("test_accuracy")
        target = TARGETS.get(name)
        status = result.check(f"{spec.title}: MNIST test accuracy", f">= {pct(target, 1)}",
                              pct(accuracy), accuracy, accuracy >= target if target else None,
                              why=f"the shipped {onnx_path.name} scores {pct(accuracy)} on {count:,} test images, "
                                  f"{100 * (target - accuracy):.2f} points short: the model needs better training.")
        result.data[name] = {"accuracy": accuracy, "samples": count, "errors": int(np.sum(predicted != labels)),
                             "metadata_accuracy": recorded, "score_seconds": round(seconds, 3),
                             "onnx_file": onnx_path.name, "onnx_bytes": onnx_path.stat().st_size}
        rows.append([spec.title, f"{count:,}", pct(accuracy), pct(recorded) if recorded is not None else "n/a",
                     f"{onnx_path.stat().st_size / 1024:,.0f} KiB", f">= {pct(target, 1)}", status])
        if recorded is not None and count == len(mnist.y_test) and abs(recorded - accuracy) > 1e-4:
            result.note(f"{name}: the metadata says {pct(recorded)} but the shipped ONNX file scores "
                        f"{pct(accuracy)}; the export and its metadata are out of step.")
    result.table("Accuracy per model", ["Model", "Test images", "Accuracy (ONNX)", "In metadata", "ONNX size",
                                        "Target", "Status"], rows)
    if count < len(mnist.y_test):
        result.note(f"Quick run: only the first {count:,} test images were scored.")
    return result
