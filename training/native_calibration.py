"""The native files predict what the app serves: the temperature folded into their last layer (issue 21).

The ONNX graph serves softmax(log(max(p, 1e-12)) / T) of the network's probabilities p = softmax(z)
(training/calibration.py: add_temperature). Since log softmax(z) = z - logsumexp(z) and a softmax
ignores a constant per row, that is softmax(z / T): dividing the last layer's weights and bias by T
(Model 1: the MLPClassifier's coefs_[-1] and intercepts_[-1]; Models 2 and 3: the final Dense) gives a
native model, with exactly its own layers and nothing to register, that predicts the calibrated
probabilities. (The floor changes only probabilities below 1e-12, whose tempered values stay below
~1e-15.) A learner who loads `exports/model2.keras` with keras.saving.load_model, or
`exports/model1.joblib` with joblib.load, gets the app's numbers: measured at export on the file as
loaded back from disk (`measure`, training/export.py refuses to write beyond 1e-4 or a different
argmax) and recorded in the metadata as "native_parity", with the temperature folded in.

A fine-tune continues from the network as it was trained (training/personal.py): it multiplies
the last layer back by the recorded temperature (`unfold`), so its starting loss, gradients and new
temperature are those of the unfolded network, as before the fold. A native file without the
record (written before this) is used as it is.

    python -m training.native_calibration [--exports-dir DIR] [--mnist-dir DIR]

folds the temperature into the shipped native files of exports/ (no retraining; the ONNX files are
only read and checked unchanged), printing the parity before and after, and records it in the JSON.
Keras is imported inside functions only: importing this module stays cheap.
"""
from __future__ import annotations

import copy
import sys
from pathlib import Path
from typing import Any, Callable

import numpy as np

KEY = "native_parity"  # in the metadata JSON
PREDICT_BATCH = 1000


# --------------------------------------------------------------------------- folding


def _last_layer(native):
    """(get, set) of the last layer's [weights, bias] of a Keras model, a Pipeline or an MLPClassifier."""
    if hasattr(native, "layers"):  # Keras: the final Dense(10, softmax)
        layer = native.layers[-1]
        if getattr(getattr(layer, "activation", None), "__name__", None) != "softmax":
            raise ValueError(f"the last layer of {native.name} is not a softmax Dense: cannot fold a temperature")

        def put(values):
            layer.set_weights([np.asarray(v, np.float32) for v in values])
        return layer.get_weights(), put
    classifier = native.steps[-1][1] if hasattr(native, "steps") else native
    if getattr(classifier, "out_activation_", None) != "softmax":
        raise ValueError(f"{type(classifier).__name__} does not end in a softmax: cannot fold a temperature")

    def put(values):
        classifier.coefs_[-1], classifier.intercepts_[-1] = values
    return [classifier.coefs_[-1], classifier.intercepts_[-1]], put


def scale_last_layer(native, factor: float) -> None:
    """Multiply the last layer's weights and bias by `factor`, in place (in float64, back to their dtype)."""
    values, put = _last_layer(native)
    put([(np.asarray(v, np.float64) * factor).astype(np.asarray(v).dtype) for v in values])


def fold(native, temperature: float) -> None:
    """In place: the model now predicts softmax(z / T), what the served ONNX graph computes."""
    scale_last_layer(native, 1.0 / temperature)


def unfold(native, temperature: float) -> None:
    """In place: back to the network as trained (undoes `fold` up to float rounding)."""
    scale_last_layer(native, temperature)


def folded_copy(pipeline, temperature: float):
    """A scikit-learn model with the temperature folded in; `pipeline` is left as it is."""
    out = copy.deepcopy(pipeline)
    fold(out, temperature)
    return out


def save_folded_keras(model, temperature: float, path) -> None:
    """model.save(path) with the temperature folded in; the model's own weights are restored after."""
    values, put = _last_layer(model)
    fold(model, temperature)
    try:
        model.save(path)
    finally:
        put(values)


def folded_temperature(metadata: dict[str, Any] | None) -> float | None:
    """The temperature folded into a native file, from its metadata (None: the file is uncalibrated)."""
    record = (metadata or {}).get(KEY) or {}
    value = record.get("temperature_folded")
    return float(value) if value is not None else None


# --------------------------------------------------------------------------- loading as a learner does


def load(path) -> Any:
    """The native file as a learner loads it: keras.saving.load_model for .keras, else joblib.load."""
    path = Path(path)
    if path.suffix == ".keras":
        import keras

        return keras.saving.load_model(path)
    import joblib

    return joblib.load(path)


def loaded_with(path) -> str:
    return "keras.saving.load_model" if Path(path).suffix == ".keras" else "joblib.load"


def predict(native, images: np.ndarray) -> np.ndarray:
    """Probabilities [N, 10] for images float32 [N, 28, 28, 1] in [0, 1] (the ONNX input)."""
    images = np.asarray(images, np.float32)
    if hasattr(native, "layers"):
        return np.asarray(native.predict(images, batch_size=PREDICT_BATCH, verbose=0))
    return np.asarray(native.predict_proba(images.reshape(len(images), -1)))


def file_predictor(path) -> Callable[[np.ndarray], np.ndarray]:
    """A predict function of the native file at `path`, loaded as a learner would."""
    native = load(path)
    return lambda images: predict(native, images)


def record(report: dict[str, Any], path, temperature: float | None, images: str) -> dict[str, Any]:
    """The metadata's "native_parity": the parity report and what it measured."""
    return {**report, "loaded_with": loaded_with(path), "temperature_folded": temperature, "images": images,
            "measured": "the native file as written, loaded back from disk, vs the final ONNX file (onnxruntime)"}


def check(report: dict[str, Any]) -> None:
    """Raise when the native file, as loaded, does not predict what the ONNX file serves."""
    from training.onnx_contract import PARITY_MAX_ABS_DIFF

    if report["max_abs_diff"] > PARITY_MAX_ABS_DIFF or report["argmax_agreement"] < 1.0:
        raise RuntimeError(
            f"the native file, as loaded, does not predict what the ONNX file serves: max |diff| "
            f"{report['max_abs_diff']:.2e} (limit {PARITY_MAX_ABS_DIFF:.0e}), argmax agreement "
            f"{report['argmax_agreement']:.4f} (need 1.0)")


# --------------------------------------------------------------------------- the shipped files


def parity_images(mnist) -> tuple[np.ndarray, str]:
    """The images the shipped files are compared on: MNIST test, then the drawn digits of
    benchmarks/reading/drawn_sets.py (quick size), when that package is present."""
    from training.onnx_contract import to_model_input

    parts, names = [to_model_input(mnist.x_test)], [f"MNIST test ({len(mnist.x_test):,})"]
    try:
        from benchmarks.reading.drawn_sets import QUICK_SIZE, load_drawn_sets
    except ImportError:
        return parts[0], names[0]
    drawn = np.concatenate([s.x for s in load_drawn_sets(mnist, QUICK_SIZE).values()])
    parts.append(to_model_input(drawn))
    names.append(f"drawn sets, quick size ({len(drawn):,}: digits and non-digits)")
    return np.concatenate(parts), " + ".join(names)


def fold_shipped(exports: Path, images: np.ndarray, description: str, out=None) -> list[Path]:
    """Fold each shipped model's temperature into its native file, check the file as loaded against
    the ONNX file on `images`, and record the parity in the JSON; returns the files written.
    A native file already folded (its JSON says so) is measured again and left as it is."""
    from training import evaluation, onnx_contract
    from training.artifacts import ArtifactWriter, artifact_paths, read_metadata
    from training.registry import MODELS

    out = out or sys.stdout
    written = []
    for name, spec in MODELS.items():
        paths = artifact_paths(name, spec.native_format, exports)
        if not (paths["onnx"].is_file() and paths["native"].is_file()):
            continue
        onnx_bytes = paths["onnx"].read_bytes()
        sha = evaluation.sha256_hex(onnx_bytes)
        metadata = read_metadata(paths["metadata"]) or {}
        temperature = float(metadata["temperature"])
        served = onnx_contract.run_onnx(onnx_bytes, images)
        native = load(paths["native"])
        before = onnx_contract.parity(served, predict(native, images))
        already = folded_temperature(metadata) is not None
        with ArtifactWriter({"native": paths["native"], "metadata": paths["metadata"]}) as writer:
            if not already:
                fold(native, temperature)
                staged = writer.stage("native", lambda path: native.save(path) if hasattr(native, "layers")
                                      else _joblib_dump(native, path))
            else:
                staged = paths["native"]
            after = onnx_contract.parity(served, file_predictor(staged)(images))
            check(after)
            unfolded = (metadata.get(KEY) or {}).get("before_folding") if already else {
                "max_abs_diff": before["max_abs_diff"], "argmax_agreement": before["argmax_agreement"],
                "by": "python -m training.native_calibration"}
            metadata[KEY] = {**record(after, paths["native"], temperature, description),
                             **({"before_folding": unfolded} if unfolded else {})}
            writer.stage_json("metadata", metadata)
            writer.commit()
        if evaluation.sha256_hex(paths["onnx"].read_bytes()) != sha:  # never expected: only read
            raise RuntimeError(f"{paths['onnx']} changed while its native file was rewritten")
        written.append(paths["native"])
        print(f"{name}: native as loaded vs ONNX on {len(images):,} images: max |diff| "
              f"{before['max_abs_diff']:.2e} -> {after['max_abs_diff']:.2e}, argmax agreement "
              f"{before['argmax_agreement']:.4%} -> {after['argmax_agreement']:.4%}"
              f"{' (already folded)' if already else f' (T={temperature:g} folded in)'}", file=out)
    return written


def _joblib_dump(model, path) -> None:
    import joblib

    joblib.dump(model, path)


def main(argv: list[str] | None = None) -> int:
    from training import shipped_cli

    def fold(folder: Path, data, args) -> None:
        images, description = parity_images(data)
        fold_shipped(folder, images, description)

    return shipped_cli.run(argv, "python -m training.native_calibration", __doc__.splitlines()[0], fold,
                           failure="folding failed")


if __name__ == "__main__":
    sys.exit(main())
