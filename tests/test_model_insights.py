"""What each model has learned, in the Models tab (issue 19): the test-set figures kept in the
metadata (training/evaluation.py), the weights read from the served ONNX graph
(inference/learned.py), the backfill of older exports (training/backfill_card.py), and the
tab's figures for the served version (ui/model_insights.py, ui/learned_view.py), with and
without MNIST at hand. In-process; tests/test_models_tab_browser.py renders the tab in Chromium."""
from __future__ import annotations

import base64
import hashlib
import io
import json
import shutil

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from PIL import Image
from onnx import TensorProto, helper, numpy_helper

from inference.learned import learned_from_bytes, learned_from_model
from inference.predictor import ModelUnavailableError, Predictor
from tests.fakes import tiny_onnx, tiny_predict, tiny_weights, write_tiny_model
from training import backfill_card, evaluation
from training.artifacts import ExportFolder
from training.export import save_model
from training.model_versions import ModelVersions
from training.onnx_contract import INPUT_NAME, OPSET, OUTPUT_NAME, to_pixels
from training.registry import MODELS, ModelSpec
from ui import learned_plots, learned_view
from ui.model_insights import MEASURED_NOW, RECORDED, ModelInsights


@pytest.fixture
def no_mnist(monkeypatch, tmp_path):
    """A machine without MNIST: no MNIST_DIR, an empty cache, no download."""
    monkeypatch.delenv("MNIST_DIR", raising=False)
    monkeypatch.setenv("MNIST_CACHE", str(tmp_path / "empty-mnist-cache"))
    monkeypatch.setenv("MNIST_DOWNLOAD", "0")


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def drop_recorded_results(folder, name: str) -> None:
    """Make <name>.json look like an export from before the figures were recorded."""
    path = folder / f"{name}.json"
    metadata = json.loads(path.read_text())
    metadata.pop(evaluation.KEY)
    path.write_text(json.dumps(metadata))


def plotted(figure) -> np.ndarray:
    """The array the figure's (first) axes shows (imshow/matshow data)."""
    return np.asarray(figure.axes[0].images[0].get_array())


def tile(figure, index: int, shape: tuple[int, int], columns: int, pad: int = learned_plots.PAD) -> np.ndarray:
    """Tile `index` of a figure drawn by ui/learned_plots.py."""
    top, left = learned_plots.tile_origin(index, shape, columns, pad)
    return plotted(figure)[top:top + shape[0], left:left + shape[1]]


# -- training/evaluation.py -------------------------------------------------------------------------

def test_evaluate_counts_every_answer_and_keeps_the_most_confident_mistakes():
    weights, bias = tiny_weights(seed=3)
    rng = np.random.default_rng(1)
    images = rng.random((300, 28, 28, 1), dtype=np.float32)
    labels = rng.integers(0, 10, 300)
    onnx_bytes = tiny_onnx(weights, bias).SerializeToString()

    results = evaluation.evaluate(onnx_bytes, images, labels, mistakes=5)
    probabilities = tiny_predict(weights, bias, images)
    read = probabilities.argmax(1)
    expected = np.zeros((10, 10), np.int64)
    np.add.at(expected, (labels, read), 1)
    assert results["confusion_matrix"] == expected.tolist() and results["images"] == 300
    assert results["accuracy"] == pytest.approx(np.mean(read == labels), abs=1e-6)
    assert results["onnx_sha256"] == sha(onnx_bytes)

    confidence = probabilities.max(1)
    wrong = np.flatnonzero(read != labels)
    top = wrong[np.argsort(-confidence[wrong], kind="stable")][:5]
    assert [m["index"] for m in results["confident_mistakes"]] == top.tolist()
    for mistake in results["confident_mistakes"]:
        index = mistake["index"]
        assert (mistake["label"], mistake["read"]) == (labels[index], read[index])
        assert mistake["confidence"] == pytest.approx(confidence[index], abs=1e-4)
        assert mistake["label_probability"] == pytest.approx(probabilities[index, labels[index]], abs=1e-4)
        assert np.array_equal(evaluation.decode_png(mistake["png"]), to_pixels(images[index]))
    assert evaluation.describes(results, sha(onnx_bytes)) and not evaluation.describes(results, sha(b"other"))


def test_evaluate_takes_mnist_as_it_is_and_refuses_mismatched_labels():
    weights, bias = tiny_weights(digit=7)
    onnx_bytes = tiny_onnx(weights, bias).SerializeToString()
    pixels = np.random.default_rng(0).integers(0, 256, (20, 28, 28), dtype=np.uint8)
    results = evaluation.evaluate(onnx_bytes, pixels, np.full(20, 3))
    assert np.asarray(results["confusion_matrix"])[3, 7] == 20  # always answers 7
    assert np.array_equal(evaluation.decode_png(results["confident_mistakes"][0]["png"]),
                          pixels[results["confident_mistakes"][0]["index"]])
    with pytest.raises(ValueError, match="one label per image"):
        evaluation.evaluate(onnx_bytes, pixels, np.zeros(19))


def png_base64(width: int, height: int, format: str = "PNG") -> str:
    buffer = io.BytesIO()
    Image.new("L", (width, height)).save(buffer, format=format)
    return base64.b64encode(buffer.getvalue()).decode()


@pytest.mark.parametrize("damaged", ["", "not base64!", "aGVsbG8=", png_base64(29, 28), png_base64(28, 28, "GIF")])
def test_a_damaged_mistake_image_is_refused(damaged):
    with pytest.raises(ValueError, match="not an image of a mistake"):
        evaluation.decode_png(damaged)


def test_the_common_export_path_records_the_figures_of_the_written_file(empty_exports):
    paths = write_tiny_model(empty_exports, "model1", seed=2)
    onnx_bytes = (empty_exports / "model1.onnx").read_bytes()
    metadata = json.loads((empty_exports / "model1.json").read_text())
    assert evaluation.describes(metadata[evaluation.KEY], sha(onnx_bytes))
    assert sum(map(sum, metadata[evaluation.KEY]["confusion_matrix"])) == 16  # write_tiny_model's test set
    assert set(paths) == {"native", "onnx", "metadata"}


# -- inference/learned.py ---------------------------------------------------------------------------

def test_linear_digit_weights_are_read_as_ten_images():
    weights, bias = tiny_weights(seed=5)
    learned = learned_from_bytes(tiny_onnx(weights, bias).SerializeToString())
    assert learned.digit_weights.shape == (10, 28, 28) and learned.first_filters is None
    for digit in range(10):  # the weight of pixel (row, column) for digit c is W[row * 28 + column, c]
        assert np.array_equal(learned.digit_weights[digit], weights[:, digit].reshape(28, 28))


def test_a_gemm_with_transposed_weights_reads_the_same():
    weights, bias = tiny_weights(seed=6)
    graph = helper.make_graph(
        [helper.make_node("Reshape", [INPUT_NAME, "shape"], ["flat"]),
         helper.make_node("Gemm", ["flat", "Wt", "b"], ["logits"], transB=1),
         helper.make_node("Softmax", ["logits"], [OUTPUT_NAME], axis=1)],
        "gemm", [helper.make_tensor_value_info(INPUT_NAME, TensorProto.FLOAT, ["N", 28, 28, 1])],
        [helper.make_tensor_value_info(OUTPUT_NAME, TensorProto.FLOAT, ["N", 10])],
        [numpy_helper.from_array(np.array([-1, 784], np.int64), "shape"),
         numpy_helper.from_array(np.ascontiguousarray(weights.T), "Wt"), numpy_helper.from_array(bias, "b")])
    learned = learned_from_model(helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)]))
    assert np.array_equal(learned.digit_weights, weights.T.reshape(10, 28, 28))


def conv_model(kernels: np.ndarray) -> onnx.ModelProto:
    """image -> NCHW (Transpose) -> Conv(kernels) -> Relu -> Flatten -> Dense 10 -> Softmax."""
    count = len(kernels)
    rng = np.random.default_rng(0)
    features = count * 26 * 26
    nodes = [helper.make_node("Transpose", [INPUT_NAME], ["nchw"], perm=[0, 3, 1, 2]),
             helper.make_node("Conv", ["nchw", "K", "kb"], ["conv"]),
             helper.make_node("Relu", ["conv"], ["relu"]),
             helper.make_node("Flatten", ["relu"], ["flat"]),
             helper.make_node("MatMul", ["flat", "D"], ["logits"]),
             helper.make_node("Softmax", ["logits"], [OUTPUT_NAME], axis=1)]
    inits = [numpy_helper.from_array(kernels.astype(np.float32), "K"),
             numpy_helper.from_array(np.zeros(count, np.float32), "kb"),
             numpy_helper.from_array(rng.normal(0, 0.01, (features, 10)).astype(np.float32), "D")]
    graph = helper.make_graph(nodes, "conv", [helper.make_tensor_value_info(INPUT_NAME, TensorProto.FLOAT,
                                                                             ["N", 28, 28, 1])],
                              [helper.make_tensor_value_info(OUTPUT_NAME, TensorProto.FLOAT, ["N", 10])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
    model.ir_version = 8
    return model


def mlp_model(hidden: int = 32, seed: int = 0) -> onnx.ModelProto:
    """A model with nothing that reads as an image: 784 -> hidden -> 10."""
    rng = np.random.default_rng(seed)
    graph = helper.make_graph(
        [helper.make_node("Reshape", [INPUT_NAME, "shape"], ["flat"]),
         helper.make_node("MatMul", ["flat", "W1"], ["h"]), helper.make_node("Relu", ["h"], ["r"]),
         helper.make_node("MatMul", ["r", "W2"], ["logits"]),
         helper.make_node("Softmax", ["logits"], [OUTPUT_NAME], axis=1)],
        "mlp", [helper.make_tensor_value_info(INPUT_NAME, TensorProto.FLOAT, ["N", 28, 28, 1])],
        [helper.make_tensor_value_info(OUTPUT_NAME, TensorProto.FLOAT, ["N", 10])],
        [numpy_helper.from_array(np.array([-1, 784], np.int64), "shape"),
         numpy_helper.from_array(rng.normal(0, 0.05, (784, hidden)).astype(np.float32), "W1"),
         numpy_helper.from_array(rng.normal(0, 0.1, (hidden, 10)).astype(np.float32), "W2")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
    model.ir_version = 8
    return model


def test_first_layer_filters_are_found_behind_a_layout_change_and_nothing_in_an_mlp():
    kernels = np.random.default_rng(1).normal(size=(4, 1, 3, 3))
    learned = learned_from_model(conv_model(kernels))
    assert learned.digit_weights is None and np.allclose(learned.first_filters, kernels[:, 0])
    assert not learned_from_model(mlp_model()).anything
    with pytest.raises(ValueError, match="not an ONNX model"):
        learned_from_bytes(b"\x00garbage")


def test_the_served_cnn_filters_are_what_its_first_layer_computes(exports_copy):
    """Orientation check on the shipped Model 2 without TensorFlow: the served graph's first
    convolution, read out of onnxruntime, equals each filter slid over the image (unflipped)."""
    from scipy.signal import correlate2d

    model = onnx.load(str(exports_copy / "model2.onnx"))
    filters = learned_from_model(model).first_filters
    assert filters.shape == (32, 3, 3)
    conv = next(node for node in model.graph.node if node.op_type == "Conv")
    bias = next(numpy_helper.to_array(i) for i in model.graph.initializer if i.name == conv.input[2])
    model.graph.output.append(helper.make_tensor_value_info(conv.output[0], TensorProto.FLOAT, None))
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    image = np.zeros((28, 28), np.float32)
    image[6:22, 13:15] = 1.0  # a vertical bar
    image[6:8, 8:20] = 1.0  # and a bar across its top: a "T" with no symmetry the other way up
    maps = session.run([conv.output[0]], {INPUT_NAME: image[None, :, :, None]})[0][0]
    for index in range(32):
        expected = correlate2d(image, filters[index], mode="valid") + bias[index]
        np.testing.assert_allclose(maps[index], expected, atol=1e-4)


# -- the tab: ui/model_insights.py and ui/learned_view.py ---------------------------------------------

def registry_models_with_exports(folder) -> list[str]:
    return [name for name in MODELS if (folder / f"{name}.onnx").is_file()]


def test_every_model_card_is_complete_without_mnist(exports_copy, no_mnist):
    insights = ModelInsights(Predictor(exports_copy))
    names = registry_models_with_exports(exports_copy)
    assert names, "the session's exports hold no model"
    for name in names:
        recorded = json.loads((exports_copy / f"{name}.json").read_text())[evaluation.KEY]
        insight = insights.get(name)
        assert insight.results == recorded and insight.results_from == RECORDED and insight.missing is None
        shown = learned_view.figures(MODELS[name], insights)
        assert "not available" not in shown.confusion_note and "recorded with the model" in shown.confusion_note
        assert np.array_equal(plotted(shown.confusion), np.asarray(recorded["confusion_matrix"]))
        assert shown.mistakes is not None and len(shown.mistakes_note.splitlines()) == 1 + len(
            recorded["confident_mistakes"])
        first = recorded["confident_mistakes"][0]
        assert np.array_equal(tile(shown.mistakes, 0, (28, 28), 4, learned_plots.MISTAKES_PAD), evaluation.decode_png(first["png"]))
        assert f"a **{first['label']}** read as **{first['read']}**" in shown.mistakes_note
        if insight.learned.anything:
            assert shown.learned is not None and "read from the served ONNX file" in shown.learned_note
        else:
            assert shown.learned is None and "no weights that read as images" in shown.learned_note


def test_shipped_model_cards_show_weight_images_and_filters(exports_copy, no_mnist):
    insights = ModelInsights(Predictor(exports_copy))
    model1 = learned_view.figures(MODELS["model1"], insights)
    weights = learned_from_bytes((exports_copy / "model1.onnx").read_bytes()).digit_weights
    assert [text.get_text() for text in model1.learned.axes[0].texts] == [str(digit) for digit in range(10)]
    for digit in range(10):
        assert np.array_equal(tile(model1.learned, digit, (28, 28), 5, learned_plots.WEIGHTS_PAD), weights[digit])
    assert "deskewed 28×28 image" in model1.learned_note and "argues for" in model1.learned_note
    model2 = learned_view.figures(MODELS["model2"], insights)
    assert "32 3×3 filters" in model2.learned_note and "want ink" in model2.learned_note
    filters = learned_from_bytes((exports_copy / "model2.onnx").read_bytes()).first_filters
    assert all(np.array_equal(tile(model2.learned, k, (3, 3), 8), filters[k]) for k in range(32))
    colour_bar = model2.learned.axes[-1]
    assert [t.get_text().split("\n")[0] for t in colour_bar.get_yticklabels()] == ["wants blank", "no say",
                                                                                    "wants ink"]


def test_without_records_or_mnist_the_card_says_how_to_get_them(empty_exports, no_mnist):
    write_tiny_model(empty_exports, "model1", seed=1)
    drop_recorded_results(empty_exports, "model1")
    shown = learned_view.figures(MODELS["model1"], ModelInsights(Predictor(empty_exports)))
    assert shown.confusion is None and shown.mistakes is None
    assert "python -m training.backfill_card" in shown.confusion_note and "MNIST_DIR" in shown.confusion_note
    assert shown.learned is not None  # the weights need no data: they are in the ONNX file


def test_without_records_the_figures_are_measured_on_local_mnist(empty_exports, mnist_dir, monkeypatch):
    monkeypatch.setenv("MNIST_DIR", str(mnist_dir))
    write_tiny_model(empty_exports, "model1", digit=7)
    drop_recorded_results(empty_exports, "model1")
    insights = ModelInsights(Predictor(empty_exports))
    insight = insights.get("model1")
    assert insight.results_from == MEASURED_NOW and insight.results["images"] == 10_000
    assert np.asarray(insight.results["confusion_matrix"])[:, 7].sum() == 10_000  # always answers 7
    assert insights.get("model1") is insight  # same files: nothing measured again
    assert "measured now" in learned_view.figures(MODELS["model1"], insights).confusion_note


def test_a_model_without_an_export_says_so(empty_exports, no_mnist):
    shown = learned_view.figures(MODELS["model1"], ModelInsights(Predictor(empty_exports)))
    assert (shown.confusion, shown.learned, shown.mistakes) == (None, None, None)
    assert "no export yet" in shown.confusion_note
    (empty_exports / "model1.onnx").write_bytes(b"not onnx")
    with pytest.raises(ModelUnavailableError, match="not a valid ONNX model"):
        ModelInsights(Predictor(empty_exports)).get("model1")


def test_the_figures_follow_the_served_version(empty_exports, tmp_path, no_mnist):
    """After a run (a new version) and after serving the shipped version again, weights and test-set
    figures are those of the ONNX file being served."""
    write_tiny_model(empty_exports, "model1", seed=10)  # the shipped model: version 1
    v1_weights = learned_from_bytes((empty_exports / "model1.onnx").read_bytes()).digit_weights
    versions = ModelVersions(data_dir=tmp_path / "data", shipped_dir=empty_exports)
    write_tiny_model(versions, "model1", seed=11)  # a run: version 2, serving
    insights = ModelInsights(Predictor(versions))

    def served():
        shown = learned_view.figures(MODELS["model1"], insights)
        return tile(shown.learned, 3, (28, 28), 5, learned_plots.WEIGHTS_PAD), insights.get("model1")

    v2_image, v2 = served()
    v2_onnx = versions.serving_files("model1").paths["onnx"]
    assert v2.version == 2 and v2.onnx_sha256 == sha(v2_onnx.read_bytes())
    assert np.array_equal(v2_image, tiny_weights(seed=11)[0][:, 3].reshape(28, 28))

    versions.serve("model1", 1)
    v1_image, v1 = served()
    assert v1.version == 1 and np.array_equal(v1_image, v1_weights[3]) and not np.array_equal(v1_image, v2_image)
    assert v1.results["onnx_sha256"] == v1.onnx_sha256 != v2.onnx_sha256
    shipped = json.loads((empty_exports / "model1.json").read_text())
    assert v1.results == shipped[evaluation.KEY]  # the record kept with version 1, not version 2's


def test_the_tab_draws_each_served_version_once(empty_exports, no_mnist):
    write_tiny_model(empty_exports, "model1", seed=30)
    rendered = learned_view.RenderedFigures(ModelInsights(Predictor(empty_exports)))
    first = rendered.get(MODELS["model1"])
    assert all(image.mode == "RGB" and image.width > 400 for image in (first.confusion, first.learned, first.mistakes))
    assert rendered.get(MODELS["model1"]) is first  # the same files: nothing drawn again
    write_tiny_model(empty_exports, "model1", seed=31)
    second = rendered.get(MODELS["model1"])
    assert second is not first and second.learned.tobytes() != first.learned.tobytes()
    missing = rendered.get(MODELS["model2"])
    assert missing.confusion is None and "no export yet" in missing.confusion_note


def test_a_registry_model_exposing_nothing_gets_the_test_set_figures(empty_exports, no_mnist):
    """The generic fallback: any architecture has a confusion matrix and mistakes, no weight images."""
    spec = ModelSpec(name="mlp", title="Model 9: MLP", description="a hidden layer", module="unused",
                     native_format="npz")
    model = mlp_model()
    images = np.random.default_rng(0).random((40, 28, 28, 1), dtype=np.float32)
    session_bytes = model.SerializeToString()

    def native(x):
        return ort.InferenceSession(session_bytes, providers=["CPUExecutionProvider"]).run(
            [OUTPUT_NAME], {INPUT_NAME: x.astype(np.float32)})[0]

    folder = ExportFolder(empty_exports, {"mlp": spec})
    save_model(name="mlp", write_native=lambda path: path.write_bytes(b"weights"),
               onnx_model=model, probabilities_output=OUTPUT_NAME, native_predict=native,
               load_native=lambda path: native,  # the file is a placeholder: the model is the ONNX graph
               parity_images=images,
               test_set=(images, np.arange(40) % 10), metadata={"test_accuracy": 0.1}, exports_dir=folder)
    insights = ModelInsights(Predictor(empty_exports, models={"mlp": spec}))
    shown = learned_view.figures(spec, insights)
    assert shown.learned is None and "no weights that read as images" in shown.learned_note
    assert shown.confusion is not None and plotted(shown.confusion).sum() == 40
    assert shown.mistakes is not None and "most confidently wrong" in shown.mistakes_note


# -- training/backfill_card.py ------------------------------------------------------------------------

def test_backfill_records_the_figures_without_touching_the_models(empty_exports, capsys):
    names = list(MODELS)
    for seed, name in enumerate(names):
        write_tiny_model(empty_exports, name, seed=20 + seed)
        drop_recorded_results(empty_exports, name)
    metadata_files = [empty_exports / f"{name}.json" for name in names]
    models_before = {path: path.read_bytes() for path in empty_exports.iterdir() if path.suffix != ".json"}
    before = {path: json.loads(path.read_text()) for path in metadata_files}

    images = np.random.default_rng(3).integers(0, 256, (50, 28, 28), dtype=np.uint8)
    labels = np.arange(50) % 10
    written = backfill_card.backfill(empty_exports, images, labels)
    assert sorted(written) == sorted(metadata_files)
    for path, name in zip(metadata_files, names):
        after = json.loads(path.read_text())
        results = after.pop(evaluation.KEY)
        assert after == before[path]  # nothing else in the metadata changed
        assert evaluation.describes(results, sha((empty_exports / f"{name}.onnx").read_bytes()))
        assert results["images"] == 50 and "backfill_card" in results["source"]
    assert {path: path.read_bytes() for path in models_before} == models_before  # models byte-identical

    assert backfill_card.backfill(empty_exports, images, labels) == []  # already recorded: left alone
    assert "already recorded" in capsys.readouterr().out
    assert len(backfill_card.backfill(empty_exports, images, labels, force=True)) == len(metadata_files)


def test_backfill_without_mnist_fails_clearly(empty_exports, no_mnist, capsys):
    write_tiny_model(empty_exports, "model1")
    assert backfill_card.main(["--exports-dir", str(empty_exports)]) == 1
    assert "MNIST data set not found" in capsys.readouterr().err

