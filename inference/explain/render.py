"""Explanations as small PNGs: maps over the image they explain, weight images, layer mosaics.

Colours (Okabe & Ito's palette, told apart with every common colour-vision deficiency):
blue argues FOR the digit, orange AGAINST it, over the drawing in dim grey. Each image is
28x28 (a mosaic: a few hundred pixels) and ~0.3-2 KB; the page enlarges them pixelated.
"""
from __future__ import annotations

import base64
import io

import numpy as np
from PIL import Image

FOR = np.array([0, 114, 178], np.float64)  # blue
AGAINST = np.array([230, 159, 0], np.float64)  # orange
INK_GREY = 0.35  # the drawing under a map: dim, so the colours read first
TILE_GAP = 1  # px between a mosaic's tiles
MOSAIC_COLUMNS = 8


def data_url(image: Image.Image) -> str:
    buffer = io.BytesIO()
    # Level 1: these images are a few hundred pixels; stronger compression saved ~5% and cost 3x the time.
    image.save(buffer, format="PNG", compress_level=1)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def map_image(values: np.ndarray, under: np.ndarray, scale: float) -> Image.Image:
    """A signed map over `under` (the 28x28 image it explains, 0..1): blue for, orange against,
    opacity sqrt(|value| / scale), capped at 1 (the same `scale` for maps meant to be compared).
    The square root: a map's evidence is spread over many pixels, and on a linear opacity all
    but its few strongest pixels looked like bare ink."""
    strength = (np.sqrt(np.clip(np.abs(values) / scale, 0.0, 1.0))[..., None] if scale > 0
                else np.zeros((*values.shape, 1)))
    colour = np.where((values >= 0)[..., None], FOR, AGAINST)
    grey = (np.clip(under, 0.0, 1.0) * INK_GREY * 255.0)[..., None]
    pixels = grey * (1.0 - strength) + colour * strength
    return Image.fromarray(np.round(pixels).astype(np.uint8), mode="RGB")


def signed_image(values: np.ndarray, scale: float) -> Image.Image:
    """A signed array on black (weight images): blue positive, orange negative."""
    return map_image(values, np.zeros_like(values), scale)


def grey_image(values: np.ndarray) -> Image.Image:
    """A 0..1 image as white ink on black, the way the models read it."""
    return Image.fromarray(np.round(np.clip(values, 0.0, 1.0) * 255.0).astype(np.uint8), mode="L")


def mosaic(maps: np.ndarray, scale: float) -> Image.Image:
    """Activation maps [C, h, w] (already in display order) as tiles, MOSAIC_COLUMNS a row, white =
    strong: one image per layer instead of C small ones."""
    count, height, width = maps.shape
    columns = min(MOSAIC_COLUMNS, count)
    rows = -(-count // columns)
    canvas = np.full((rows * (height + TILE_GAP) - TILE_GAP, columns * (width + TILE_GAP) - TILE_GAP), 40, np.uint8)
    levels = np.round(np.clip(maps / scale, 0.0, 1.0) * 255.0).astype(np.uint8) if scale > 0 else np.zeros_like(
        maps, np.uint8)
    for index in range(count):
        row, column = divmod(index, columns)
        top, left = row * (height + TILE_GAP), column * (width + TILE_GAP)
        canvas[top:top + height, left:left + width] = levels[index]
    return Image.fromarray(canvas, mode="L")


def enlarged(image: Image.Image, factor: int = 5) -> Image.Image:
    """A copy `factor` times larger, pixels kept square (for clients that show images as they are)."""
    return image.resize((image.width * factor, image.height * factor), Image.Resampling.NEAREST)
