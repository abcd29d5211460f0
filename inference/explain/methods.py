"""Attribution methods over a served graph: each returns maps [K, 28, 28] (float64) for K
directions in score space ([K, 10]: a digit is a one-hot row, "7 rather than 1" is e7 - e1).

Positive = evidence for the direction: removing that pixel's ink would lower the score.

- `exact_linear`: a linear head's own terms, W[i, c] * x_i / T, over the features it reads. They
  sum, with the bias b[c] / T, to the score exactly: no approximation (Model 1).
- `integrated_gradients` (Sundararajan et al. 2017): the mean gradient along the straight line
  from a blank canvas (0, the background every drawing starts from) to the drawing, times the
  drawing. Its terms sum to score(drawing) - score(blank) up to the Riemann error of `steps`.
- `gradient_x_input`: the gradient at the drawing times the drawing (IG with one step at 1).
- `grad_cam` (Selvaraju et al. 2017): a conv layer's maps weighted by their mean gradient,
  enlarged to 28x28; coarse by design.
- `occlusion` (Zeiler & Fergus 2014): the score's drop when a patch is set to background, each
  pixel getting the mean drop of the patches over it. Needs nothing but the served graph's
  output, so every model of the registry gets it. Patches without ink change nothing and are
  not run.
- `rise` (Petsiuk et al., "RISE", BMVC 2018): the drawing seen through many random smooth masks
  that keep about half of it; each pixel's value is how much more probable the digit is when that
  pixel is kept than on average. Needs only the served graph's output too; it sees what erasing
  whole regions at once does, where occlusion erases one small patch at a time.

Which one each model shows, and why, is decided in explainer.py from the measurements of
`python -m benchmarks --only explain` (benchmarks/explain/explain.py).
"""
from __future__ import annotations

import numpy as np

import inference.explain.backprop as backprop
from inference.explain.served import ServedGraph
from training.onnx_contract import INPUT_NAME

SIDE = 28
# Integrated gradients' points along the path from the blank canvas: the midpoints of [0, 1] cut at
# (k / IG_STEPS) ** IG_SPACING, denser near the blank end, where ReLU units switch on and the gradient
# changes most. Measured on 40 drawings (10 pen-drawn, 30 MNIST test), |sum of the map - score change|
# as a share of the largest change, median / worst: 8 even steps 2.8% / 13%, 16 even steps 1.1% / 4.9%,
# 8 steps at spacing 1.5 1.2% / 6.6% (12: 0.7% / 3.8%). So 8 steps at 1.5: the accuracy of 16 even
# steps at half the cost (the backward pass is most of an explanation's time).
IG_STEPS = 8
IG_SPACING = 1.5
# Occlusion's patches: 4x4 (what any model without a differentiable path gets). Measured with the deletion test (benchmarks/explain/faithfulness.py) on
# the ten pen-drawn digits and 60 MNIST test digits: Model 3 (residual blocks, global average pooling)
# barely moves when a 2x2 patch goes, so its 2x2 map ranked the evidence worse than the ink alone (area 0.151
# vs ink 0.167 drawn, below ink on 2 of 10 drawings); 4x4: 0.104 (8 of 10) and 0.137 vs 0.154 on MNIST.
# Models 1 and 2, whose default maps are exact and integrated gradients, stay below ink with 4x4 patches too.
OCCLUSION_PATCH = 4
# Every 2 pixels, not every one: a quarter of the forward passes. Model 3's explanation 87 -> 19 ms (the ten
# drawings, this machine), which had kept the Explain view's maps over 150 ms (median 155 ms) with three
# models; its deletion areas unchanged (drawn 0.104 -> 0.107, MNIST 0.137 -> 0.134); each pixel still lies
# under 4 squares.
OCCLUSION_STRIDE = 2
# RISE's masks: RISE_MASKS random grids of cells RISE_CELL pixels wide, each cell kept with probability
# RISE_KEEP, enlarged bilinearly and shifted by a random fraction of a cell (as in the paper), drawn once
# from a fixed seed so a drawing always gets the same map. Measured on Model 3 with the deletion test
# (benchmarks/explain/faithfulness.py, 100 MNIST test and 100 drawn digits; ink alone 0.189 / 0.128;
# the network shipped before its 2026-12-05 19:01 retraining):
# 256 masks of 4-pixel cells 0.115 / 0.105, 512 of 4: 0.112 / 0.102, 192 of 5: 0.115 / 0.096,
# 256 of 5: 0.099 / 0.093, 384 of 5: 0.109 / 0.095; occlusion 0.152 / 0.109 (200 each). So 256 of 5:
# one forward pass per mask through the logits-only session (served.py): 39.5 ms of Model 3 per explanation
# in one thread, occlusion 15.2 ms (benchmarks/results.md section 9, 2026-12-05 19:09 UTC).
RISE_MASKS = 256
RISE_CELL = 5
RISE_KEEP = 0.5
RISE_SEED = 2018


def exact_linear(served: ServedGraph, values: dict, directions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(maps [K, 28, 28] over the head's features, biases [K]) for a graph with a linear head."""
    head = served.info.linear_head
    scale = served.info.inverse_temperature
    features = np.asarray(values[head.features], np.float64).reshape(-1)
    weights = head.weights @ np.asarray(directions, np.float64).T  # [784, K]
    maps = (features[:, None] * weights * scale).T.reshape(-1, SIDE, SIDE)
    biases = np.asarray(directions, np.float64) @ head.bias * scale
    return maps, biases


def features_image(served: ServedGraph, values: dict) -> np.ndarray:
    """The 28x28 image a linear head reads (Model 1's: the drawing deskewed inside its graph)."""
    return np.asarray(values[served.info.linear_head.features], np.float64).reshape(SIDE, SIDE)


def integrated_gradients(served: ServedGraph, x: np.ndarray, directions: np.ndarray,
                         steps: int = IG_STEPS, spacing: float = IG_SPACING) -> np.ndarray:
    """Integrated gradients from the blank canvas: the midpoint rule over `steps` intervals of the
    path, cut at (k / steps) ** spacing (see IG_SPACING)."""
    edges = (np.arange(steps + 1) / steps) ** spacing
    alphas, weights = (edges[:-1] + edges[1:]) / 2, np.diff(edges)
    path = alphas.astype(np.float32)[:, None, None, None] * x.reshape(1, SIDE, SIDE, 1).astype(np.float32)
    grads = _input_gradients(served, path, directions)  # [K, steps, 28, 28]
    return np.einsum("ksij,s->kij", grads, weights) * x.reshape(1, SIDE, SIDE).astype(np.float64)


def gradient_x_input(served: ServedGraph, x: np.ndarray, directions: np.ndarray) -> np.ndarray:
    grads = _input_gradients(served, x.reshape(1, SIDE, SIDE, 1).astype(np.float32), directions)
    return grads[:, 0] * x.reshape(1, SIDE, SIDE).astype(np.float64)


def _input_gradients(served: ServedGraph, batch: np.ndarray, directions: np.ndarray) -> np.ndarray:
    """d(direction . score)/d(image) for each image of the batch: [K, N, 28, 28] float64."""
    values = served.run(batch)
    upstream = np.broadcast_to((np.asarray(directions, np.float32) * served.info.inverse_temperature)[:, None, :],
                               (len(directions), len(batch), directions.shape[1]))
    grads = backprop.gradients(served.info, values, upstream, [INPUT_NAME])[INPUT_NAME]
    return grads.reshape(len(directions), len(batch), SIDE, SIDE).astype(np.float64)


def grad_cam(served: ServedGraph, x: np.ndarray, directions: np.ndarray, layer: str | None = None) -> np.ndarray:
    """Grad-CAM on `layer` (default: the last conv layer or residual block), ReLU'd, enlarged bilinearly to 28x28."""
    if layer is None:
        layer = [item.value for item in served.info.layers if item.kind in ("conv", "block")][-1]
    values = served.run(x.reshape(1, SIDE, SIDE, 1).astype(np.float32))
    upstream = (np.asarray(directions, np.float32) * served.info.inverse_temperature)[:, None, :]
    grads = backprop.gradients(served.info, values, upstream, [layer])[layer][:, 0]  # [K, C, h, w]
    activations = values[layer][0]  # [C, h, w]
    weights = grads.mean(axis=(2, 3))  # [K, C]
    cams = np.maximum(np.einsum("kc,chw->khw", weights, activations), 0.0)
    return np.stack([_enlarge(cam) for cam in cams]).astype(np.float64)


def _enlarge(cam: np.ndarray) -> np.ndarray:
    """A coarse map to 28x28, each cell's centre over the centre of the input region it sees."""
    from scipy import ndimage

    zoom = SIDE / cam.shape[0]
    return ndimage.zoom(cam, zoom, order=1, grid_mode=True, mode="nearest")[:SIDE, :SIDE]


def rise(served: ServedGraph, x: np.ndarray, directions: np.ndarray) -> np.ndarray:
    """RISE maps [K, 28, 28]: for each direction d, E[d . p | pixel kept] - E[d . p] over the masks,
    divided by the keep probability; 0 off the ink (a mask changes nothing there). p: the served
    probabilities (the paper's choice; for "7 rather than 1" d . p = p7 - p1)."""
    masks = _rise_masks()
    image = x.reshape(SIDE, SIDE).astype(np.float32)
    scores = served.score_batch((masks * image[None])[..., None])
    shifted = np.exp(scores - scores.max(axis=1, keepdims=True))
    weights = (shifted / shifted.sum(axis=1, keepdims=True)) @ np.asarray(directions, np.float64).T  # [masks, K]
    maps = np.einsum("nk,nij->kij", weights - weights.mean(axis=0), masks) / (len(masks) * RISE_KEEP)
    return maps * (image[None] > 0)


_MASKS: np.ndarray | None = None


def _rise_masks() -> np.ndarray:
    """RISE_MASKS masks [n, 28, 28] float32 in [0, 1], made once per process (~5 ms, 1.2 MB)."""
    global _MASKS
    if _MASKS is None:
        from scipy import ndimage

        rng = np.random.default_rng(RISE_SEED)
        cells = -(-SIDE // RISE_CELL) + 1  # one more than covers the image, so every shift still covers it
        grids = (rng.random((RISE_MASKS, cells, cells)) < RISE_KEEP).astype(np.float32)
        enlarged = ndimage.zoom(grids, (1, RISE_CELL, RISE_CELL), order=1)
        shifts = rng.integers(0, RISE_CELL, (RISE_MASKS, 2))
        _MASKS = np.stack([enlarged[i, a:a + SIDE, b:b + SIDE] for i, (a, b) in enumerate(shifts)])
    return _MASKS


def occlusion(served: ServedGraph, x: np.ndarray, directions: np.ndarray, patch: int = OCCLUSION_PATCH,
              stride: int = OCCLUSION_STRIDE, batch_size: int = 256) -> np.ndarray:
    """Mean score drop of the patch x patch squares (every `stride` pixels) over each pixel, set to background (0)."""
    image = x.reshape(SIDE, SIDE).astype(np.float32)
    directions = np.asarray(directions, np.float64)
    base = served.score_batch(image.reshape(1, SIDE, SIDE, 1))[0] @ directions.T  # [K]
    starts = range(-patch + 1, SIDE, stride)
    corners = [(r, c) for r in starts for c in starts if image[max(r, 0):r + patch, max(c, 0):c + patch].any()]
    drops = np.zeros((len(directions), SIDE, SIDE))
    for start in range(0, len(corners), batch_size):
        chunk = corners[start:start + batch_size]
        occluded = np.repeat(image[None], len(chunk), axis=0)
        for index, (r, c) in enumerate(chunk):
            occluded[index, max(r, 0):r + patch, max(c, 0):c + patch] = 0.0
        scores = served.score_batch(occluded[..., None]) @ directions.T  # [n, K]
        for index, (r, c) in enumerate(chunk):
            rows, cols = slice(max(r, 0), r + patch), slice(max(c, 0), c + patch)
            drops[:, rows, cols] += (base - scores[index])[:, None, None]
    # Every pixel lies under (patch / stride)**2 squares; the ones not run (no ink) changed nothing.
    return drops / (patch // stride) ** 2
