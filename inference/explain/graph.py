"""What an exported ONNX graph lets us explain, read from the graph itself (no per-model code).

Every export follows training/onnx_contract.py: `image` [N, 28, 28, 1] in, `probabilities`
[N, 10] out, usually with the temperature of training/calibration.add_temperature at the end
(softmax(log(p) / T), which equals softmax(z / T) for the logits z of the model's own softmax).
From the graph we find:

- the **score** every map explains: the logits z that feed the model's softmax, times 1/T, so
  that the served probabilities are exactly softmax(score) (up to the 1e-12 floor of the
  log). Without such a softmax the score is log(probabilities) (any model: occlusion still works).
- a **linear head**: z = features @ W + b with W a [784, 10] initializer. Then the score of digit
  c is exactly sum_i W[i, c] x_i / T + b[c] / T over the 784 features it reads (Model 1: the
  deskewed image), so the map can be those terms.
- a **differentiable path** from `image` to z made only of operations inference/explain/backprop.py
  can differentiate (Conv, ReLU, MaxPool, global average pooling, MatMul/Gemm with constant
  weights, reshapes, residual Adds of two image-dependent values, ...): then gradient methods
  apply (Models 2 and 3). The path is every node between the two, in the graph's topological
  order: a DAG, not only a chain (Model 3's shortcuts branch off and join again at an Add).
- the **layers** whose activations are worth showing: each Conv (after its ReLU), each pooling, and
  each residual block's output where its shortcut joins (after the join's ReLU) in place of the
  convolutions that only feed that join (their values are halves of a sum, not what the next
  layer reads).

Anything not found is simply absent: such a model still gets the model-agnostic map (occlusion).
Reading a graph takes a few milliseconds and is done once per served version (served.py).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from training.onnx_contract import INPUT_NAME, NUM_CLASSES, OUTPUT_NAME

if TYPE_CHECKING:
    import onnx

# Names training/calibration.add_temperature gives the nodes it appends.
UNCALIBRATED = "uncalibrated_probabilities"
INVERSE_TEMPERATURE = "calibration_inverse_temperature"
IMAGE_PIXELS = 28 * 28

# Operations whose output is data flowing from the image; `Shape` outputs only a shape, so the
# values computed from it (Gather, Concat, ... building a Reshape's target) carry no gradient.
SHAPE_ONLY = {"Shape", "Size"}
# What backprop.py differentiates (with the conditions checked in _unsupported()).
DIFFERENTIABLE = {"Identity", "Cast", "Reshape", "Flatten", "Squeeze", "Unsqueeze", "Transpose", "Relu",
                  "MaxPool", "GlobalAveragePool", "Conv", "MatMul", "Gemm", "Add", "Sub", "Mul", "Dropout"}
# Operations that may join two image-dependent values (a residual connection): linear in each.
JOINS = {"Add", "Sub"}


@dataclass(frozen=True)
class LinearHead:
    features: str  # the ONNX value holding the 784 features the head reads (float)
    weights: np.ndarray  # float64 [784, 10]
    bias: np.ndarray  # float64 [10]
    stored: tuple[str, str]  # the initializers' names: (weights, bias)


@dataclass(frozen=True)
class Step:
    """One node on the path from the image to the logits, and which of its inputs carry the image
    (one, or two where a residual shortcut joins the main branch)."""
    node: "onnx.NodeProto"
    data_indices: tuple[int, ...]

    @property
    def data_inputs(self) -> tuple[str, ...]:
        return tuple(self.node.input[index] for index in self.data_indices)

    @property
    def output(self) -> str:
        return self.node.output[0]


@dataclass(frozen=True)
class Layer:
    title: str  # "conv 1", "pool 2", "block 1": numbered in the order the drawing goes through them
    kind: str  # "conv", "pool" or "block" (a residual block's output)
    value: str  # the ONNX value: a conv's output after its ReLU (what the next layer reads)


@dataclass(frozen=True)
class GraphInfo:
    logits: str | None  # the value whose times `inverse_temperature` is the score; None: score = log(p)
    inverse_temperature: float
    # The input of the softmax that makes `probabilities` (with a temperature: log(p) / T): scores up
    # to one shift shared by the ten digits. Exposed so tests can compare the maps with the graph's own.
    served_logits: str | None
    linear_head: LinearHead | None
    # The steps from `image` to `logits` in order, when every one can be differentiated; else None.
    path: tuple[Step, ...] | None
    why_no_gradient: str | None  # what stops gradient methods (for logs and the benchmark)
    layers: tuple[Layer, ...]
    constants: dict[str, np.ndarray] = field(repr=False)  # initializers and Constant nodes' values

    @property
    def differentiable(self) -> bool:
        return self.path is not None

    def values_to_expose(self) -> list[str]:
        """Every intermediate value the explainer reads from a run (besides `probabilities`)."""
        names: list[str] = []
        names.extend(name for name in (self.logits, self.served_logits) if name)
        if self.linear_head:
            names.append(self.linear_head.features)
        for step in self.path or ():
            names.extend((*step.data_inputs, step.output))
        names.extend(layer.value for layer in self.layers)
        seen = {INPUT_NAME, OUTPUT_NAME}
        return [name for name in names if not (name in seen or seen.add(name))]


def analyse(model: "onnx.ModelProto") -> GraphInfo:
    """Read what the graph lets us explain (see the module docstring)."""
    from onnx import numpy_helper

    graph = model.graph
    constants = {init.name: numpy_helper.to_array(init) for init in graph.initializer}
    for node in graph.node:
        if node.op_type == "Constant":
            for attribute in node.attribute:
                if attribute.name == "value":
                    constants[node.output[0]] = numpy_helper.to_array(attribute.t)
    producers = {output: node for node in graph.node for output in node.output}

    logits = _softmax_input(producers)
    scale = constants.get(INVERSE_TEMPERATURE)
    inverse_temperature = float(scale) if scale is not None and logits is not None else 1.0
    carrying = _carrying(graph)
    path, why = (None, "no softmax to differentiate to") if logits is None else _path(graph, logits, carrying,
                                                                                        constants)
    final = producers.get(OUTPUT_NAME)
    served_logits = final.input[0] if final is not None and final.op_type == "Softmax" else None
    return GraphInfo(logits=logits, inverse_temperature=inverse_temperature, served_logits=served_logits,
                     linear_head=_linear_head(logits, producers, constants) if logits else None,
                     path=path, why_no_gradient=why, layers=_layers(graph, carrying), constants=constants)


def _softmax_input(producers: dict) -> str | None:
    """The logits: the input of the softmax that makes the (uncalibrated) probabilities, through Identity."""
    value = UNCALIBRATED if UNCALIBRATED in producers else OUTPUT_NAME
    node = producers.get(value)
    while node is not None and node.op_type == "Identity":
        node = producers.get(node.input[0])
    if node is None or node.op_type != "Softmax":
        return None
    return node.input[0]


def _carrying(graph) -> set[str]:
    """Values computed from the image's pixels (not only from its shape)."""
    carrying = {INPUT_NAME}
    for node in graph.node:  # ONNX graphs are topologically sorted
        if node.op_type not in SHAPE_ONLY and any(name in carrying for name in node.input):
            carrying.update(node.output)
    return carrying


def _path(graph, logits: str, carrying: set[str], constants: dict) -> tuple[tuple | None, str | None]:
    """The nodes from the image to the logits, in order, if backprop.py can differentiate all of them."""
    needed = {logits}
    nodes = []
    for node in reversed(graph.node):
        if any(name in needed for name in node.output):
            data_inputs = [name for name in node.input if name in carrying]
            needed.update(data_inputs)
            nodes.append(node)
    nodes.reverse()
    for node in nodes:
        problem = _unsupported(node, carrying, constants)
        if problem:
            return None, problem
    return tuple(Step(node, tuple(i for i, name in enumerate(node.input) if name in carrying)) for node in nodes), None


def _unsupported(node, carrying: set[str], constants: dict) -> str | None:
    op = node.op_type
    if op not in DIFFERENTIABLE:
        return f"{op} ({node.name or node.output[0]}) cannot be differentiated here"
    data = [index for index, name in enumerate(node.input) if name in carrying]
    attributes = _attributes(node)
    if len(data) != 1 and not (op in JOINS and len(data) == 2):
        return f"{op} of {len(data)} image-dependent values ({node.name})"
    if op in ("MatMul", "Gemm", "Conv") and data != [0]:
        return f"{op} with the image-dependent value as its weights ({node.name})"
    if op in ("MatMul", "Gemm", "Add", "Sub", "Mul", "Conv"):  # the other input: a stored constant
        if any(name and name not in constants for index, name in enumerate(node.input) if index not in data):
            return f"{op} whose other input is computed, not stored ({node.name})"
    if op == "Conv" and (attributes.get("group", 1) != 1 or any(d != 1 for d in attributes.get("dilations", [1]))
                         or attributes.get("auto_pad", b"NOTSET") not in (b"NOTSET", "NOTSET")):
        return f"Conv with groups, dilations or auto_pad ({node.name})"
    if op == "MaxPool" and (any(attributes.get("pads", [0])) or attributes.get("ceil_mode", 0)
                            or any(d != 1 for d in attributes.get("dilations", [1]))
                            or attributes.get("auto_pad", b"NOTSET") not in (b"NOTSET", "NOTSET")):
        return f"MaxPool with padding, dilations or ceil_mode ({node.name})"
    if op == "Gemm" and attributes.get("transA", 0):
        return f"Gemm with transA ({node.name})"
    if op == "Cast" and attributes.get("to") not in (1, 10, 11):  # float, float16, double
        return f"Cast to a non-float type ({node.name})"
    return None


def _attributes(node) -> dict:
    from onnx import helper

    return {attribute.name: helper.get_attribute_value(attribute) for attribute in node.attribute}


def _linear_head(logits: str, producers: dict, constants: dict) -> LinearHead | None:
    """z = features @ W + b with W [784, 10] and b [10] stored in the graph, or None."""
    add = producers.get(logits)
    if add is None or add.op_type != "Add":
        return None
    stored = [name for name in add.input if name in constants]
    computed = [name for name in add.input if name not in constants]
    if len(stored) != 1 or len(computed) != 1:
        return None
    bias = np.asarray(constants[stored[0]], np.float64).reshape(-1)
    matmul = producers.get(computed[0])
    if matmul is None or matmul.op_type != "MatMul" or matmul.input[1] not in constants:
        return None
    weights = np.asarray(constants[matmul.input[1]], np.float64)
    if weights.shape != (IMAGE_PIXELS, NUM_CLASSES) or bias.shape != (NUM_CLASSES,):
        return None
    features = matmul.input[0]
    cast = producers.get(features)
    if cast is not None and cast.op_type == "Cast":  # show the value before a dtype change: the same numbers
        features = cast.input[0]
    return LinearHead(features=features, weights=weights, bias=bias, stored=(matmul.input[1], stored[0]))


def _layers(graph, carrying: set[str]) -> tuple[Layer, ...]:
    consumers: dict[str, list] = {}
    for node in graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)

    def after_relu(value: str) -> str:
        after = consumers.get(value, [])
        return after[0].output[0] if len(after) == 1 and after[0].op_type == "Relu" else value

    def is_join(node) -> bool:
        return node.op_type in JOINS and sum(name in carrying for name in node.input) == 2

    layers, counts = [], {"conv": 0, "pool": 0, "block": 0}
    for node in graph.node:
        if node.op_type == "Conv" and node.input and node.input[0] in carrying:
            kind, value = "conv", after_relu(node.output[0])
            feeds = consumers.get(value, [])
            if feeds and all(is_join(consumer) for consumer in feeds):
                continue  # one branch of a residual block: shown as the block's output
        elif node.op_type in ("MaxPool", "AveragePool") and node.input[0] in carrying:
            kind, value = "pool", node.output[0]
        elif is_join(node):
            kind, value = "block", after_relu(node.output[0])
        else:
            continue
        counts[kind] += 1
        layers.append(Layer(title=f"{kind} {counts[kind]}", kind=kind, value=value))
    return tuple(layers)
