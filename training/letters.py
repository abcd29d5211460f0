"""Handwriting-like letters for the training mix's non-digits (outlier exposure, issue 21).

The mix's "font" non-digits are stroke-font letters warped as a whole; real people's
letters were refused less often than those (issue 21: 77-78% of real handwritten letters
flagged against 92-93% of the benchmarks' font letters). These are the training fonts'
letters (canvas_data.TRAIN_FONTS) written less neatly, stroke by stroke: each stroke is
bent by its own smooth random displacement along its length, the strokes of a letter
drift apart a little (the pen lifted and came back), and the letter leans.

The letters are LETTERS plus D, J and j, which the issue's real letters
include and the served verdicts accepted most often; Q stays out (a 0 with a tail in
too many hands). The evaluation's handwritten letters come from a different generator
(benchmarks/reading/handwritten_letters.py: an alphabet of via-points written by a pen with
inertia) that training never calls.
"""
from __future__ import annotations

import string

import numpy as np

from training import fast_canvas, strokes

# Letters that ARE digits in many hands (O/0, I/l/1, S/5, Z/2, B/8, b/6, g/q/9, T/7, ...)
# are neither taught as non-digits nor counted as such.
DIGIT_LIKE_LETTERS = "OoQDIilJjSsZzBbGgqT"
LETTERS = "".join(c for c in string.ascii_letters if c not in DIGIT_LIKE_LETTERS)

EXTRA_LETTERS = "DJj"  # digit-like enough to be kept out of the font non-digits, refused too seldom in real hands


def hand_letters() -> str:
    return LETTERS + EXTRA_LETTERS


def handwritten(items, rng: np.random.Generator) -> list[np.ndarray]:
    """Letters (font, char) of the training fonts written by a less careful hand, as centre-line
    points in the work frame (float32 [P, 2], row and col; fast_canvas's frame), all at once."""
    glyphs = [strokes.hershey_strokes(font, char) for font, char in items]
    points, stroke_of, along, drawing_of_stroke, per_drawing = fast_canvas.drawings_points(glyphs, strokes_too=True)
    size = strokes.WORK_SIDE - 2 * strokes.WORK_MARGIN  # the letter's longer side, work px
    count = len(drawing_of_stroke)
    # Per stroke and axis, two sinusoids along the arc length: a smooth wobble of 1-2.5% of the letter each.
    amplitude = rng.uniform(0.01, 0.025, (count, 2, 2)) * size
    wavelength = rng.uniform(0.3, 1.2, (count, 2, 2)) * size
    phase = rng.uniform(0, 2 * np.pi, (count, 2, 2))
    lifted = rng.normal(0.0, 0.02, (count, 2)) * size  # where the pen came down again
    shear = rng.uniform(-0.3, 0.3, len(items))[drawing_of_stroke][stroke_of]
    wave = amplitude[stroke_of] * np.sin(2 * np.pi * along[:, None, None] / wavelength[stroke_of] + phase[stroke_of])
    moved = points.astype(np.float64) + wave.sum(axis=2) + lifted[stroke_of]  # axes: row, col
    moved[:, 1] -= shear * (moved[:, 0] - strokes.WORK_SIDE / 2.0)  # the letter leans
    return np.split(moved.astype(np.float32), np.cumsum(per_drawing)[:-1])
