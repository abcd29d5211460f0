"""Why a model reads a drawing as it does: maps over the 28x28 image it read, from the served version.

    explainer = Explainer(predictor)          # the predictor's models and exports
    explanation = explainer.explain(x, "model2")   # x: preprocess()'s [28, 28, 1]
    explanation.to_dict()                     # the REST "explanation" (arrays and PNG data URLs)

For each model, three maps: its top digit, its runner-up, and the top digit rather than the
runner-up (their difference); positive values argue for the digit. What a model's graph
exposes decides the method (graph.py), never its name, so a new model of the registry is
explained with no code of its own:

- a linear head over 784 features (Model 1): its exact terms W x / T over the image it reads (Model
  1's graph deskews the drawing first: the registry's `input_space` names it); they sum with the bias to the score (tests check it to 1e-4), plus its ten weight images
  ("what it thinks each digit looks like") with the drawing's score against each.
- a differentiable path (Models 2 and 3, residual blocks included): DEFAULT_GRADIENT_METHOD, plus
  each conv and pooling layer's activations, strongest channel first.
- anything else: occlusion through the served graph.

A model of the registry may name the method it shows by default (`ModelSpec.explanation`) when its
own deletion test says another method the graph allows finds the evidence better (Model 3: RISE;
its integrated gradients rank the pixels worse than the ink alone, measured).

The score each map explains is the served calibrated logit: softmax(scores) = the served
probabilities (up to the 1e-12 floor of the log in the graph).

Method choice, measured by `python -m benchmarks --only explain` (README "Why this digit?"):
DEFAULT_GRADIENT_METHOD and IG's step count are the ones its deletion test and sanity check favour.
"""
from __future__ import annotations

import contextlib
import functools
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import numpy as np

import inference.explain.methods as methods
import inference.explain.render as render
from inference.explain.served import OnnxLocation, ServedGraph, ServedGraphs

SIDE = 28
SCALE_PERCENTILE = 98
EXACT, INTEGRATED_GRADIENTS, GRADIENT_X_INPUT, GRAD_CAM, OCCLUSION, RISE = (
    "exact", "integrated_gradients", "gradient_x_input", "grad_cam", "occlusion", "rise")
METHODS = (EXACT, INTEGRATED_GRADIENTS, GRADIENT_X_INPUT, GRAD_CAM, OCCLUSION, RISE)
# Methods that need nothing but the served graph's output: every model can have them.
MODEL_AGNOSTIC = (OCCLUSION, RISE)
DEFAULT_GRADIENT_METHOD = INTEGRATED_GRADIENTS
METHOD_TEXT = {
    EXACT: "exact: the model's own terms, weight × pixel (÷ temperature), over the image it reads; "
           "with its bias they add up to its score",
    INTEGRATED_GRADIENTS: "integrated gradients from a blank canvas: how much each pixel's ink adds to the "
                          "score on the way from nothing to the drawing",
    GRADIENT_X_INPUT: "gradient × input: how fast the score changes with each pixel's ink, times that ink",
    GRAD_CAM: "Grad-CAM: the last conv layer's maps weighted by their gradient, enlarged (coarse)",
    OCCLUSION: "occlusion: how much the score drops when each 4×4 patch of the drawing (every 2 pixels) is erased",
    RISE: f"RISE: the drawing seen through {methods.RISE_MASKS} random masks that each hide about half of it; how much more "
          "likely the digit is when each pixel's ink is kept",
}
INPUT_TEXT = "the 28×28 model input"
FEATURES_TEXT = "the 28×28 image its linear layer reads, computed inside its graph"  # without a registry entry


@dataclass
class DigitMap:
    digit: int  # the digit the map argues for
    against: int | None  # for a contrast map: the digit it argues against (values = digit's - against's)
    values: np.ndarray  # float64 [28, 28]: positive = evidence for `digit` (over `against`)
    score: float  # what the map explains: score[digit] (- score[against])
    bias: float | None = None  # exact maps: the intercept's part; score = values.sum() + bias
    baseline: float | None = None  # integrated gradients: the score of a blank canvas; score ~ sum + baseline

    def to_dict(self, under: np.ndarray, scale: float, images: bool = True) -> dict[str, Any]:
        out: dict[str, Any] = {"digit": self.digit, "against": self.against,
                               "values": _rounded(self.values), "sum": float(self.values.sum()),
                               "score": self.score}
        if self.bias is not None:
            out["bias"] = self.bias
        if self.baseline is not None:
            out["baseline"] = self.baseline
        if images:
            out["image"] = render.data_url(render.map_image(self.values, under, scale))
        return out


@dataclass
class LayerView:
    title: str  # "conv 1"
    kind: str  # "conv" or "pool"
    activations: np.ndarray  # [C, h, w] float32, strongest channel first
    order: list[int]  # the channels' indices in that order
    strengths: list[float]  # each shown channel's mean activation

    def to_dict(self, images: bool = True) -> dict[str, Any]:
        channels, height, width = self.activations.shape
        out = {"title": self.title, "kind": self.kind, "channels": channels, "size": [height, width],
               "order": self.order, "strengths": [round(value, 5) for value in self.strengths],
               "columns": min(render.MOSAIC_COLUMNS, channels)}
        if images:
            out["image"] = render.data_url(render.mosaic(self.activations, float(self.activations.max())))
        return out


@dataclass
class Explanation:
    model: str
    method: str
    space: str  # "features" (what a linear head reads, computed in the graph) or "input"
    space_text: str  # the same in words, for the page
    under: np.ndarray  # float64 [28, 28]: the image the maps lie over
    probabilities: np.ndarray  # [10], from the same run
    scores: np.ndarray  # [10]: softmax(scores) = probabilities
    maps: list[DigitMap]  # top digit, runner-up, top rather than runner-up
    version: int | None = None
    templates: np.ndarray | None = None  # linear head: weights / T as [10, 28, 28]
    template_bias: np.ndarray | None = None  # linear head: bias / T [10]
    layers: list[LayerView] = field(default_factory=list)
    elapsed_ms: float = 0.0

    @property
    def top(self) -> int:
        return self.maps[0].digit

    @property
    def runner_up(self) -> int:
        return self.maps[1].digit

    @property
    def scale(self) -> float:
        """One colour scale for the model's maps, so the candidates' maps compare at a glance: the 98th
        percentile of their non-zero |values| (the few strongest pixels saturate instead of fading the rest)."""
        magnitudes = np.concatenate([np.abs(item.values).ravel() for item in self.maps])
        magnitudes = magnitudes[magnitudes > 0]
        return float(np.percentile(magnitudes, SCALE_PERCENTILE)) if magnitudes.size else 1.0

    def to_dict(self, images: bool = True, template_images: Mapping[int, str] | None = None) -> dict[str, Any]:
        scale = self.scale
        out: dict[str, Any] = {
            "model": self.model, "method": self.method, "method_text": METHOD_TEXT[self.method],
            "space": self.space, "space_text": self.space_text,
            "top": self.top, "runner_up": self.runner_up, "scale": scale,
            "scores": [round(float(value), 6) for value in self.scores],
            "maps": [item.to_dict(self.under, scale, images) for item in self.maps],
            "version": self.version, "elapsed_ms": round(self.elapsed_ms, 3),
        }
        if images:
            out["input"] = render.data_url(render.grey_image(self.under))
        if self.templates is not None:
            out["templates"] = [
                {"digit": digit, "score": round(float(self.scores[digit]), 6),
                 "probability": float(self.probabilities[digit]),
                 "bias": round(float(self.template_bias[digit]), 6),
                 **({"image": template_images[digit]} if images and template_images else {})}
                for digit in range(len(self.templates))]
        if self.layers:
            out["layers"] = [layer.to_dict(images) for layer in self.layers]
        return out


class Explainer:
    """Explains any model of a predictor from its served export (see the module docstring); thread-safe."""

    def __init__(self, onnx_paths: Mapping[str, OnnxLocation], pinned: Mapping[str, ServedGraph] | None = None,
                 input_spaces: Mapping[str, str] | None = None, preferred: Mapping[str, str | None] | None = None):
        """`input_spaces`: what each model's first layer reads, in words (the registry's `input_space`);
        `preferred`: the method a model shows by default when its graph allows it (`ModelSpec.explanation`)."""
        self.graphs = ServedGraphs(onnx_paths, pinned)
        self.input_spaces = dict(input_spaces or {})
        self.preferred = {name: method for name, method in (preferred or {}).items() if method}

    @classmethod
    def for_predictor(cls, predictor) -> "Explainer":
        """Explains what `predictor` serves: it asks the predictor for each model's ONNX file every time."""
        return cls({name: functools.partial(_served_onnx, predictor, name) for name in predictor.models},
                   **cls.registry_settings(predictor.models))

    @staticmethod
    def registry_settings(specs: Mapping[str, Any]) -> dict[str, dict]:
        """What the registry's model specs tell an Explainer: input spaces and preferred methods."""
        return {"input_spaces": {name: spec.input_space for name, spec in specs.items()},
                "preferred": {name: spec.explanation for name, spec in specs.items()}}

    @property
    def names(self) -> list[str]:
        return self.graphs.names

    def method_for(self, name: str) -> str:
        info = self.graphs.get(name).info
        preferred = self.preferred.get(name)
        if preferred is not None and self.allows(name, preferred):
            return preferred
        if info.linear_head is not None:
            return EXACT
        return DEFAULT_GRADIENT_METHOD if info.differentiable else OCCLUSION

    def allows(self, name: str, method: str) -> bool:
        """Whether model `name`'s served graph can be explained by `method`."""
        info = self.graphs.get(name).info
        if method == EXACT:
            return info.linear_head is not None
        if method in (INTEGRATED_GRADIENTS, GRADIENT_X_INPUT, GRAD_CAM):
            return info.differentiable
        return method in MODEL_AGNOSTIC

    def explain(self, x: np.ndarray, name: str, method: str | None = None, *, layers: bool = True) -> Explanation:
        """The explanation of model `name` for one preprocessed image [28, 28, 1] (or [1, 28, 28, 1])."""
        with one_blas_thread():
            return self._explain(x, name, method, layers)

    def _explain(self, x: np.ndarray, name: str, method: str | None, layers: bool) -> Explanation:
        start = time.perf_counter()
        served = self.graphs.get(name)
        image = np.asarray(x, np.float32).reshape(1, SIDE, SIDE, 1)
        values = served.run(image)
        scores = served.scores(values)[0]
        probabilities = np.asarray(values["probabilities"], np.float64)[0]
        ranked = np.argsort(-scores, kind="stable")
        top, runner_up = int(ranked[0]), int(ranked[1])
        directions = np.zeros((2, len(scores)))
        directions[0, top] = directions[1, runner_up] = 1.0
        method = method or self.method_for(name)
        maps, bias, baseline, space, under = self._maps(served, method, image, directions, values)
        digit_maps = [
            DigitMap(top, None, maps[0], float(scores[top]), _item(bias, 0), _item(baseline, 0)),
            DigitMap(runner_up, None, maps[1], float(scores[runner_up]), _item(bias, 1), _item(baseline, 1)),
            DigitMap(top, runner_up, maps[0] - maps[1], float(scores[top] - scores[runner_up]),
                     _difference(bias), _difference(baseline)),
        ]
        space_text = (INPUT_TEXT if space == "input" else
                      f"the {self.input_spaces[name]} it reads" if name in self.input_spaces else FEATURES_TEXT)
        explanation = Explanation(model=name, method=method, space=space, space_text=space_text, under=under,
                                  probabilities=probabilities, scores=scores, maps=digit_maps, version=served.version)
        head = served.info.linear_head
        if head is not None:
            scale = served.info.inverse_temperature
            explanation.templates = (head.weights * scale).T.reshape(-1, SIDE, SIDE)
            explanation.template_bias = head.bias * scale
        if layers:
            explanation.layers = _layer_views(served, values)
        explanation.elapsed_ms = (time.perf_counter() - start) * 1000.0
        return explanation

    def template_images(self, name: str) -> dict[int, str] | None:
        """Model `name`'s weight images as PNG data URLs (a linear head only), made once per version."""
        served = self.graphs.get(name)
        head = served.info.linear_head
        if head is None:
            return None

        def draw() -> dict[int, str]:
            weights = head.weights.T.reshape(-1, SIDE, SIDE)
            scale = float(np.abs(weights).max()) or 1.0
            return {digit: render.data_url(render.signed_image(weights[digit], scale)) for digit in range(len(weights))}

        return served.cached("template_images", draw)

    def to_dict(self, explanation: Explanation, images: bool = True) -> dict[str, Any]:
        """explanation.to_dict() with the model's cached weight images."""
        return explanation.to_dict(images, self.template_images(explanation.model) if images else None)

    def attribution(self, x: np.ndarray, name: str, directions: np.ndarray, method: str | None = None) -> np.ndarray:
        """Maps [K, 28, 28] of model `name` for K directions in score space ([K, 10]; a digit is a one-hot row)."""
        served = self.graphs.get(name)
        image = np.asarray(x, np.float32).reshape(1, SIDE, SIDE, 1)
        with one_blas_thread():
            return self._maps(served, method or self.method_for(name), image, np.atleast_2d(directions))[0]

    def _maps(self, served: ServedGraph, method: str, image: np.ndarray, directions: np.ndarray,
              values: dict | None = None):
        """(maps [K, 28, 28], biases or None, baselines or None, space, the image under the maps)."""
        x = image[0, :, :, 0]
        if values is None and method == EXACT:
            values = served.run(image)
        if method == EXACT:
            if served.info.linear_head is None:
                raise ValueError(f"{served.name} has no linear head to explain exactly")
            maps, biases = methods.exact_linear(served, values, directions)
            return maps, biases, None, "features", methods.features_image(served, values)
        if method in (INTEGRATED_GRADIENTS, GRADIENT_X_INPUT, GRAD_CAM) and not served.info.differentiable:
            raise ValueError(f"{served.name} cannot be differentiated here: {served.info.why_no_gradient}")
        if method == INTEGRATED_GRADIENTS:
            blank = served.cached("blank_scores", lambda: served.score_batch(np.zeros_like(image))[0]) @ directions.T
            return methods.integrated_gradients(served, x, directions), None, blank, "input", x.astype(np.float64)
        if method == GRADIENT_X_INPUT:
            return methods.gradient_x_input(served, x, directions), None, None, "input", x.astype(np.float64)
        if method == GRAD_CAM:
            return methods.grad_cam(served, x, directions), None, None, "input", x.astype(np.float64)
        if method == OCCLUSION:
            return methods.occlusion(served, x, directions), None, None, "input", x.astype(np.float64)
        if method == RISE:
            return methods.rise(served, x, directions), None, None, "input", x.astype(np.float64)
        raise ValueError(f"unknown method {method!r}; choose one of {', '.join(METHODS)}")


def _served_onnx(predictor, name: str) -> Path:
    return predictor.paths(name)["onnx"]


@contextlib.contextmanager
def one_blas_thread():
    """BLAS on one thread while explaining. The backward pass is many small matrix products, and on
    shared cores OpenBLAS's threads wait for each other: a [3872, 64] @ [64, 32] product took 12-38 ms
    with 2 threads on the loaded 2-core machine, 0.3 ms with 1. The explanation workers start with one
    thread (inference/pool_worker.py: then this changes nothing); elsewhere (the server process's
    fallback, tests, benchmarks) the limit holds for the whole process while it lasts (~0.04 ms)."""
    with _blas_controller().limit(limits=1, user_api="blas"):
        yield


@functools.lru_cache(maxsize=1)
def _blas_controller():
    from threadpoolctl import ThreadpoolController  # scikit-learn's dependency: in every install

    return ThreadpoolController()


def _layer_views(served: ServedGraph, values: dict) -> list[LayerView]:
    views = []
    for layer in served.info.layers:
        activations = np.asarray(values[layer.value], np.float32)[0]  # [C, h, w]
        if activations.ndim != 3:
            continue
        strengths = activations.mean(axis=(1, 2))
        order = np.argsort(-strengths, kind="stable")
        views.append(LayerView(layer.title, layer.kind, activations[order], [int(i) for i in order],
                               [float(strengths[i]) for i in order]))
    return views


def _item(array: np.ndarray | None, index: int) -> float | None:
    return None if array is None else float(array[index])


def _difference(array: np.ndarray | None) -> float | None:
    return None if array is None else float(array[0] - array[1])


def _rounded(values: np.ndarray) -> list[list[float]]:
    """28x28 floats for JSON, rounded at the 8th significant digit of the map's largest value: a map's
    784 rounded terms still add up to their sum within 784 x 5e-9 x largest (4e-5 for a largest of 10)."""
    largest = float(np.abs(values).max())
    decimals = 8 - int(np.ceil(np.log10(largest))) if largest > 0 else 0
    return np.round(np.asarray(values, np.float64), max(decimals, 0)).tolist()
