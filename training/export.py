"""The last step of every trainer: check ONNX parity, write native + ONNX + metadata atomically,
as a new model version in the data location (training/model_versions.py), or into a folder named
with `exports_dir` (tests, benchmarks, `python -m training --exports-dir`).

Two parity checks, both refusing to write beyond 1e-4 or a different argmax: the ONNX export vs
the model in memory ("onnx_parity": the conversion), and the native file as written, loaded back
from disk, vs the final ONNX file ("native_parity": a learner who loads the native file gets the
app's numbers; training/native_calibration.py)."""
from __future__ import annotations

import datetime as _dt
import hashlib
import json
import platform
from pathlib import Path
from typing import Any, Callable

import numpy as np
import onnx

from training import evaluation, native_calibration, onnx_contract
from training.versions import package_versions

# Versions recorded in the metadata, when installed.
_RECORDED_PACKAGES = ("numpy", "scikit-learn", "skl2onnx", "tensorflow", "keras", "tf2onnx", "onnx", "onnxruntime")


def library_versions() -> dict[str, str]:
    return {"python": platform.python_version(), **package_versions(_RECORDED_PACKAGES)}


def save_model(
    *,
    name: str,
    write_native: Callable[[Path], Any],
    onnx_model: onnx.ModelProto,
    probabilities_output: str,
    native_predict: Callable[[np.ndarray], np.ndarray],
    load_native: Callable[[Path], Callable[[np.ndarray], np.ndarray]],
    parity_images: np.ndarray,
    test_set: tuple[np.ndarray, np.ndarray],
    metadata: dict[str, Any],
    exports_dir: Any = None,
    folded_temperature: float | None = None,
) -> tuple[dict[str, str], dict[str, Any]]:
    """Finalize the ONNX model, verify it against the native model, and write all files: into
    `exports_dir` when given (a folder, or a ModelVersions), else as the newest version of `name` (it
    serves from then on).

    `parity_images`: float32 [N, 28, 28, 1] in [0, 1] (the ONNX input contract);
    `native_predict` maps them to the in-memory model's calibrated probabilities [N, 10].
    `load_native(path)`: the native file at `path` loaded as a learner would (joblib.load,
    keras.saving.load_model), as a function images -> probabilities; its output must match the
    ONNX file's. `folded_temperature`: the calibration folded into the native file (recorded).
    `test_set`: (images, labels) of the test set (MNIST test): the final ONNX bytes' confusion
    matrix and most confident mistakes on it go into the metadata JSON (training/evaluation.py),
    so every model's card is complete on a machine without MNIST.
    Returns (paths, metadata); the metadata carries "onnx_sha256" (of the bytes written) and, for a
    version, its "version" number. Raises before writing anything when parity fails.
    """
    from training.model_versions import model_source

    metadata = {
        "model": name,
        "trained_at": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "versions": library_versions(),
        "onnx_contract": {"input": onnx_contract.INPUT_NAME, "output": onnx_contract.OUTPUT_NAME,
                          "input_shape": ["N", *onnx_contract.IMAGE_SHAPE]},
        **metadata,
    }
    model = onnx_contract.finalize(onnx_model, probabilities_output, metadata)
    images = parity_images.astype(np.float32)
    report = onnx_contract.parity(onnx_contract.run_onnx(model.SerializeToString(), images), native_predict(images))
    onnx_contract.check_parity(report)
    metadata["onnx_parity"] = report
    model.metadata_props.add(key="onnx_parity", value=json.dumps(report))
    onnx_bytes = model.SerializeToString()
    # Measured on the very bytes written below, so it names their SHA-256; the JSON only (the ONNX
    # file cannot hold its own hash), which is where the Models tab reads it.
    metadata[evaluation.KEY] = evaluation.evaluate(onnx_bytes, *test_set)
    # What the run wrote, for whoever keeps or checks the files later (training/model_versions.py).
    metadata["onnx_sha256"] = hashlib.sha256(onnx_bytes).hexdigest()
    served = onnx_contract.run_onnx(onnx_bytes, images)  # the file written below
    with model_source(exports_dir).writer(name) as writer:
        staged = writer.stage("native", write_native)
        # The native file as written, loaded back as a learner would: it must predict what is served.
        native_report = onnx_contract.parity(served, load_native(staged)(images))
        native_calibration.check(native_report)  # raises: the staged files are discarded, nothing written
        metadata[native_calibration.KEY] = native_calibration.record(
            native_report, staged, folded_temperature,
            f"the export's {len(images):,} parity images")
        writer.stage_bytes("onnx", onnx_bytes)
        writer.stage_json("metadata", metadata)
        written = writer.commit()
    version = getattr(writer, "version", None)
    if version is not None:
        metadata["version"] = version
    return written, metadata
