"""The Models tab's figures for one model (the served version): its confusion matrix, what it has
learned, and the test digits it gets most confidently wrong, each with a note in words."""
from __future__ import annotations

import io
import threading
from dataclasses import dataclass
from typing import Any

import numpy as np

from inference.predictor import ModelUnavailableError
from training.evaluation import decode_png
from training.registry import ModelSpec
from ui import learned_plots, plots, views
from ui.model_insights import MEASURED_NOW, Insight, ModelInsights


@dataclass(frozen=True)
class Figures:
    """What the tab shows for one model; a figure is None when there is nothing to draw."""

    confusion: Any
    confusion_note: str
    learned: Any
    learned_note: str
    mistakes: Any
    mistakes_note: str


def figures(spec: ModelSpec, insights: ModelInsights) -> Figures:
    """The served version's figures as matplotlib figures."""
    try:
        insight = insights.get(spec.name)
    except ModelUnavailableError as error:
        return unavailable(error)
    return figures_of(spec, insight)


def unavailable(error: ModelUnavailableError) -> Figures:
    return Figures(None, f"No figures: {error.reason}.", None, "", None, "")


def figures_of(spec: ModelSpec, insight: Insight) -> Figures:
    return Figures(*confusion(spec, insight), *learned(spec, insight), *mistakes(spec, insight))


class RenderedFigures:
    """The figures drawn once per served version, as images: the tab is opened far more often than a
    model changes, and drawing them took 0.5-1.5 s of CPU per model each time (measured under load 9-14),
    time in which the GIL-bound drawing slowed every other request of the server."""

    def __init__(self, insights: ModelInsights):
        self.insights = insights
        self._cache: dict[str, tuple[Insight, Figures]] = {}
        self._locks = {name: threading.Lock() for name in insights.predictor.names}

    def get(self, spec: ModelSpec) -> Figures:
        """Figures whose `confusion`, `learned` and `mistakes` are PIL images (or None)."""
        try:
            insight = self.insights.get(spec.name)  # cached against the files: the same object until they change
        except ModelUnavailableError as error:
            return unavailable(error)
        with self._locks[spec.name]:
            cached = self._cache.get(spec.name)
            if cached is not None and cached[0] is insight:
                return cached[1]
            shown = figures_of(spec, insight)
            rendered = Figures(to_image(shown.confusion), shown.confusion_note, to_image(shown.learned),
                               shown.learned_note, to_image(shown.mistakes), shown.mistakes_note)
            self._cache[spec.name] = (insight, rendered)
            return rendered


def to_image(figure):
    """A matplotlib figure as an RGB PIL image (None stays None)."""
    if figure is None:
        return None
    from PIL import Image

    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    buffer.seek(0)
    with Image.open(buffer) as image:
        return image.convert("RGB")


def _which(spec: ModelSpec, insight: Insight) -> str:
    version = f" version {insight.version}" if insight.version else ""
    return f"{views.short_title(spec.title)}{version}"


def confusion(spec: ModelSpec, insight: Insight) -> tuple[Any, str]:
    results = insight.results
    if results is None:
        return None, insight.missing or ""
    matrix = np.asarray(results["confusion_matrix"], dtype=np.int64)
    title = f"{views.short_title(spec.title)}: {results['accuracy']:.2%} of {results['images']:,} correct"
    when = ("measured now through ONNX Runtime on this machine's MNIST test set"
            if insight.results_from == MEASURED_NOW
            else "recorded with the model: its served ONNX file run on the MNIST test set")
    return (plots.confusion_figure(matrix, title),
            f"{_which(spec, insight)}, {when}: **{results['accuracy']:.2%}** of {results['images']:,} test images "
            f"correct. Rows: the true digit; columns: what the model read.")


def learned(spec: ModelSpec, insight: Insight) -> tuple[Any, str]:
    short, found = views.short_title(spec.title), insight.learned
    if found.digit_weights is not None:
        scale = float(np.max(np.abs(found.digit_weights)))
        return (learned_plots.weights_figure(found.digit_weights, f"What {short} thinks each digit looks like"),
                f"**What {short} thinks each digit looks like:** its weight for every pixel of the "
                f"{spec.input_space}, one image per digit, read from the served ONNX file ({_which(spec, insight)}). "
                f"Red: ink there argues for that digit (raises its score); blue: ink there argues against it; "
                f"white: no say. One colour scale for all ten (±{scale:.2f}).")
    if found.first_filters is not None:
        count, (height, width) = len(found.first_filters), found.first_filters.shape[1:]
        scale = float(np.max(np.abs(found.first_filters)))
        return (learned_plots.filters_figure(found.first_filters, f"{short}'s first-layer filters"),
                f"**What {short}'s first layer looks for:** its {count} {height}×{width} filters, read from the served "
                f"ONNX file ({_which(spec, insight)}). Each slides over the whole image and its map lights up where "
                f"the ink matches it: red weights want ink, blue ones want blank paper, white ones do not care. "
                f"One colour scale for all {count} (±{scale:.2f}).")
    return (None, f"{short}'s graph has no weights that read as images (neither a linear map from the 784 pixels "
                  f"to the ten digits nor a convolution over the image): its test-set figures show what it has learned.")


def mistakes(spec: ModelSpec, insight: Insight) -> tuple[Any, str]:
    results, short = insight.results, views.short_title(spec.title)
    if results is None:
        return None, ""
    shown, images, lines = [], [], []
    for m in results.get("confident_mistakes") or []:
        try:
            image = decode_png(m["png"])
            label, read = int(m["label"]), int(m["read"])
            line = (f"- test image #{int(m['index'])}: a **{label}** read as **{read}**, "
                    f"{views.format_sure(m['confidence'])} sure ({views.format_sure(m['label_probability'])} for {label})")
        except (KeyError, TypeError, ValueError):
            continue  # a damaged entry: left out rather than failing the tab
        shown.append(m)
        images.append(image)
        lines.append(line)
    if not shown:
        return None, f"{short} got none of the {results['images']:,} test images wrong."
    return (learned_plots.mistakes_figure(shown, images, f"{short}: most confidently wrong"),
            f"**The test digits {short} gets most confidently wrong** ({_which(spec, insight)}; its own "
            f"probabilities):\n" + "\n".join(lines))
