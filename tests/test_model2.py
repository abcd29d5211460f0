"""Model 2 (Keras CNN): the generator trainer, its files, the ONNX contract, cancel and errors.

The trainer tests train tiny CNNs on real MNIST (MNIST_DIR) and need TensorFlow;
they are marked slow (the file takes about half a minute, most of it importing
TensorFlow and the QUICK run with its ONNX export).
"""
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

CANCEL_WITHIN = 10.0  # seconds: a cancelled fit stops at its next batch (~0.05 s); generous for a busy machine


@pytest.fixture(scope="module")
def tensorflow():
    return pytest.importorskip("tensorflow", reason="TensorFlow is not installed, so Model 2 cannot be trained")


@pytest.fixture(scope="module")
def quick_run(tensorflow, mnist, tmp_path_factory):
    """One QUICK training into a fresh exports folder: (events, folder)."""
    from training import model2_cnn

    folder = tmp_path_factory.mktemp("model2_exports")
    events = list(model2_cnn.train(model2_cnn.QUICK, data=mnist, exports_dir=folder))
    return events, folder


def fit_threads() -> list[threading.Thread]:
    return [thread for thread in threading.enumerate() if thread.name == "model2-fit"]


def snapshot(folder) -> dict[str, bytes]:
    return {path.name: path.read_bytes() for path in sorted(folder.iterdir())}


def test_importing_the_module_does_not_import_tensorflow():
    code = ("import sys, training.model2_cnn, training.keras_bridge, training.augment; "
            "print('tensorflow' in sys.modules, 'keras' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=str(Path(__file__).resolve().parent.parent))
    assert out.stdout.split() == ["False", "False"]


def test_bad_options_are_refused_before_any_work():
    from training import model2_cnn

    with pytest.raises(ValueError, match="unknown option"):
        next(model2_cnn.train({"epochz": 3}))
    with pytest.raises(ValueError, match="epochs must be between"):
        next(model2_cnn.train({"epochs": 0}))


@pytest.mark.slow
def test_quick_training_streams_progress_and_writes_all_files(quick_run):
    from training import model2_cnn

    events, folder = quick_run
    progress = [event for event in events if isinstance(event, Progress)]
    result = events[-1]
    assert isinstance(result, Result) and not any(isinstance(event, Result) for event in events[:-1])
    values = [event.progress for event in progress]
    assert values == sorted(values) and values[0] == 0 and values[-1] == 100
    assert len(set(values)) > 10  # per-batch events, not only phase changes

    options = model2_cnn.QUICK
    batch_events = [event for event in progress if event.batch is not None and event.batch < event.batches]
    epoch_ends = [event for event in progress if event.val_accuracy is not None and event.epoch is not None
                  and event.batch == event.batches]
    assert batch_events and all(event.loss is not None and event.accuracy is not None for event in batch_events)
    assert [event.epoch for event in epoch_ends][:options.epochs] == list(range(1, options.epochs + 1))
    assert all(0 <= event.val_accuracy <= 1 for event in epoch_ends)
    assert "Epoch 1/2, Batch" in batch_events[0].status

    assert result.model == "model2" and result.train_seconds > 0
    assert result.test_accuracy > 0.85  # 2 epochs on 2,700 images; a broken pipeline scores ~0.1
    for kind, name in (("native", "model2.keras"), ("onnx", "model2.onnx"), ("metadata", "model2.json")):
        assert result.paths[kind] == str(folder / name) and (folder / name).stat().st_size > 0
    assert sorted(path.name for path in folder.iterdir()) == ["model2.json", "model2.keras", "model2.onnx"]

    metadata = json.loads((folder / "model2.json").read_text())
    assert metadata["test_accuracy"] == pytest.approx(result.test_accuracy, abs=1e-6)
    assert metadata["options"] == options.to_dict()
    counts = metadata["data"]["canvas"]["counts"]
    assert metadata["data"]["sha256"] and counts["train"]["mnist"] + counts["val"]["mnist"] == options.limit
    assert counts["train"]["redrawn"] >= 0.99 * counts["train"]["mnist"]  # every training digit, also redrawn
    assert metadata["data"]["train_images"] == sum(counts["train"].values())
    assert 0.05 < metadata["temperature"] < 20 and {"mnist_test", "validation_drawn"} <= set(metadata["calibration"])
    assert 0 < metadata["verdict"]["digit_at_least"] <= 1 and 0 < metadata["verdict"]["pair_at_least"] <= 1
    assert metadata["hyperparameters"]["augmentation"] == model2_cnn.AUGMENTATION.to_dict()
    assert len(metadata["history"]) == options.epochs
    assert metadata["onnx_parity"]["samples"] == PARITY_SAMPLES


@pytest.mark.slow
def test_onnx_export_follows_the_contract_and_matches_the_keras_model(quick_run, mnist):
    import keras
    import onnxruntime as ort

    _, folder = quick_run
    session = ort.InferenceSession(str(folder / "model2.onnx"), providers=["CPUExecutionProvider"])
    (image,), (probabilities,) = session.get_inputs(), session.get_outputs()
    assert (image.name, image.type, image.shape[1:]) == (INPUT_NAME, "tensor(float)", [28, 28, 1])
    assert (probabilities.name, probabilities.type, probabilities.shape[1:]) == (OUTPUT_NAME, "tensor(float)", [10])
    assert isinstance(image.shape[0], str)  # any batch size

    images = (mnist.x_test.astype(np.float32) / 255.0)[..., None]
    onnx_out = session.run([OUTPUT_NAME], {INPUT_NAME: images})[0]
    assert onnx_out.shape == (len(images), 10) and onnx_out.dtype == np.float32
    np.testing.assert_allclose(onnx_out.sum(axis=1), 1.0, atol=1e-5)

    native = keras.models.load_model(folder / "model2.keras")
    # The .keras file has the recorded temperature folded in: as loaded, it predicts what is served.
    native_out = native.predict(images[:PARITY_SAMPLES], batch_size=500, verbose=0)
    assert np.max(np.abs(onnx_out[:PARITY_SAMPLES] - native_out)) <= PARITY_MAX_ABS_DIFF
    assert np.array_equal(onnx_out[:PARITY_SAMPLES].argmax(1), native_out.argmax(1))

    # The metadata describes the files as written: what the ONNX file scores on the test set.
    metadata = json.loads((folder / "model2.json").read_text())
    assert metadata["onnx_test_accuracy"] == pytest.approx(float(np.mean(onnx_out.argmax(1) == mnist.y_test)),
                                                           abs=1e-6)
    assert metadata["onnx_parity"]["max_abs_diff"] <= PARITY_MAX_ABS_DIFF

    # The Models tab's figures: the confusion matrix and confident mistakes of this ONNX file, and
    # the filters it reads from the file are the Keras model's first convolution kernels, unflipped.
    from inference.learned import learned_from_bytes
    from tests.card_checks import check_recorded_test_results

    check_recorded_test_results(folder, "model2", mnist, onnx_out)
    learned = learned_from_bytes((folder / "model2.onnx").read_bytes())
    first_conv = next(layer for layer in native.layers if isinstance(layer, keras.layers.Conv2D))
    kernel = first_conv.get_weights()[0]  # Keras: [height, width, in channels, filters]
    np.testing.assert_allclose(learned.first_filters, np.transpose(kernel[:, :, 0, :], (2, 0, 1)), rtol=1e-6)
    assert learned.digit_weights is None


@pytest.mark.slow
def test_closing_the_generator_stops_fit_promptly_and_keeps_the_previous_model(tensorflow, mnist, empty_exports):
    from training import model2_cnn

    previous = {"model2.keras": b"previous keras", "model2.onnx": b"previous onnx", "model2.json": b'{"old": 1}'}
    for name, content in previous.items():
        (empty_exports / name).write_bytes(content)
    # Long enough (~100 epochs of batches) that only a working cancel ends it within CANCEL_WITHIN.
    options = model2_cnn.QUICK.updated(epochs=100, limit=6000)
    run = model2_cnn.train(options, data=mnist, exports_dir=empty_exports)
    for event in run:
        if event.epoch == 1 and event.batch is not None and event.batch < event.batches:
            break  # fit is running in its worker thread now
    else:
        pytest.fail("no batch progress event before the run ended")
    assert fit_threads(), "fit should be running in its worker thread"

    began = time.perf_counter()
    run.close()
    assert time.perf_counter() - began < CANCEL_WITHIN
    assert not fit_threads()  # close() waits for the worker: no training left running
    assert snapshot(empty_exports) == previous  # byte-identical, and no temporary files left behind


@pytest.mark.slow
def test_an_exception_inside_fit_reaches_the_caller_and_writes_nothing(tensorflow, mnist, empty_exports,
                                                                       monkeypatch):
    from training import model2_cnn

    tf = tensorflow

    def failing_targets(labels):  # a data op that fails only when fit pulls a batch
        check = tf.debugging.assert_less(labels, tf.cast(-100, labels.dtype), message="bad label in a batch")
        with tf.control_dependencies([check]):
            return tf.one_hot(tf.maximum(labels, 0), 10)

    monkeypatch.setattr(model2_cnn, "_tf_targets", failing_targets)
    run = model2_cnn.train(model2_cnn.QUICK.updated(limit=1000, epochs=1), data=mnist, exports_dir=empty_exports)
    seen = []
    with pytest.raises(tensorflow.errors.InvalidArgumentError, match="label"):
        for event in run:
            seen.append(event)
    assert seen and seen[-1].progress < 100  # it failed in training, not after
    assert not fit_threads()
    assert list(empty_exports.iterdir()) == []
