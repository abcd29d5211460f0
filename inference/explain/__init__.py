"""Why a model reads a drawing as it does: explanations computed from the served ONNX version
(onnxruntime and numpy only: the serving install without TensorFlow explains too).

    graph.py      what a graph lets us explain (a linear head, a differentiable path, its layers)
    served.py     the served version of each model, run with its intermediate values exposed
    backprop.py   numpy gradients through the served graph's operations
    methods.py    exact terms, integrated gradients, gradient x input, Grad-CAM, occlusion
    explainer.py  one model's explanation: three maps, its weight images or its layers
    render.py     the maps as small PNGs
"""
from inference.explain.explainer import Explainer, Explanation

__all__ = ["Explainer", "Explanation"]
