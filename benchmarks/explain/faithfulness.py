"""Are the maps honest? The deletion test and the randomised-model sanity check, for any model and method.

Deletion (Petsiuk et al., "RISE", BMVC 2018): erase the image's pixels (set them to 0, the
background) in the order a map ranks them, most positive first, and follow the probability of
the class the model read at first. A map that finds the evidence makes that curve fall fast: a
small area under it. It is compared with three orders that know nothing of the model: random,
the map's reverse, and the ink alone (brightest pixel first: on a digit this already falls
fast, so beating random proves little).

Sanity (Adebayo et al., "Sanity checks for saliency maps", NeurIPS 2018): a method whose maps
hardly change when the model's learned weights are replaced by random ones shows the input,
not the model. Reported: the Spearman rank correlation between the trained and the randomised
model's maps over the drawing's ink pixels (where maps can differ; off the ink every
input-times-something map is 0 for both). The ink map correlates 1 with itself by construction.

Model 1's exact map lives in the deskewed space its linear head reads, so its deletion runs
there, through the head's own weights; every other map is deleted in the model input.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from inference.explain.explainer import Explainer, one_blas_thread
from inference.explain.served import ServedGraph, open_graph

SIDE = 28
PIXELS = SIDE * SIDE
DELETION_STEP = 8  # pixels erased between two points of a curve: 99 points from the image to a blank
ORDERS = ("map", "random", "reverse", "ink")


@dataclass
class DeletionResult:
    areas: dict[str, np.ndarray]  # order -> area under the curve per image (0..1)
    curves: dict[str, np.ndarray]  # order -> mean curve [points]

    def mean(self, order: str) -> float:
        return float(self.areas[order].mean())


def deletion(explainer: Explainer, name: str, method: str, images: np.ndarray, seed: int = 0) -> DeletionResult:
    """Deletion areas of `method`'s top-digit maps and of the reference orders, for images [N, 28, 28, 1]."""
    with one_blas_thread():  # the curves' matrix products, as the maps' (inference/explain/explainer.py)
        return _deletion(explainer, name, method, images, seed)


def _deletion(explainer: Explainer, name: str, method: str, images: np.ndarray, seed: int) -> DeletionResult:
    rng = np.random.default_rng(seed)
    served = explainer.graphs.get(name)
    areas = {order: [] for order in ORDERS}
    curves = {order: [] for order in ORDERS}
    for image in images:
        explanation = explainer.explain(image, name, method, layers=False)
        values = explanation.maps[0].values.reshape(-1)
        under = explanation.under.reshape(-1)
        top = explanation.top
        # Ties (the zeros off the ink) in random order, so no order gains from the pixels' layout.
        jitter = rng.random(PIXELS) * 1e-12
        orders = {"map": np.lexsort((jitter, -values)), "random": rng.permutation(PIXELS),
                  "reverse": np.lexsort((jitter, values)), "ink": np.lexsort((jitter, -under))}
        probability = _head_probability(served) if explanation.space == "features" else _graph_probability(served)
        for order, ranking in orders.items():
            curve = probability(_erased(under, ranking), top)
            curves[order].append(curve)
            areas[order].append(float(np.trapezoid(curve, dx=1.0 / (len(curve) - 1))))
    return DeletionResult({order: np.asarray(value) for order, value in areas.items()},
                          {order: np.mean(value, axis=0) for order, value in curves.items()})


def _erased(image: np.ndarray, ranking: np.ndarray) -> np.ndarray:
    """The image with 0, DELETION_STEP, 2 DELETION_STEP, ... of its pixels erased in `ranking`'s order: [points, 784]."""
    counts = np.arange(0, PIXELS + DELETION_STEP, DELETION_STEP).clip(max=PIXELS)
    rank_of = np.empty(PIXELS, np.int64)
    rank_of[ranking] = np.arange(PIXELS)
    keep = rank_of[None, :] >= counts[:, None]
    return np.where(keep, image[None, :], 0.0).astype(np.float32)


def _graph_probability(served: ServedGraph):
    def probability(batch: np.ndarray, digit: int) -> np.ndarray:
        scores = served.score_batch(batch.reshape(-1, SIDE, SIDE, 1))
        return _softmax(scores)[:, digit]

    return probability


def _head_probability(served: ServedGraph):
    """The served linear head (and temperature) applied to images of the space it reads (Model 1's: deskewed
    drawings): what the graph computes after its own preprocessing, in float64."""
    head, scale = served.info.linear_head, served.info.inverse_temperature

    def probability(batch: np.ndarray, digit: int) -> np.ndarray:
        return _softmax((batch.astype(np.float64) @ head.weights + head.bias) * scale)[:, digit]

    return probability


def _softmax(scores: np.ndarray) -> np.ndarray:
    shifted = np.exp(scores - scores.max(axis=1, keepdims=True))
    return shifted / shifted.sum(axis=1, keepdims=True)


# -- the sanity check ---------------------------------------------------------------------

def randomised_explainer(explainer: Explainer, name: str, seed: int = 0) -> Explainer:
    """An Explainer over a copy of `name`'s served graph whose learned weights are random (Gaussian,
    each tensor keeping its own mean and spread): every layer the maps are computed through."""
    import onnx
    from onnx import numpy_helper

    served = explainer.graphs.get(name)
    model = onnx.load_from_string(served.source)
    learned = learned_weights(served)
    rng = np.random.default_rng(seed)
    for init in model.graph.initializer:
        if init.name in learned:
            original = numpy_helper.to_array(init)
            noise = rng.normal(original.mean(), original.std() or 1.0, original.shape).astype(original.dtype)
            init.CopyFrom(numpy_helper.from_array(noise, init.name))
    return Explainer({}, pinned={name: open_graph(name, model.SerializeToString())})


def learned_weights(served: ServedGraph) -> set[str]:
    """The stored tensors of the learned layers: a linear head's W and b, or the weights and biases
    of the Conv, Gemm, MatMul and Add nodes on the differentiable path (with none, of every Conv, Gemm
    and MatMul of the graph)."""
    info = served.info
    names: set[str] = set()
    if info.linear_head is not None:
        names.update(info.linear_head.stored)
    for step in info.path or ():
        if step.node.op_type in ("Conv", "Gemm", "MatMul", "Add"):
            names.update(name for name in step.node.input if name in info.constants)
    if info.path is None:  # a graph the backward pass cannot follow (an op it does not know): every layer's weights
        import onnx

        model = onnx.load_from_string(served.source)
        stored = {init.name for init in model.graph.initializer}
        names.update(name for node in model.graph.node if node.op_type in ("Conv", "Gemm", "MatMul")
                     for name in node.input[1:] if name in stored)
    return names


def rank_correlations(explainer: Explainer, randomised: Explainer, name: str, method: str,
                      images: np.ndarray) -> np.ndarray:
    """Spearman correlation, over the ink of the image the maps lie over, between the trained and
    the randomised model's map of the digit the trained model reads, per image."""
    from scipy.stats import spearmanr

    out = []
    for image in images:
        trained = explainer.explain(image, name, method, layers=False)
        direction = np.eye(10)[[trained.top]]
        random_map = randomised.attribution(image, name, direction, method)[0]
        ink = trained.under.reshape(-1) > 0
        a, b = trained.maps[0].values.reshape(-1)[ink], random_map.reshape(-1)[ink]
        out.append(float(spearmanr(a, b).statistic) if a.size > 2 and a.std() > 0 and b.std() > 0 else 0.0)
    return np.asarray(out)
