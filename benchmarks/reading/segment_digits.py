"""Digits drawn in a style MNIST lacks: seven-segment display strokes, as a canvas PNG.

A helper for personalised training (issue 12; tests/segments.py re-exports it): the shipped models read these
badly, so learning from a few dozen of them shows up clearly in held-out accuracy.
Each drawing is jittered (size, position, slant, stroke width, segment ends) from a seed.
"""
from __future__ import annotations

import io

import numpy as np
from PIL import Image, ImageDraw

# Segments a-g of a display as unit-square strokes: (x0, y0, x1, y1), y down.
SEGMENTS = {"a": (0, 0, 1, 0), "b": (1, 0, 1, 0.5), "c": (1, 0.5, 1, 1), "d": (0, 1, 1, 1),
            "e": (0, 0.5, 0, 1), "f": (0, 0, 0, 0.5), "g": (0, 0.5, 1, 0.5)}
DIGIT_SEGMENTS = {0: "abcdef", 1: "bc", 2: "abged", 3: "abgcd", 4: "fgbc", 5: "afgcd", 6: "afgedc", 7: "abc",
                  8: "abcdefg", 9: "abcdfg"}


def segment_digit(digit: int, seed: int = 0, side: int = 280) -> bytes:
    """A 280x280 PNG, black strokes on white, of `digit` in seven-segment style."""
    rng = np.random.default_rng(seed * 10 + digit)
    image = Image.new("L", (side, side), 255)
    pen = ImageDraw.Draw(image)
    height = side * rng.uniform(0.45, 0.75)
    width = height * rng.uniform(0.45, 0.65)
    left = rng.uniform(0.1 * side, side - width - 0.1 * side)
    top = rng.uniform(0.08 * side, side - height - 0.08 * side)
    slant = rng.uniform(-0.15, 0.25)
    stroke = int(rng.integers(10, 24))

    def point(x: float, y: float) -> tuple[float, float]:
        jitter = rng.normal(0, 0.03, 2)
        return (left + (x + jitter[0]) * width + (1 - y) * slant * height, top + (y + jitter[1]) * height)

    for name in DIGIT_SEGMENTS[digit]:
        x0, y0, x1, y1 = SEGMENTS[name]
        pen.line([point(x0, y0), point(x1, y1)], fill=0, width=stroke)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()
