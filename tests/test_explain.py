"""Explanations from the served ONNX graphs (inference/explain/): exact for the linear Model 1,
gradients and layers for the CNNs (Model 3's residual blocks included), occlusion for any other
model; they follow the served version.

The numbers are checked against the served graph's own values (its logits, its probabilities),
never against a copy of the computation."""
from __future__ import annotations

import os
import shutil

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from benchmarks.browser.pen import DIGIT_STROKES, canvas_png
from inference.explain.explainer import Explainer
from inference.explain import backprop, methods
from inference.explain.explainer import EXACT, INTEGRATED_GRADIENTS, OCCLUSION, RISE
from inference.predictor import ModelUnavailableError, Predictor
from inference.preprocess import preprocess
from training.onnx_contract import INPUT_NAME, OPSET, OUTPUT_NAME
from training.registry import MODELS

EXACT_TOLERANCE = 1e-4  # the issue's: a map's sum with the bias equals the served logit to 1e-4


def drawn(digit: int) -> np.ndarray:
    return preprocess(canvas_png(DIGIT_STROKES[digit]))


@pytest.fixture(scope="module")
def exports(exports_copy, tmp_path_factory):
    if not all((exports_copy / f"{name}.onnx").is_file() for name in MODELS):
        pytest.skip(f"the shipped exports/*.onnx of {', '.join(MODELS)} are needed")
    folder = tmp_path_factory.mktemp("explain_exports")
    for path in exports_copy.glob("*"):
        if path.is_file():
            shutil.copy2(path, folder / path.name)
    return folder


@pytest.fixture(scope="module")
def predictor(exports) -> Predictor:
    return Predictor(exports)


@pytest.fixture(scope="module")
def explainer(predictor) -> Explainer:
    return Explainer.for_predictor(predictor)


def test_every_registry_model_gets_the_method_its_graph_allows(explainer, exports):
    assert explainer.names == list(MODELS)
    assert explainer.method_for("model1") == EXACT  # a linear head over 784 features
    assert explainer.method_for("model2") == INTEGRATED_GRADIENTS  # a differentiable CNN
    # Residual blocks (an Add joining two image-dependent branches), global average pooling: still a
    # path the backward pass follows, so its gradients are there; but its registry entry asks for RISE,
    # which its deletion test favours.
    assert explainer.graphs.get("model3").info.why_no_gradient is None
    assert explainer.allows("model3", INTEGRATED_GRADIENTS) and MODELS["model3"].explanation == RISE
    assert explainer.method_for("model3") == RISE
    # Without the registry's word, the graph decides.
    assert Explainer({"model3": exports / "model3.onnx"}).method_for("model3") == INTEGRATED_GRADIENTS


@pytest.mark.parametrize("digit", [0, 3, 4, 7, 9])
def test_model1_maps_sum_with_the_bias_to_the_served_logits(explainer, predictor, digit):
    x = drawn(digit)
    explanation = explainer.explain(x, "model1")
    served = explainer.graphs.get("model1")
    values = served.run(x[None])
    info = served.info
    # The served graph's own numbers: its logits z (before its softmax), its temperature, and the
    # logits of its calibrated softmax (log(p) / T: the scores up to one shift shared by all digits).
    logits = np.asarray(values[info.logits], np.float64)[0] * info.inverse_temperature
    calibrated = np.asarray(values[info.served_logits], np.float64)[0]
    top, runner_up, contrast = explanation.maps
    assert (top.digit, runner_up.digit, contrast.digit, contrast.against) == (
        explanation.top, explanation.runner_up, explanation.top, explanation.runner_up)
    for item in (top, runner_up):
        assert abs(item.values.sum() + item.bias - logits[item.digit]) <= EXACT_TOLERANCE
    assert abs(contrast.values.sum() + contrast.bias
               - (calibrated[contrast.digit] - calibrated[contrast.against])) <= EXACT_TOLERANCE
    # The map is weight x feature, term by term, over the deskewed image the head reads.
    head = info.linear_head
    features = np.asarray(values[head.features], np.float64).reshape(-1)
    np.testing.assert_allclose(top.values.reshape(-1), head.weights[:, top.digit] * features * info.inverse_temperature)
    np.testing.assert_allclose(explanation.under.reshape(-1), features)
    assert explanation.space == "features" and "deskewed 28×28 image" in explanation.space_text
    # softmax(scores) is what the predictor serves.
    served_probabilities = predictor.predict(x, "model1").probabilities
    scores = explanation.scores
    np.testing.assert_allclose(np.exp(scores - scores.max()) / np.exp(scores - scores.max()).sum(),
                               served_probabilities, atol=1e-5)
    assert explanation.top == int(np.argmax(served_probabilities))
    # The ten weight images' scores are the same scores.
    sums = (explanation.templates * explanation.under).sum(axis=(1, 2)) + explanation.template_bias
    np.testing.assert_allclose(sums, scores, atol=EXACT_TOLERANCE)


def test_model1_json_arrays_still_add_up(explainer):
    payload = explainer.to_dict(explainer.explain(drawn(7), "model1"))
    assert [item["digit"] for item in payload["maps"]] == [payload["top"], payload["runner_up"], payload["top"]]
    for item in payload["maps"]:
        values = np.asarray(item["values"])
        assert values.shape == (28, 28)
        assert abs(values.sum() + item["bias"] - item["score"]) <= EXACT_TOLERANCE
        assert item["image"].startswith("data:image/png;base64,")
    assert len(payload["templates"]) == 10 and all(t["image"].startswith("data:image/png") for t in payload["templates"])


def test_model2_integrated_gradients_add_up_to_the_score_change(explainer):
    x = drawn(7)
    explanation = explainer.explain(x, "model2")
    assert explanation.method == INTEGRATED_GRADIENTS and explanation.top == 7
    # score(drawing) - score(blank canvas); the Riemann sum of IG_STEPS points is within a few percent
    # of the largest (measured over 40 drawings at 16 steps: median 1.1%, worst 4.9%).
    changes = [item.score - item.baseline for item in explanation.maps]
    largest = max(abs(change) for change in changes)
    for item, change in zip(explanation.maps, changes):
        assert abs(item.values.sum() - change) <= 0.05 * largest, (item.digit, item.against)
    # Off the ink, integrated gradients from a blank canvas are exactly 0.
    assert np.all(explanation.maps[0].values[x[..., 0] == 0] == 0)


@pytest.mark.parametrize("name", ["model2", "model3"])
def test_cnn_gradients_match_finite_differences(explainer, name):
    """The numpy backward pass against the served graph's own response to small changes. On a
    random image (no ties in the max-pooling windows, unlike a drawing's flat background)."""
    served = explainer.graphs.get(name)
    rng = np.random.default_rng(3)
    x = rng.uniform(0.2, 0.8, (28, 28, 1)).astype(np.float32)
    direction = np.eye(10)[[3]]
    gradient = explainer.attribution(x, name, direction, "gradient_x_input")[0] / x[..., 0]
    for _ in range(3):
        v = rng.normal(size=x.shape).astype(np.float32)
        eps = 1e-3
        numeric = (served.score_batch((x + eps * v)[None])[0, 3] - served.score_batch((x - eps * v)[None])[0, 3]) / (2 * eps)
        assert abs(numeric - float((gradient * v[..., 0]).sum())) <= 0.1 * abs(numeric) + 0.05


@pytest.mark.parametrize("digit", [4, 7])
def test_residual_gradients_integrate_to_the_score_change(explainer, digit):
    """Model 3's gradients, summed over where its shortcuts join: integrated along the whole path
    from the blank canvas with fine steps they must give the served graph's own score change (the
    fundamental theorem of calculus). Dropping a branch's share at a join is far off (measured: with
    only the shortcut's share, a drawn 7's map sums to 0.29 for a score change of 11.8)."""
    served = explainer.graphs.get("model3")
    x = drawn(digit)[..., 0]
    directions = np.eye(10)[[digit, (digit + 5) % 10]]
    change = (served.score_batch(x[None, ..., None])[0] - served.score_batch(np.zeros((1, 28, 28, 1), np.float32))[0]) \
        @ directions.T
    sums = methods.integrated_gradients(served, x, directions, steps=256, spacing=1.0).sum(axis=(1, 2))
    np.testing.assert_allclose(sums, change, atol=0.015 * np.abs(change).max())


def test_a_join_sums_both_branches_gradients():
    """A two-branch graph small enough to differentiate by hand: y = relu(a*x) + b*x, score = sum(y)
    through global average pooling. The gradient at x > 0 is a + b; each branch's ReLU masks only
    its own share."""
    graph = helper.make_graph(
        nodes=[helper.make_node("Reshape", [INPUT_NAME, "nchw"], ["x"]),
               helper.make_node("Mul", ["x", "a"], ["ax"]), helper.make_node("Relu", ["ax"], ["branch"]),
               helper.make_node("Mul", ["x", "b"], ["shortcut"]),
               helper.make_node("Add", ["branch", "shortcut"], ["joined"]),
               helper.make_node("GlobalAveragePool", ["joined"], ["pooled"]),
               helper.make_node("Flatten", ["pooled"], ["flat"]),
               helper.make_node("MatMul", ["flat", "W"], ["logits"]),
               helper.make_node("Softmax", ["logits"], [OUTPUT_NAME], axis=1)],
        name="join",
        inputs=[helper.make_tensor_value_info(INPUT_NAME, TensorProto.FLOAT, ["N", 28, 28, 1])],
        outputs=[helper.make_tensor_value_info(OUTPUT_NAME, TensorProto.FLOAT, ["N", 10])],
        initializer=[numpy_helper.from_array(np.array([-1, 1, 28, 28], np.int64), "nchw"),
                     numpy_helper.from_array(np.float32(-2.0), "a"), numpy_helper.from_array(np.float32(3.0), "b"),
                     numpy_helper.from_array(np.arange(10, dtype=np.float32)[None], "W")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
    model.ir_version = 8
    from inference.explain.graph import analyse

    info = analyse(model)
    assert info.differentiable, info.why_no_gradient
    x = np.linspace(-1, 1, 784, dtype=np.float32).reshape(1, 1, 28, 28)
    values = {"x": x, "ax": -2 * x, "branch": np.maximum(-2 * x, 0), "shortcut": 3 * x,
              "joined": np.maximum(-2 * x, 0) + 3 * x, "pooled": (np.maximum(-2 * x, 0) + 3 * x).mean((2, 3), keepdims=True),
              INPUT_NAME: x.reshape(1, 28, 28, 1)}
    values["flat"] = values["pooled"].reshape(1, 1)
    upstream = np.zeros((1, 1, 10), np.float32)
    upstream[0, 0, 4] = 1.0  # d logits[4] = W[0, 4] = 4 per unit of pooled
    grads = backprop.gradients(info, values, upstream, [INPUT_NAME, "branch"])
    slope = np.where(x[0, 0] > 0, 3.0, -2.0 + 3.0) * 4.0 / 784
    np.testing.assert_allclose(grads[INPUT_NAME].reshape(28, 28), slope, rtol=1e-6)
    # The gradient asked for at a ReLU's output is the one reaching it, not masked by that ReLU.
    np.testing.assert_allclose(grads["branch"].reshape(28, 28), np.full((28, 28), 4.0 / 784), rtol=1e-6)


def test_model2_layers_are_the_served_activations_strongest_first(explainer):
    x = drawn(4)
    explanation = explainer.explain(x, "model2")
    layers = {layer.title: layer for layer in explanation.layers}
    assert list(layers) == ["conv 1", "pool 1", "conv 2", "pool 2"]
    assert layers["conv 1"].activations.shape == (32, 26, 26) and layers["conv 2"].activations.shape == (64, 11, 11)
    for layer in explanation.layers:
        assert layer.strengths == sorted(layer.strengths, reverse=True)
        assert sorted(layer.order) == list(range(layer.activations.shape[0]))
    served = explainer.graphs.get("model2")
    raw = served.run(x[None])[served.info.layers[0].value][0]
    np.testing.assert_array_equal(layers["conv 1"].activations, raw[layers["conv 1"].order])
    payload = explainer.to_dict(explanation)
    assert [layer["title"] for layer in payload["layers"]] == list(layers)
    assert all(layer["image"].startswith("data:image/png;base64,") for layer in payload["layers"])
    assert "templates" not in payload


def test_model3_layers_show_each_residual_block_where_its_shortcut_joins(explainer):
    """The convolutions that only feed a residual join are halves of a sum; what the next layer reads is
    the join's ReLU: shown as "block N", as the served graph computes it."""
    x = drawn(7)
    explanation = explainer.explain(x, "model3")
    layers = {layer.title: layer for layer in explanation.layers}
    assert list(layers) == ["conv 1", "pool 1", "conv 2", "block 1", "pool 2", "conv 3", "block 2"]
    assert [layer.kind for layer in explanation.layers].count("block") == 2
    assert layers["block 1"].activations.shape == (48, 13, 13) and layers["block 2"].activations.shape == (96, 6, 6)
    served = explainer.graphs.get("model3")
    values = served.run(x[None])
    for layer in served.info.layers:
        view = layers[layer.title]
        np.testing.assert_array_equal(view.activations, values[layer.value][0][view.order])
        assert view.activations.min() >= 0  # after a ReLU (or a max-pool of ReLUs)


def test_a_model_of_unknown_make_is_explained_by_occlusion(tmp_path):
    """A third model: no linear head, an operation the backward pass does not know (Sigmoid). Its
    score for 0 grows with the ink in the top half and for 1 with the bottom half's, so the
    occlusion map must put the evidence for 0 in the top half."""
    path = tmp_path / "model3.onnx"
    onnx.save(_halves_model(), path)
    explainer = Explainer({"model3": path})
    assert explainer.method_for("model3") == OCCLUSION
    x = np.zeros((28, 28, 1), np.float32)
    x[4:10, 8:20] = 1.0  # ink in the top half only (4x4 patches over it reach row 12 at most)
    x[18:20, 8:12] = 1.0  # and a little in the bottom half
    explanation = explainer.explain(x, "model3")
    assert (explanation.top, explanation.runner_up) == (0, 1)
    top = explanation.maps[0].values
    assert top[:14].sum() > 0 and top[:14].min() >= 0 and np.abs(top[14:]).sum() < 1e-6
    assert explanation.maps[2].values[18:20, 8:12].max() < 0  # the bottom ink argues for 1, not 0
    assert explanation.layers == [] and explanation.templates is None


def test_rise_finds_the_half_that_decides(tmp_path):
    """RISE through the served graph only: on the halves model, keeping the top half's ink makes 0 more
    likely, keeping the bottom half's makes 1 more likely; off the ink the map is 0. Deterministic (the
    masks come from a fixed seed). A preferred method the graph cannot do falls back to the graph's."""
    path = tmp_path / "halves.onnx"
    onnx.save(_halves_model(), path)
    explainer = Explainer({"halves": path}, preferred={"halves": RISE})
    assert explainer.method_for("halves") == RISE
    x = np.zeros((28, 28, 1), np.float32)
    x[4:10, 8:20] = 1.0
    x[18:22, 8:14] = 1.0
    explanation = explainer.explain(x, "halves")
    assert explanation.method == RISE and (explanation.top, explanation.runner_up) == (0, 1)
    top, runner_up, contrast = (item.values for item in explanation.maps)
    assert top[4:10, 8:20].mean() > 0 and top[18:22, 8:14].mean() < 0
    assert runner_up[18:22, 8:14].mean() > 0 and contrast[4:10, 8:20].min() > 0
    assert np.all(top[x[..., 0] == 0] == 0)
    np.testing.assert_array_equal(explainer.explain(x, "halves").maps[0].values, top)
    assert Explainer({"halves": path}, preferred={"halves": INTEGRATED_GRADIENTS}).method_for("halves") == OCCLUSION


def _halves_model() -> onnx.ModelProto:
    weights = np.zeros((784, 10), np.float32)
    weights[: 14 * 28, 0] = 0.05
    weights[14 * 28:, 1] = 0.05
    graph = helper.make_graph(
        nodes=[helper.make_node("Reshape", [INPUT_NAME, "shape"], ["flat"]),
               helper.make_node("MatMul", ["flat", "W"], ["sums"]),
               helper.make_node("Sigmoid", ["sums"], ["squashed"]),
               helper.make_node("Mul", ["squashed", "ten"], ["logits"]),
               helper.make_node("Softmax", ["logits"], [OUTPUT_NAME], axis=1)],
        name="halves",
        inputs=[helper.make_tensor_value_info(INPUT_NAME, TensorProto.FLOAT, ["N", 28, 28, 1])],
        outputs=[helper.make_tensor_value_info(OUTPUT_NAME, TensorProto.FLOAT, ["N", 10])],
        initializer=[numpy_helper.from_array(np.array([-1, 784], np.int64), "shape"),
                     numpy_helper.from_array(weights, "W"), numpy_helper.from_array(np.float32(10.0), "ten")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
    model.ir_version = 8
    return model


def test_maps_follow_the_served_version(exports, tmp_path):
    """A new export (a training, a fine-tune, a version switch: all replace the file) is explained
    from then on, and its maps add up to its own logits."""
    folder = tmp_path / "exports"
    folder.mkdir()
    shutil.copy2(exports / "model1.onnx", folder / "model1.onnx")
    explainer = Explainer({"model1": folder / "model1.onnx"})
    x = drawn(3)
    before = explainer.explain(x, "model1")
    model = onnx.load(folder / "model1.onnx")
    head = explainer.graphs.get("model1").info.linear_head
    for init in model.graph.initializer:
        if init.name == head.stored[0]:
            init.CopyFrom(numpy_helper.from_array(-numpy_helper.to_array(init), init.name))
    staged = folder / "model1.onnx.tmp"
    onnx.save(model, staged)
    os.replace(staged, folder / "model1.onnx")  # what every writer of exports does
    after = explainer.explain(x, "model1")
    assert after.maps[0].digit != before.maps[0].digit or not np.allclose(after.maps[0].values, before.maps[0].values)
    values = explainer.graphs.get("model1").run(x[None])
    logits = np.asarray(values[explainer.graphs.get("model1").info.logits], np.float64)[0]
    item = after.maps[0]
    assert abs(item.values.sum() + item.bias - logits[item.digit] * explainer.graphs.get("model1").info.inverse_temperature) <= EXACT_TOLERANCE


def test_a_missing_or_broken_export_is_unavailable_with_its_reason(tmp_path):
    explainer = Explainer({"model1": tmp_path / "model1.onnx"})
    with pytest.raises(ModelUnavailableError, match="no export yet"):
        explainer.explain(np.zeros((28, 28, 1), np.float32), "model1")
    (tmp_path / "model1.onnx").write_bytes(b"not an onnx file")
    with pytest.raises(ModelUnavailableError, match="cannot be explained"):
        explainer.explain(np.zeros((28, 28, 1), np.float32), "model1")


def test_maps_follow_a_version_switch(exports, tmp_path):
    """Serving another version names another file (training/model_versions.py): the explainer asks the
    predictor's source which file serves, as the predictor does, and explains that one."""
    from training.artifacts import ServingFiles, artifact_paths

    switched = tmp_path / "version2"
    switched.mkdir()
    for path in exports.glob("model*.*"):
        shutil.copy2(path, switched / path.name)
    model = onnx.load(switched / "model1.onnx")
    for init in model.graph.initializer:
        if init.name == "coefficient":  # Model 1's weights, another version's
            init.CopyFrom(numpy_helper.from_array(-numpy_helper.to_array(init), init.name))
    onnx.save(model, switched / "model1.onnx")

    class Versions:  # the part of ModelVersions the predictor uses: which files serve now
        shipped_dir = exports
        folder = exports

        def serving_files(self, name):
            paths = artifact_paths(name, MODELS[name].native_format, self.folder)
            return ServingFiles(None, paths, self.folder.name)

    source = Versions()
    predictor = Predictor(source)
    explainer = Explainer.for_predictor(predictor)
    x = drawn(7)
    before = explainer.explain(x, "model1")
    source.folder = switched
    after = explainer.explain(x, "model1")
    assert explainer.graphs.get("model1").signature[0] == switched / "model1.onnx"
    assert after.top == predictor.predict(x, "model1").digit != before.top
    np.testing.assert_allclose(after.templates, -before.templates)


def test_explaining_never_imports_tensorflow(exports):
    """The serving-only install explains too: onnxruntime and numpy, never TensorFlow."""
    from tests.app_server import run_python

    code = (f"import sys; from inference.predictor import Predictor; from inference.explain.explainer import Explainer; "
            f"from benchmarks.browser.pen import DIGIT_STROKES, canvas_png; from inference.preprocess import preprocess; "
            f"p = Predictor({str(exports)!r}); e = Explainer.for_predictor(p); x = preprocess(canvas_png(DIGIT_STROKES[7])); "
            f"print([e.explain(x, name).top for name in p.models]); print('tensorflow' in sys.modules)")
    result = run_python(code)
    assert result.returncode == 0, result.stderr[-2000:]
    tops, imported = result.stdout.strip().splitlines()[-2:]
    assert tops == str([7] * len(MODELS)) and imported == "False"
