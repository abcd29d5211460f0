"""Model 3 (modern small CNN, issue 21): end to end on a few hundred MNIST images through the Keras
loop it shares with Model 2 (training/keras_training.py), its files, ONNX parity with the Keras
model, the model card, cancelling. Needs TensorFlow and MNIST_DIR; slow (TensorFlow's import,
a short fit, the ONNX export)."""
from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from training.events import Progress, Result
from training.onnx_contract import INPUT_NAME, OUTPUT_NAME, PARITY_MAX_ABS_DIFF, PARITY_SAMPLES

pytestmark = [pytest.mark.slow, pytest.mark.tensorflow]
SMOKE = {"epochs": 2, "batch_size": 32, "limit": 500}  # a few hundred MNIST digits (plus their canvas mix)
MAX_ONNX_BYTES = 2 * 1024 * 1024  # issue 21: the served file stays small
CANCEL_WITHIN = 10.0


@pytest.fixture(scope="module")
def tensorflow():
    return pytest.importorskip("tensorflow", reason="TensorFlow is not installed, so Model 3 cannot be trained")


@pytest.fixture(scope="module")
def smoke_run(tensorflow, mnist, tmp_path_factory):
    from training import model3_cnn

    folder = tmp_path_factory.mktemp("model3_exports")
    events = list(model3_cnn.train(model3_cnn.QUICK.updated(**SMOKE), data=mnist, exports_dir=folder))
    return events, folder


def fit_threads() -> list[threading.Thread]:
    return [thread for thread in threading.enumerate() if thread.name == "model3-fit"]


def test_importing_model3_does_not_import_tensorflow():
    code = ("import sys, training.model3_cnn, training.keras_training; "
            "print('tensorflow' in sys.modules, 'keras' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=str(Path(__file__).resolve().parent.parent))
    assert out.stdout.split() == ["False", "False"]


def test_the_network_is_the_documented_size(tensorflow):
    from training import model3_cnn

    model = model3_cnn.build_model()
    assert 100_000 <= model.count_params() <= 300_000
    kinds = [type(layer).__name__ for layer in model.layers]
    assert kinds.count("BatchNormalization") == 6 and kinds.count("Add") == 2  # two residual double-conv blocks
    assert "GlobalAveragePooling2D" in kinds and "Dropout" in kinds and "Flatten" not in kinds
    assert model.output_shape == (None, 10) and model.input_shape == (None, 28, 28, 1)


def test_a_short_run_streams_progress_and_writes_a_complete_card(smoke_run):
    from training import model3_cnn

    events, folder = smoke_run
    progress = [event for event in events if isinstance(event, Progress)]
    result = events[-1]
    assert isinstance(result, Result) and result.model == "model3"
    values = [event.progress for event in progress]
    assert values == sorted(values) and values[0] == 0 and values[-1] == 100 and len(set(values)) > 10
    batches = [event for event in progress if event.batch is not None and event.batch < event.batches]
    assert batches and all(event.loss is not None for event in batches)
    assert "Epoch 1/2, Batch" in batches[0].status
    # 2 epochs on ~1,300 drawn and MNIST images: well above chance (10%) when the pipeline works.
    assert result.test_accuracy > 0.6

    assert sorted(path.name for path in folder.iterdir()) == ["model3.json", "model3.keras", "model3.onnx"]
    assert (folder / "model3.onnx").stat().st_size <= MAX_ONNX_BYTES
    card = json.loads((folder / "model3.json").read_text())
    assert card["title"] == model3_cnn.TITLE and card["test_accuracy"] == pytest.approx(result.test_accuracy, abs=1e-6)
    assert card["hyperparameters"]["architecture"] == model3_cnn.ARCHITECTURE
    assert card["hyperparameters"]["parameters"] == model3_cnn.build_model().count_params()
    assert card["hyperparameters"]["augmentation"] == model3_cnn.AUGMENTATION.to_dict()
    assert 0.05 < card["temperature"] < 20 and {"mnist_test", "validation_drawn"} <= set(card["calibration"])
    assert 0 < card["verdict"]["digit_at_least"] <= 1 and card["data_seconds"] >= 0
    assert card["test_results"]["images"] == 10_000 and len(card["test_results"]["confusion_matrix"]) == 10
    assert card["personal"]["include_drawings"] is False and card["onnx_parity"]["samples"] == PARITY_SAMPLES


def test_onnx_matches_the_keras_model_as_served(smoke_run, mnist):
    import keras
    import onnxruntime as ort

    _, folder = smoke_run
    session = ort.InferenceSession(str(folder / "model3.onnx"), providers=["CPUExecutionProvider"])
    (image,), (output,) = session.get_inputs(), session.get_outputs()
    assert (image.name, image.shape[1:], output.name, output.shape[1:]) == (INPUT_NAME, [28, 28, 1], OUTPUT_NAME, [10])
    images = (mnist.x_test[:PARITY_SAMPLES].astype(np.float32) / 255.0)[..., None]
    served = session.run([OUTPUT_NAME], {INPUT_NAME: images})[0]
    # The .keras file has the recorded temperature folded in: as loaded, it predicts what is served.
    native = keras.models.load_model(folder / "model3.keras").predict(images, verbose=0)
    assert np.max(np.abs(served - native)) <= PARITY_MAX_ABS_DIFF
    assert np.array_equal(served.argmax(1), native.argmax(1))
    # Batch normalisation is folded into the convolutions: inference is plain convolutions.
    import onnx

    ops = {node.op_type for node in onnx.load(str(folder / "model3.onnx")).graph.node}
    assert "BatchNormalization" not in ops and {"Conv", "Add", "GlobalAveragePool"} <= ops


def test_closing_the_generator_stops_fit_and_writes_nothing(tensorflow, mnist, empty_exports):
    from training import model3_cnn

    run = model3_cnn.train(model3_cnn.QUICK.updated(epochs=100, limit=2000), data=mnist, exports_dir=empty_exports)
    for event in run:
        if event.batch and event.epoch == 1 and event.batch >= 3:
            break
    began = time.perf_counter()
    run.close()
    assert time.perf_counter() - began < CANCEL_WITHIN
    assert not fit_threads() and list(empty_exports.iterdir()) == []
