"""The ONNX contract every exported model follows, so the predictor has no per-model code.

- one input  `image`:         float32 [N, 28, 28, 1], pixels in [0, 1], white digit on black, MNIST-centred
- one output `probabilities`: float32 [N, 10], rows summing to 1
- metadata_props: the model's own metadata (name, accuracy, date, ...), JSON-encoded values

Any scaling or reshaping a model needs lives inside its graph.
"""
from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:  # the onnx package is imported only where a model is built (~13 MB less per server process)
    import onnx

INPUT_NAME = "image"
OUTPUT_NAME = "probabilities"
IMAGE_SHAPE = (28, 28, 1)
NUM_CLASSES = 10
OPSET = 17  # supported by onnxruntime >= 1.13, tf2onnx and skl2onnx alike

# Parity between the ONNX export and the native model, checked at export and in tests.
PARITY_MAX_ABS_DIFF = 1e-4
PARITY_SAMPLES = 1000


def to_model_input(images: np.ndarray) -> np.ndarray:
    """uint8 images [N, 28, 28] (white on black, as MNIST) -> the input: float32 [N, 28, 28, 1] in [0, 1]."""
    return (np.asarray(images, dtype=np.float32) / 255.0)[..., None]


def to_pixels(model_input: np.ndarray) -> np.ndarray:
    """A model input ([28, 28] or [28, 28, 1] floats in [0, 1]) as uint8 [28, 28] pixels, white on
    black (MNIST's layout): what the drawings store keeps, the page shows and the renderers cache.
    uint8 input is returned as it is."""
    array = np.asarray(model_input)
    if array.size != 28 * 28:
        raise ValueError(f"a model input is a 28x28 image, got shape {list(array.shape)}")
    if array.dtype != np.uint8:
        array = np.clip(np.round(array.astype(np.float64) * 255.0), 0, 255).astype(np.uint8)
    return array.reshape(28, 28)


def rename_value(graph: onnx.GraphProto, old: str, new: str) -> None:
    """Rename a value (graph input/output or intermediate) everywhere it is referenced."""
    if old == new:
        return
    for value in list(graph.input) + list(graph.output) + list(graph.value_info):
        if value.name == old:
            value.name = new
    for node in graph.node:
        node.input[:] = [new if name == old else name for name in node.input]
        node.output[:] = [new if name == old else name for name in node.output]


def finalize(model: onnx.ModelProto, probabilities_output: str, metadata: dict[str, Any]) -> onnx.ModelProto:
    """Bring a converted model to the contract: one `image` input, one `probabilities` output, metadata.

    `probabilities_output` names the converter's probability output; any other outputs
    (e.g. skl2onnx's `label`) are dropped.
    """
    graph = model.graph
    initializers = {init.name for init in graph.initializer}
    real_inputs = [value for value in graph.input if value.name not in initializers]
    if len(real_inputs) != 1:
        raise ValueError(f"expected one graph input, found {[v.name for v in real_inputs]}")
    rename_value(graph, real_inputs[0].name, INPUT_NAME)

    kept = [value for value in graph.output if value.name == probabilities_output]
    if not kept:
        raise ValueError(f"no output named {probabilities_output!r} in {[v.name for v in graph.output]}")
    del graph.output[:]
    graph.output.extend(kept)
    rename_value(graph, probabilities_output, OUTPUT_NAME)

    # A symbolic batch dimension, so clients see [N, 28, 28, 1] -> [N, 10].
    graph.input[0].type.tensor_type.shape.dim[0].dim_param = "N"
    graph.output[0].type.tensor_type.shape.dim[0].dim_param = "N"

    del model.metadata_props[:]
    for key, value in metadata.items():
        model.metadata_props.add(key=key, value=json.dumps(value))
    import onnx

    onnx.checker.check_model(model)
    return model


def read_onnx_metadata(model: onnx.ModelProto) -> dict[str, Any]:
    return {prop.key: json.loads(prop.value) for prop in model.metadata_props}


def run_onnx(model_bytes: bytes, images: np.ndarray) -> np.ndarray:
    """Probabilities from an ONNX model for images [N, 28, 28, 1] in [0, 1] (CPU).

    Also takes a converter's model before finalize(): its one input, whatever its name,
    and its `probabilities` output, else its first output.
    """
    import onnxruntime as ort

    session = ort.InferenceSession(model_bytes, providers=["CPUExecutionProvider"])
    outputs = [value.name for value in session.get_outputs()]
    output = OUTPUT_NAME if OUTPUT_NAME in outputs else outputs[0]
    return session.run([output], {session.get_inputs()[0].name: images.astype(np.float32)})[0]


def accuracy(model: onnx.ModelProto, images: np.ndarray, labels: np.ndarray) -> float:
    """Share of `images` the ONNX model classifies as `labels`: what the served file scores."""
    return float(np.mean(run_onnx(model.SerializeToString(), images).argmax(1) == labels))


def parity(onnx_probabilities: np.ndarray, native_probabilities: np.ndarray) -> dict[str, Any]:
    """Measured agreement between the ONNX export and the native model on the same images."""
    onnx_probabilities = np.asarray(onnx_probabilities, dtype=np.float64)
    native_probabilities = np.asarray(native_probabilities, dtype=np.float64)
    return {
        "samples": int(len(native_probabilities)),
        "max_abs_diff": float(np.max(np.abs(onnx_probabilities - native_probabilities))),
        "argmax_agreement": float(np.mean(onnx_probabilities.argmax(1) == native_probabilities.argmax(1))),
        "max_row_sum_error": float(np.max(np.abs(onnx_probabilities.sum(1) - 1.0))),
    }


def check_parity(report: dict[str, Any]) -> None:
    """Raise when the export disagrees with the native model beyond the contract."""
    if report["max_abs_diff"] > PARITY_MAX_ABS_DIFF or report["argmax_agreement"] < 1.0:
        raise RuntimeError(
            f"ONNX export does not match the native model: max |diff| {report['max_abs_diff']:.2e} "
            f"(limit {PARITY_MAX_ABS_DIFF:.0e}), argmax agreement {report['argmax_agreement']:.4f} (need 1.0)"
        )
