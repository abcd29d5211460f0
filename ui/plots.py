"""Plots: the live training curves (pandas frames for gr.LinePlot) and the confusion matrix (matplotlib)."""
from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

MAX_CURVE_POINTS = 200  # per series: enough for a smooth curve, small enough to stream several times a second
CURVE_COLUMNS = ["epoch", "value", "series"]

TRAIN_ACCURACY = "training (running)"
VAL_ACCURACY = "validation"
TRAIN_LOSS = "training loss"


def empty_curve(series: tuple[str, ...] = ()) -> pd.DataFrame:
    """A frame with no points, but one placeholder row (NaN, not drawn) per series.

    gr.LinePlot fixes its colour domain from the first data it renders and later
    updates only swap the data, so every frame names all of its series from the start.
    """
    return pd.DataFrame({"epoch": [float("nan")] * len(series), "value": [float("nan")] * len(series),
                         "series": list(series)})


ACCURACY_SERIES = (TRAIN_ACCURACY, VAL_ACCURACY)
LOSS_SERIES = (TRAIN_LOSS,)
# Fixed colours, named in the plot titles: gr.LinePlot's legend loses its entries when
# streamed updates swap the data, so the legend is off.
CURVE_COLORS = {TRAIN_ACCURACY: "#4f46e5", VAL_ACCURACY: "#f59e0b", TRAIN_LOSS: "#e11d48"}
ACCURACY_TITLE = "Accuracy: training (indigo), validation (amber)"
LOSS_TITLE = "Training loss"


def _position(event: dict[str, Any]) -> float | None:
    """Where an event lies on the x axis, in epochs (3.5 = halfway through the 4th epoch)."""
    epoch = event.get("epoch")
    if epoch is None:
        return None
    batch, batches = event.get("batch"), event.get("batches")
    if batch is not None and batches:
        return (epoch - 1) + batch / batches
    return float(epoch)  # an end-of-epoch event


def _thin(rows: list[tuple[float, float]], limit: int) -> list[tuple[float, float]]:
    if len(rows) <= limit:
        return rows
    keep = np.linspace(0, len(rows) - 1, limit).round().astype(int)
    return [rows[i] for i in sorted(set(keep.tolist()))]


def training_curves(history: list[dict[str, Any]], limit: int = MAX_CURVE_POINTS) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(accuracy frame, loss frame) with columns epoch, value, series, from JobManager history events."""
    series: dict[str, list[tuple[float, float]]] = {TRAIN_ACCURACY: [], VAL_ACCURACY: [], TRAIN_LOSS: []}
    for event in history:
        if "state" in event:  # the job's terminal event: its accuracy is the test accuracy, not a curve point
            continue
        x = _position(event)
        if x is None:
            continue
        for key, name in (("accuracy", TRAIN_ACCURACY), ("val_accuracy", VAL_ACCURACY), ("loss", TRAIN_LOSS)):
            if event.get(key) is not None:
                series[name].append((x, float(event[key])))

    def frame(names: tuple[str, ...]) -> pd.DataFrame:
        rows = [(x, y, name) for name in names for x, y in _thin(series[name], limit)]
        missing = tuple(name for name in names if not series[name])
        placeholders = empty_curve(missing)
        points = pd.DataFrame(rows, columns=CURVE_COLUMNS)
        return pd.concat([placeholders, points], ignore_index=True) if rows else placeholders

    return frame(ACCURACY_SERIES), frame(LOSS_SERIES)


def confusion_figure(matrix: np.ndarray, title: str):
    """A labelled confusion-matrix heat map (rows: true digit, columns: predicted digit)."""
    # Imported here: matplotlib is only needed once the Models tab is opened.
    from matplotlib.figure import Figure
    from sklearn.metrics import ConfusionMatrixDisplay

    # Placed by hand: constrained layout made drawing it ~0.3 s slower (0.37-0.53 s against 0.78 s here).
    figure = Figure(figsize=(5.2, 4.6), dpi=100)
    figure.subplots_adjust(left=0.12, right=0.97, bottom=0.11, top=0.92)
    axes = figure.add_subplot()
    ConfusionMatrixDisplay(np.asarray(matrix), display_labels=list(range(10))).plot(
        ax=axes, cmap="Blues", colorbar=False, values_format="d", text_kw={"fontsize": 7})
    axes.set_title(title, fontsize=11)
    axes.set_xlabel("Predicted digit")
    axes.set_ylabel("True digit")
    return figure
