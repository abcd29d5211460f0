"""What a served model has learned, read from the initializers of its ONNX graph (no TensorFlow,
no native model file): the same numbers onnxruntime multiplies the pixels by.

Found by the graph's shape, not by model name, so any registry model shows what it has:
- digit weights: a MatMul (or Gemm) whose weight is a 784x10 initializer, i.e. a linear map from
  the 28x28 pixels to the ten digits (Model 1's logistic regression). Digit c's 784 weights,
  laid out as the 28x28 image, are "what the model thinks a c looks like": ink on a positive
  weight raises c's score. Model 1's graph deskews the image first (training/deskew.py), so its
  pixels are those of the straightened digit; the registry's `reads` says so on the card.
- first-layer filters: a Conv over the one-channel image whose kernel is an initializer of
  shape [K, 1, h, w] (Model 2's 32 3x3 kernels). A kernel's pattern is what its feature map
  responds to, wherever it occurs in the image (ONNX Conv, like Keras' Conv2D, is a
  cross-correlation: the kernel is not flipped).
- neither (any other architecture): nothing; the card shows the test-set figures only.

`onnx` is imported when a model is inspected (the Models tab), not when the server starts.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from training.onnx_contract import INPUT_NAME, NUM_CLASSES

if TYPE_CHECKING:
    import onnx

PIXELS = 28 * 28
# Ops that move or relabel the input's values without mixing pixels: a Conv reached from the
# image through these alone is the first layer (Keras' NHWC -> NCHW reshape or transpose).
_LAYOUT_OPS = {"Reshape", "Transpose", "Cast", "Identity", "Unsqueeze", "Squeeze", "Flatten"}


@dataclass(frozen=True)
class Learned:
    """The weights of a served model that read as images; each field None when the graph has none."""

    digit_weights: np.ndarray | None = None  # float [10, 28, 28]: digit c's weight per input pixel
    first_filters: np.ndarray | None = None  # float [K, h, w]: the first convolution's kernels

    @property
    def anything(self) -> bool:
        return self.digit_weights is not None or self.first_filters is not None


def learned_from_bytes(onnx_bytes: bytes) -> Learned:
    """Inspect a serialized ONNX model (as served). Raises ValueError when the bytes are no ONNX model."""
    import onnx
    from google.protobuf.message import DecodeError

    try:
        model = onnx.load_model_from_string(onnx_bytes)
    except (DecodeError, ValueError) as error:
        raise ValueError(f"not an ONNX model: {error}") from None
    return learned_from_model(model)


def learned_from_model(model: "onnx.ModelProto") -> Learned:
    from onnx import numpy_helper

    graph = model.graph
    initializers = {init.name: init for init in graph.initializer}

    def array(name: str) -> np.ndarray | None:
        init = initializers.get(name)
        return None if init is None else numpy_helper.to_array(init)

    return Learned(digit_weights=_digit_weights(graph, array), first_filters=_first_filters(graph, array))


def _digit_weights(graph, array) -> np.ndarray | None:
    for node in graph.node:
        if node.op_type not in ("MatMul", "Gemm") or len(node.input) < 2:
            continue
        weight = array(node.input[1])
        if weight is None or weight.ndim != 2:
            continue
        if node.op_type == "Gemm":
            attributes = {a.name: a.i for a in node.attribute if a.name in ("transA", "transB")}
            if attributes.get("transA"):
                continue
            if attributes.get("transB"):
                weight = weight.T
        if weight.shape == (PIXELS, NUM_CLASSES):
            # Column c holds digit c's weight for each pixel, row-major like the flattened image.
            return weight.T.reshape(NUM_CLASSES, 28, 28).astype(np.float64)
    return None


def _first_filters(graph, array) -> np.ndarray | None:
    producers = {output: node for node in graph.node for output in node.output}
    for node in graph.node:
        if node.op_type != "Conv" or len(node.input) < 2:
            continue
        kernel = array(node.input[1])
        if kernel is None or kernel.ndim != 4 or kernel.shape[1] != 1:
            continue
        if _reads_the_image(node.input[0], producers):
            return kernel[:, 0].astype(np.float64)
    return None


def _reads_the_image(value: str, producers: dict) -> bool:
    """True when `value` is the graph input reached through layout ops only."""
    seen = 0
    while value != INPUT_NAME:
        node = producers.get(value)
        seen += 1
        if node is None or node.op_type not in _LAYOUT_OPS or seen > 16:
            return False
        value = node.input[0]
    return True

