"""The native files predict what the app serves (issue 21 item 6, training/native_calibration.py).

A learner who loads exports/model1.joblib with joblib.load, or model2/model3.keras with
keras.saving.load_model, gets the probabilities the app serves for the same 28x28 input (the
temperature is folded into the last layer); every export measures that on the file as written and
refuses to write otherwise; a fine-tune continues from the network as trained.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from tests.app_server import ROOT, run_python
from training.onnx_contract import PARITY_MAX_ABS_DIFF, PARITY_SAMPLES, run_onnx, to_model_input
from training.registry import MODELS

LEARNER_LOADS = {"joblib": "joblib.load", "keras": "keras.saving.load_model"}


def learner_predict(path: Path, images: np.ndarray) -> np.ndarray:
    """What a learner's notebook does with the native file: load it with its own library, predict."""
    if path.suffix == ".keras":
        import keras

        return keras.saving.load_model(path).predict(images, batch_size=1000, verbose=0)
    import joblib

    return joblib.load(path).predict_proba(images.reshape(len(images), -1))


def uncalibrated(onnx_bytes: bytes, images: np.ndarray) -> np.ndarray:
    """The served graph's probabilities before its temperature nodes (calibration.add_temperature):
    the network as trained."""
    import onnx
    import onnxruntime as ort
    from onnx import TensorProto, helper

    model = onnx.load_from_string(onnx_bytes)
    model.graph.output.append(helper.make_tensor_value_info("uncalibrated_probabilities", TensorProto.FLOAT, None))
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(["uncalibrated_probabilities"], {"image": images.astype(np.float32)})[0]


def drawn_examples() -> np.ndarray:
    """Drawings as the app receives them, preprocessed by the app's own code: seven-segment digits
    (a style MNIST lacks) and examples/digit.png."""
    import io

    from PIL import Image

    from inference.preprocess import preprocess
    from tests.segments import segment_digit

    pictures = [Image.open(io.BytesIO(segment_digit(digit, seed))) for seed in range(3) for digit in range(10)]
    pictures.append(Image.open(ROOT / "examples" / "digit.png"))
    return np.stack([preprocess(picture) for picture in pictures])


def check_parity(native: np.ndarray, served: np.ndarray) -> None:
    assert np.abs(np.asarray(native, np.float64) - served).max() <= PARITY_MAX_ABS_DIFF
    assert np.array_equal(np.asarray(native).argmax(1), served.argmax(1))


def model_params():
    # The Keras files need TensorFlow (seconds to import): marked as the Keras trainers' tests are.
    return [pytest.param(name, marks=[pytest.mark.slow, pytest.mark.tensorflow] if spec.native_format == "keras"
                         else []) for name, spec in MODELS.items()]


# --------------------------------------------------------------------------- the shipped files


@pytest.mark.parametrize("name", model_params())
def test_the_shipped_native_file_as_loaded_predicts_what_the_app_serves(name, exports_copy, mnist):
    from inference.predictor import Predictor
    from training.artifacts import artifact_paths

    paths = artifact_paths(name, MODELS[name].native_format, exports_copy)
    images = np.concatenate([to_model_input(mnist.x_test), drawn_examples()])
    native = learner_predict(paths["native"], images)
    check_parity(native, run_onnx(paths["onnx"].read_bytes(), images))
    # The app's predictor on the drawn examples: the numbers a page or a REST client gets.
    drawn = images[len(mnist.x_test):]
    predictor = Predictor(exports_copy)
    served = np.array([p.probabilities for p in predictor.predict_batch(drawn, name)])
    check_parity(native[len(mnist.x_test):], served)
    # The model card (Models tab, /model_status) says so.
    from ui.views import model_card

    card = model_card(predictor.model_status(name))
    assert f"temperature {json.loads(paths['metadata'].read_text())['temperature']:g} folded in" in card

    metadata = json.loads(paths["metadata"].read_text())
    record = metadata["native_parity"]
    assert record["temperature_folded"] == metadata["temperature"]
    assert record["loaded_with"] == LEARNER_LOADS[MODELS[name].native_format]
    assert record["max_abs_diff"] <= PARITY_MAX_ABS_DIFF and record["argmax_agreement"] == 1.0
    assert record["samples"] >= 10_000
    # Files folded after the fact (python -m training.native_calibration) record what they gave before:
    # the uncalibrated probabilities (up to 0.17 away). A file trained since was folded at export.
    if "before_folding" in record:
        assert record["before_folding"]["max_abs_diff"] > 1e-3


@pytest.mark.parametrize("name", model_params())
def test_a_fine_tune_starts_from_the_network_as_trained(name, exports_copy, mnist):
    """The folded file is unfolded on load: the run continues from the network the ONNX graph holds
    before its temperature nodes, not from one sharpened by 1/T."""
    from drawings.store import TrainingDrawings
    from training.artifacts import ExportFolder
    from training.options import TrainOptions
    from training.personal import PersonalRun

    nothing = TrainingDrawings(np.zeros(0, np.int64), np.zeros((0, 28, 28), np.uint8), np.zeros(0, np.int64))
    run = PersonalRun(name, MODELS[name].native_format, TrainOptions(include_drawings=True, fine_tune=True),
                      ExportFolder(exports_copy), nothing, nothing)
    start = run.serving_model()
    images = np.concatenate([to_model_input(mnist.x_test[:1000]), drawn_examples()])
    if hasattr(start, "layers"):
        started = start.predict(images, batch_size=1000, verbose=0)
    else:
        started = start.predict_proba(images.reshape(len(images), -1))
    onnx_bytes = ExportFolder(exports_copy).serving_files(name).paths["onnx"].read_bytes()
    check_parity(started, uncalibrated(onnx_bytes, images))


def test_nothing_added_imports_tensorflow_at_start_up():
    # What the server imports at start-up (the predictor, the jobs, the corrections) with what this adds.
    result = run_python("import sys, inference.predictor, training.jobs, drawings.corrections\n"
                        "import training.native_calibration, training.personal, training.export\n"
                        "print('tensorflow' in sys.modules, 'keras' in sys.modules)")
    assert result.returncode == 0, result.stderr
    assert result.stdout.split()[-2:] == ["False", "False"]


# --------------------------------------------------------------------------- every export checks it


def test_an_export_whose_native_file_predicts_otherwise_is_refused(empty_exports):
    """save_model loads the native file back and refuses to write when it is not what the ONNX file
    serves (here: the weights saved without the calibration the graph applies)."""
    from tests.fakes import tiny_onnx, tiny_predict, tiny_weights
    from training.export import save_model

    weights, bias = tiny_weights(None, 0)
    images = np.random.default_rng(0).random((16, 28, 28, 1), dtype=np.float32)

    def load_uncalibrated(path):
        with np.load(path) as saved:
            w, b = saved["weights"], saved["bias"]
        return lambda x: tiny_predict(w * 3.0, b * 3.0, x)  # as if the file lacked a 1/T = 3 fold

    with pytest.raises(RuntimeError, match="the native file, as loaded, does not predict what the ONNX file serves"):
        save_model(name="model1", write_native=lambda path: np.savez(open(path, "wb"), weights=weights, bias=bias),
                   onnx_model=tiny_onnx(weights, bias), probabilities_output="probabilities",
                   native_predict=lambda x: tiny_predict(weights, bias, x), load_native=load_uncalibrated,
                   parity_images=images, test_set=(images, np.arange(16) % 10), metadata={"test_accuracy": 0.5},
                   exports_dir=empty_exports)
    assert list(empty_exports.iterdir()) == []  # nothing written, no staged file left


@pytest.fixture
def drawings_store(tmp_path, monkeypatch, exports_copy):
    """Seven-segment drawings saved as corrections, for a fine-tune to learn."""
    from drawings.corrections import save_correction
    from drawings.store import DrawingStore
    from inference.predictor import Predictor
    from tests.segments import segment_digit

    monkeypatch.setenv("DRAWINGS_DB", str(tmp_path / "drawings.sqlite3"))
    store = DrawingStore.from_environment()
    predictor = Predictor(exports_copy)
    for seed in range(5):
        for digit in range(10):
            save_correction(store, predictor, segment_digit(digit, seed), digit)
    return store


def check_written_parity(folder: Path, name: str, mnist) -> dict:
    """The files a run wrote: the native file as loaded predicts what the ONNX file serves, and the
    metadata says so."""
    spec = MODELS[name]
    metadata = json.loads((folder / f"{name}.json").read_text())
    record = metadata["native_parity"]
    assert record["samples"] == PARITY_SAMPLES and record["argmax_agreement"] == 1.0
    assert record["max_abs_diff"] <= PARITY_MAX_ABS_DIFF
    assert record["temperature_folded"] == metadata["temperature"]
    assert record["loaded_with"] == LEARNER_LOADS[spec.native_format]
    images = to_model_input(mnist.x_test[:2000])
    check_parity(learner_predict(folder / f"{name}.{spec.native_format}", images),
                 run_onnx((folder / f"{name}.onnx").read_bytes(), images))
    return metadata


@pytest.mark.slow
def test_model1_quick_run_and_fine_tune_write_calibrated_native_files(mnist, tmp_path, drawings_store):
    from training import model1_logreg

    folder = tmp_path / "exports"
    events = list(model1_logreg.train(model1_logreg.QUICK, data=mnist, exports_dir=folder))
    trained = check_written_parity(folder, "model1", mnist)
    assert events[-1].metadata["native_parity"] == trained["native_parity"]

    # The fine-tune starts from the folded file (unfolded on load) and writes a folded one again.
    options = model1_logreg.QUICK.updated(include_drawings=True, fine_tune=True)
    list(model1_logreg.train(options, data=mnist, exports_dir=folder))
    tuned = check_written_parity(folder, "model1", mnist)
    assert tuned["personal"]["fine_tune"] and tuned["temperature"] > 0
    before, after = tuned["personal"]["before"], tuned["personal"]["after"]
    # Continued from the quick model, not from a broken start: MNIST stays within a point.
    assert after["mnist_test"] >= before["mnist_test"] - 0.01, (before, after)
    assert after["mnist_test"] > 0.8


@pytest.mark.slow
@pytest.mark.tensorflow
def test_a_keras_quick_run_writes_a_calibrated_native_file(mnist, tmp_path):
    from training import model2_cnn

    folder = tmp_path / "exports"
    options = model2_cnn.QUICK.updated(epochs=1, batch_size=32, limit=500)
    list(model2_cnn.train(options, data=mnist, exports_dir=folder))
    check_written_parity(folder, "model2", mnist)
