"""The benchmark's deletion test and sanity check on a small sample (the ten pen-drawn digits):
the shipped maps find the evidence better than the ink alone, and they depend on what the model
learned. The full figures: `python -m benchmarks --only explain` (benchmarks/explain/explain.py)."""
from __future__ import annotations

import numpy as np
import pytest

from benchmarks.explain.faithfulness import deletion, learned_weights, randomised_explainer, rank_correlations
from benchmarks.browser.pen import DIGIT_STROKES, canvas_png
from inference.explain.explainer import Explainer
from inference.preprocess import preprocess
from training.registry import MODELS


@pytest.fixture(scope="module")
def explainer(exports_copy) -> Explainer:
    if not all((exports_copy / f"{name}.onnx").is_file() for name in MODELS):
        pytest.skip("every registry model's shipped export is needed")
    return Explainer({name: exports_copy / f"{name}.onnx" for name in MODELS}, **Explainer.registry_settings(MODELS))


@pytest.fixture(scope="module")
def drawings() -> np.ndarray:
    return np.stack([preprocess(canvas_png(strokes)) for strokes in DIGIT_STROKES.values()])


@pytest.mark.parametrize("name", list(MODELS))
def test_deleting_the_maps_evidence_first_drops_the_answer_faster_than_the_ink_alone(explainer, drawings, name):
    result = deletion(explainer, name, explainer.method_for(name), drawings)
    assert result.mean("map") < result.mean("ink") < result.mean("random")
    assert result.mean("map") < result.mean("reverse")
    assert np.mean(result.areas["map"] < result.areas["ink"]) >= 0.7  # on most drawings, not on average only
    for curve in result.curves.values():  # from the drawing (its top class's probability) to a blank canvas
        assert curve[0] > 0.5 and len(curve) == 99


@pytest.mark.parametrize("name", list(MODELS))
def test_the_maps_change_when_the_weights_are_random(explainer, drawings, name):
    randomised = randomised_explainer(explainer, name, seed=1)
    served = explainer.graphs.get(name)
    assert learned_weights(served)  # the copy differs where the model learned, and answers differently
    assert not np.allclose(randomised.graphs.get(name).score_batch(drawings), served.score_batch(drawings))
    method = explainer.method_for(name)
    correlations = rank_correlations(explainer, randomised, name, method, drawings[:6])
    assert abs(np.median(correlations)) < 0.5, correlations
    # The check can fail: the same model's maps correlate perfectly, as any map blind to the weights would.
    assert np.allclose(rank_correlations(explainer, explainer, name, method, drawings[:2]), 1.0)
