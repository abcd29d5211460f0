"""The Models tab's pictures of what a model has learned (matplotlib figures for gr.Plot): digit
weight images, first-layer filters, and the test digits it gets most confidently wrong.

Each picture is one image of tiles (a mosaic, tiles apart by PAD blank pixels) in one set of
axes, placed by hand: 10 or 32 small axes under constrained layout took ~3x as long to draw
(4.2 s against 1.4 s for the ten weight images, measured here under load 13), and constrained
layout alone added ~0.3 s per figure; the tab draws several figures every time it is opened.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from ui.views import format_sure

# Diverging colours, red for positive and blue for negative, white at zero: one scale per figure,
# symmetric about zero, so a colour means the same weight in every tile.
DIVERGING = "RdBu_r"
PAD = 2  # blank pixels between tiles (drawn as the figure's background)
WEIGHTS_PAD = 6  # room for the digit above each weight image
MISTAKES_PAD = 16  # room for two lines of caption above each mistake
WIDTH = 5.6  # inches at 100 dpi: fits a Models-tab column


def mosaic(tiles: np.ndarray, columns: int, pad: int = PAD) -> np.ndarray:
    """Tiles [K, h, w] laid out row by row in `columns` columns, NaN (drawn blank) between and after them."""
    count, height, width = tiles.shape
    rows = -(-count // columns)
    out = np.full((rows * (height + pad) - pad, columns * (width + pad) - pad), np.nan)
    for index, tile in enumerate(tiles):
        row, column = divmod(index, columns)
        out[row * (height + pad):row * (height + pad) + height,
            column * (width + pad):column * (width + pad) + width] = tile
    return out


def tile_origin(index: int, shape: tuple[int, int], columns: int, pad: int = PAD) -> tuple[int, int]:
    """(row, column) of tile `index`'s top-left pixel in mosaic()."""
    row, column = divmod(index, columns)
    return row * (shape[0] + pad), column * (shape[1] + pad)


def _figure(height: float, with_legend: bool):
    # Imported here: matplotlib is only needed once the Models tab is opened.
    from matplotlib.figure import Figure

    figure = Figure(figsize=(WIDTH, height), dpi=100)
    right = 0.78 if with_legend else 0.98
    axes = figure.add_axes((0.02, 0.02, right - 0.02, 0.84))
    axes.set_axis_off()
    return figure, axes


def _scale(values: np.ndarray) -> float:
    largest = float(np.max(np.abs(values))) if values.size else 0.0
    return largest if largest > 0 else 1.0  # an all-zero model still draws (all white)


def _legend(figure, image, scale: float, words: tuple[str, str, str]) -> None:
    """A colour bar labelled in words (and the numbers its ends stand for)."""
    bar = figure.colorbar(image, cax=figure.add_axes((0.8, 0.1, 0.025, 0.7)), ticks=[-scale, 0.0, scale])
    low, middle, high = words
    bar.ax.set_yticklabels([f"{low}\n({-scale:.2g})", middle, f"{high}\n(+{scale:.2g})"], fontsize=7)


def _diverging(tiles: np.ndarray, columns: int, height: float, title: str, words: tuple[str, str, str],
               labels: list[str] | None = None, pad: int = PAD):
    tiles = np.asarray(tiles, dtype=np.float64)
    scale = _scale(tiles)
    figure, axes = _figure(height, with_legend=True)
    image = axes.imshow(mosaic(tiles, columns, pad), cmap=DIVERGING, vmin=-scale, vmax=scale,
                        interpolation="nearest")
    for index, label in enumerate(labels or []):
        top, left = tile_origin(index, tiles.shape[1:], columns, pad)
        axes.text(left + tiles.shape[2] / 2 - 0.5, top - 0.8, label, ha="center", va="bottom", fontsize=9)
    _legend(figure, image, scale, words)
    figure.suptitle(title, fontsize=10, y=0.98)
    return figure


def weights_figure(weights: np.ndarray, title: str):
    """Ten 28x28 weight images (digit c's weight per pixel), red raising and blue lowering its score."""
    return _diverging(weights, 5, 3.0, title, ("ink here:\nagainst", "no say", "ink here:\nfor"),
                      labels=[str(digit) for digit in range(len(weights))], pad=WEIGHTS_PAD)


def filters_figure(filters: np.ndarray, title: str):
    """The first layer's kernels in rows of 8, on one diverging scale."""
    columns = min(8, len(filters))
    rows = -(-len(filters) // columns)
    return _diverging(filters, columns, 0.55 * rows + 0.7, title, ("wants blank", "no say", "wants ink"))


def mistakes_figure(mistakes: list[dict[str, Any]], images: list[np.ndarray], title: str):
    """The test digits (dark ink on white, as drawn) with what the model read and how sure it was."""
    columns = min(4, max(1, len(images)))
    rows = -(-len(images) // columns)
    figure, axes = _figure(1.6 * rows + 0.5, with_legend=False)
    tiles = np.asarray(images, dtype=np.float64)
    axes.imshow(mosaic(tiles, columns, MISTAKES_PAD), cmap="gray_r", vmin=0, vmax=255, interpolation="nearest")
    for index, mistake in enumerate(mistakes):
        top, left = tile_origin(index, (28, 28), columns, MISTAKES_PAD)
        axes.text(left + 13.5, top - 0.8, f"a {mistake['label']} read as {mistake['read']}\n"
                  f"{format_sure(mistake['confidence'])} sure", ha="center", va="bottom", fontsize=8)
    figure.suptitle(title, fontsize=10, y=0.98)
    return figure
