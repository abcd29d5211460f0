"""The ONNX predictor: serving, missing/corrupt exports, hot reload, threads, no TensorFlow."""
from __future__ import annotations

import os
import threading

import numpy as np
import pytest

from inference.predictor import ModelUnavailableError, Predictor
from tests.app_server import run_python
from tests.fakes import tiny_onnx, tiny_predict, tiny_weights, write_tiny_model
from training.registry import MODELS



@pytest.fixture
def image() -> np.ndarray:
    return np.random.default_rng(1).random((28, 28, 1), dtype=np.float32)


@pytest.mark.parametrize("name", list(MODELS))
def test_shipped_model_classifies_mnist_digits(name, exports_copy, mnist):
    if not (exports_copy / f"{name}.onnx").is_file():
        pytest.skip(f"no shipped exports/{name}.onnx yet (train it with its CLI to ship one)")
    predictor = Predictor(exports_copy)
    images = (mnist.x_test[:300].astype(np.float32) / 255.0)[..., np.newaxis]
    digits = [predictor.predict(x, name).digit for x in images]
    accuracy = float(np.mean(np.array(digits) == mnist.y_test[:300]))
    status = predictor.model_status(name)
    assert status["available"] and status["trained"] and status["reason"] is None
    assert status["accuracy"] is not None and status["trained_at"]
    assert accuracy >= 0.85, f"{name} got {accuracy:.1%} of 300 MNIST test digits right"


def test_prediction_matches_the_model_and_reports_latency(empty_exports, image):
    write_tiny_model(empty_exports, "model1", seed=5)
    predictor = Predictor(empty_exports)
    result = predictor.predict(image, "model1")
    expected = tiny_predict(*tiny_weights(seed=5), image[np.newaxis])[0]
    assert result.model == "model1"
    assert result.digit == int(np.argmax(expected))
    assert len(result.probabilities) == 10 and all(isinstance(p, float) for p in result.probabilities)
    np.testing.assert_allclose(result.probabilities, expected, atol=1e-5)
    assert result.latency_ms > 0
    # A batch of one gives the same answer; a batch of many gives one Prediction per image.
    assert predictor.predict(image[np.newaxis], "model1").digit == result.digit
    batch = np.stack([image, 1 - image])
    assert [p.digit for p in predictor.predict_batch(batch, "model1")] == list(
        tiny_predict(*tiny_weights(seed=5), batch).argmax(1))


def test_missing_export_is_unavailable_while_the_other_serves(empty_exports, image):
    write_tiny_model(empty_exports, "model1", digit=4)
    predictor = Predictor(empty_exports)
    status = predictor.status()
    assert status["model1"]["available"] and status["model1"]["accuracy"] == 0.5
    assert status["model2"] == {**status["model2"], "trained": False, "available": False,
                                "reason": "no export yet: train it"}
    with pytest.raises(ModelUnavailableError) as raised:
        predictor.predict(image, "model2")
    assert raised.value.reason == "no export yet: train it"
    assert predictor.predict(image, "model1").digit == 4
    assert set(predictor.predict_all(image)) == {"model1"}


def test_corrupt_export_is_unavailable_with_the_reason(empty_exports, image):
    write_tiny_model(empty_exports, "model1", digit=2)
    (empty_exports / "model2.onnx").write_bytes(b"\x08\x07not really an onnx model")
    predictor = Predictor(empty_exports)
    reason = predictor.model_status("model2")["reason"]
    assert "model2.onnx is not a valid ONNX model" in reason and "retrain" in reason
    assert predictor.model_status("model2")["trained"] and not predictor.model_status("model2")["available"]
    with pytest.raises(ModelUnavailableError, match="not a valid ONNX model"):
        predictor.predict(image, "model2")
    assert predictor.predict(image, "model1").digit == 2


def test_export_breaking_the_contract_is_unavailable(empty_exports):
    model = tiny_onnx(*tiny_weights(digit=1), input_name="pixels")
    (empty_exports / "model2.onnx").write_bytes(model.SerializeToString())
    reason = Predictor(empty_exports).model_status("model2")["reason"]
    assert "does not follow the ONNX contract" in reason and "'image'" in reason and "pixels" in reason


def test_hot_reload_serves_a_new_export_without_restart(empty_exports, image):
    write_tiny_model(empty_exports, "model1", digit=3, accuracy=0.7)
    predictor = Predictor(empty_exports)
    assert predictor.predict(image, "model1").digit == 3
    assert predictor.model_status("model2")["available"] is False

    write_tiny_model(empty_exports, "model1", digit=7, accuracy=0.9)  # atomic replace, like a trainer
    write_tiny_model(empty_exports, "model2", digit=9)  # a model that did not exist at start-up
    assert predictor.predict(image, "model1").digit == 7
    assert predictor.model_status("model1")["accuracy"] == 0.9
    assert predictor.predict(image, "model2").digit == 9

    (empty_exports / "model2.onnx").unlink()
    assert predictor.model_status("model2")["reason"] == "no export yet: train it"


def test_unchanged_file_is_not_reread_until_reload(empty_exports, image):
    path = empty_exports / "model1.onnx"
    path.write_bytes(tiny_onnx(*tiny_weights(digit=3)).SerializeToString())
    predictor = Predictor(empty_exports)
    assert predictor.predict(image, "model1").digit == 3
    # Rewrite in place keeping size, inode and mtime: the per-call stat check cannot see it,
    # which shows a request costs a stat, not a file read...
    stat = path.stat()
    new_bytes = tiny_onnx(*tiny_weights(digit=6)).SerializeToString()
    assert len(new_bytes) == stat.st_size
    with open(path, "r+b") as handle:
        handle.write(new_bytes)
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert predictor.predict(image, "model1").digit == 3
    # ...while an explicit reload (what the job manager calls after training) always re-reads.
    predictor.reload("model1")
    assert predictor.predict(image, "model1").digit == 6


def test_concurrent_predictions_during_reloads(empty_exports, image):
    write_tiny_model(empty_exports, "model1", digit=3)
    write_tiny_model(empty_exports, "model2", seed=2)
    predictor = Predictor(empty_exports)
    expected_model2 = predictor.predict(image, "model2").digit
    errors, answers = [], []
    stop = threading.Event()

    def client():
        try:
            while not stop.is_set():
                model1 = predictor.predict(image, "model1")
                model2 = predictor.predict(image, "model2")
                answers.append((model1.digit, model2.digit))
                assert abs(sum(model1.probabilities) - 1) < 1e-4
        except Exception as error:  # pragma: no cover - reported below
            errors.append(error)

    threads = [threading.Thread(target=client) for _ in range(4)]
    for thread in threads:
        thread.start()
    for round_number in range(6):  # swap model1 back and forth while the clients run
        write_tiny_model(empty_exports, "model1", digit=7 if round_number % 2 == 0 else 3)
        if round_number % 3 == 0:
            predictor.reload("model1")  # explicit reloads race with the per-call hot reload
    stop.set()
    for thread in threads:
        thread.join(10)
    assert not errors
    assert answers and {a for a, _ in answers} <= {3, 7} and {b for _, b in answers} == {expected_model2}
    assert predictor.predict(image, "model1").digit == 3  # the last write wins


def test_bad_inputs_are_refused_clearly(empty_exports):
    write_tiny_model(empty_exports, "model1", digit=1)
    predictor = Predictor(empty_exports)
    with pytest.raises(ValueError, match=r"\[28, 28, 1\]"):
        predictor.predict(np.zeros((28, 28), np.float32), "model1")
    with pytest.raises(KeyError, match=", ".join(MODELS)):
        predictor.predict(np.zeros((28, 28, 1), np.float32), "model9")
    with pytest.raises(ValueError, match="predict_batch"):
        predictor.predict(np.zeros((2, 28, 28, 1), np.float32), "model1")


def test_predictor_never_imports_tensorflow(empty_exports):
    write_tiny_model(empty_exports, "model1", digit=5)
    code = (
        "import sys, numpy as np\n"
        "from inference.predictor import Predictor\n"
        f"p = Predictor({str(empty_exports)!r})\n"
        "assert p.predict(np.zeros((28, 28, 1), np.float32), 'model1').digit == 5\n"
        "p.status(); p.reload()\n"
        "import training.jobs\n"
        "print('tensorflow' in sys.modules, 'keras' in sys.modules)\n"
    )
    out = run_python(code, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["False", "False"]


def test_model_inputs_become_the_same_pixels_wherever_they_are_kept():
    """training/onnx_contract.to_pixels: the one float -> uint8 conversion (store, page image, renderers)."""
    from training.onnx_contract import to_pixels

    x = np.linspace(0.0, 1.0, 784, dtype=np.float32).reshape(28, 28, 1)
    pixels = to_pixels(x)
    assert pixels.dtype == np.uint8 and pixels.shape == (28, 28)
    assert pixels[0, 0] == 0 and pixels[-1, -1] == 255 and np.all(np.diff(pixels.ravel().astype(int)) >= 0)
    assert np.array_equal(to_pixels(pixels), pixels)  # already pixels: unchanged
    assert to_pixels(np.full((28, 28), 1.7))[0, 0] == 255 and to_pixels(np.full((28, 28), -0.3))[0, 0] == 0
    with pytest.raises(ValueError, match="28x28"):
        to_pixels(np.zeros((27, 28)))
