"""Temperature scaling and its error measure (training/calibration.py), on samples and on the shipped models."""
from __future__ import annotations

import json

import numpy as np
import pytest

from training import calibration


def softmax(logits: np.ndarray) -> np.ndarray:
    exp = np.exp(logits - logits.max(axis=1, keepdims=True))
    return exp / exp.sum(axis=1, keepdims=True)


def sample(count: int = 20000, sharpen: float = 1.0, seed: int = 0):
    """(a model's probabilities, labels drawn from the TRUE probabilities): sharpen > 1 is over-confident."""
    rng = np.random.default_rng(seed)
    logits = rng.normal(0, 3, (count, 10))
    true = softmax(logits)
    labels = np.array([rng.choice(10, p=row) for row in true])
    return softmax(logits * sharpen), labels


def test_ece_is_near_zero_for_calibrated_and_large_for_over_confident_probabilities():
    calibrated, labels = sample()
    over, _ = sample(sharpen=3.0)
    assert calibration.expected_calibration_error(calibrated, labels) < 0.015
    assert calibration.expected_calibration_error(over, labels) > 0.08


def test_ece_of_a_hand_made_example():
    # Two bins: confidence 0.9 right 1 of 2 (gap 0.4), confidence 0.6 right 2 of 2 (gap 0.4) -> 0.4.
    p = np.full((4, 10), 0.0)
    p[0, 0] = p[1, 0] = 0.9
    p[2, 1] = p[3, 1] = 0.6
    p[:, 9] = 1 - p.sum(1)
    assert calibration.expected_calibration_error(p, np.array([0, 5, 1, 1])) == pytest.approx(0.4)


def test_fitted_temperature_undoes_over_confidence():
    over, labels = sample(sharpen=2.5, seed=1)
    temperature = calibration.fit_temperature(over, labels)
    assert temperature == pytest.approx(2.5, rel=0.1)
    tempered = calibration.temper(over, temperature)
    assert np.array_equal(tempered.argmax(1), over.argmax(1))  # calibration never changes the answer
    assert calibration.expected_calibration_error(tempered, labels) < 0.02


def test_the_onnx_temperature_nodes_compute_temper():
    import onnx
    from onnx import TensorProto, helper

    from training.onnx_contract import run_onnx

    graph = helper.make_graph([helper.make_node("Identity", ["x"], ["probabilities"])], "identity",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, 10])],
                              [helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, [None, 10])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    output = calibration.add_temperature(model, "probabilities", 1.7)
    onnx.checker.check_model(model)
    assert [value.name for value in model.graph.output] == [output]
    probabilities, _ = sample(50)
    probabilities[0] = np.eye(10)[3]  # exact zeros must not give NaN (the log is floored)
    served = run_onnx(model.SerializeToString(), probabilities.astype(np.float32))
    np.testing.assert_allclose(served, calibration.temper(probabilities, 1.7), atol=1e-5)


# ECE on the first 3,000 MNIST test images, served probabilities. Both models meet the 1.5% target
# on all 10,000 (benchmarks/reading/drawn.py checks it: 1.37% and 0.48%); on this sample Model 1 measures
# 2.1% (its errors are denser in it: 6.9% against 5.1% overall) and sampling noise is ~0.5 point.
MAX_SAMPLE_ECE = {"model1": 0.025, "model2": 0.02, "model3": 0.02}
ECE_TARGET = 0.015


@pytest.mark.parametrize("name", ["model1", "model2", "model3"])
def test_shipped_models_are_calibrated_on_a_sample_of_mnist_test(name, mnist):
    import onnx
    from onnx import numpy_helper

    from training.artifacts import DEFAULT_EXPORTS_DIR
    from training.onnx_contract import run_onnx

    metadata = json.loads((DEFAULT_EXPORTS_DIR / f"{name}.json").read_text())
    drawn = metadata["calibration"]["drawn_test"]
    # The temperature never leaves the drawn digits worse calibrated than the target, nor worse than it found them.
    assert drawn["after"] <= max(drawn["before"], ECE_TARGET)
    images = (mnist.x_test[:3000].astype(np.float32) / 255.0)[..., None]
    served = run_onnx((DEFAULT_EXPORTS_DIR / f"{name}.onnx").read_bytes(), images)
    ece = calibration.expected_calibration_error(served, mnist.y_test[:3000])
    assert ece <= MAX_SAMPLE_ECE[name]
    # The served probabilities are the tempered ones: the graph ends in the metadata's temperature.
    graph = onnx.load_from_string((DEFAULT_EXPORTS_DIR / f"{name}.onnx").read_bytes()).graph
    scale = {init.name: numpy_helper.to_array(init) for init in graph.initializer}["calibration_inverse_temperature"]
    assert float(scale) == pytest.approx(1.0 / metadata["temperature"], rel=1e-5)
    raw = calibration.temper(served, 1.0 / metadata["temperature"])
    np.testing.assert_array_equal(raw.argmax(1), served.argmax(1))
