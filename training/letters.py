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
(benchmarks/handwritten_letters.py: an alphabet of via-points written by a pen with
inertia) that training never calls.
"""
from __future__ import annotations

import string

import numpy as np

from training import strokes

# Letters that ARE digits in many hands (O/0, I/l/1, S/5, Z/2, B/8, b/6, g/q/9, T/7, ...)
# are neither taught as non-digits nor counted as such.
DIGIT_LIKE_LETTERS = "OoQDIilJjSsZzBbGgqT"
LETTERS = "".join(c for c in string.ascii_letters if c not in DIGIT_LIKE_LETTERS)

EXTRA_LETTERS = "DJj"  # digit-like enough to be kept out of the font non-digits, refused too seldom in real hands


def hand_letters() -> str:
    return LETTERS + EXTRA_LETTERS


def handwritten(font: str, char: str, rng: np.random.Generator) -> list[np.ndarray]:
    """One letter of a training font, written by a less careful hand: polylines float [N, 2] (x, y down)."""
    glyph = [np.asarray(stroke, np.float64) for stroke in strokes.hershey_strokes(font, char)]
    points = np.concatenate(glyph)
    low = points.min(axis=0)
    scale = 1.0 / max(float((points.max(axis=0) - low).max()), 1e-6)
    shear = rng.uniform(-0.3, 0.3)
    # Per stroke and axis, two sinusoids along the arc length: a smooth wobble of 1-2.5% of the letter each.
    amplitude = rng.uniform(0.01, 0.025, (len(glyph), 2, 2))
    wavelength = rng.uniform(0.3, 1.2, (len(glyph), 2, 2))
    phase = rng.uniform(0, 2 * np.pi, (len(glyph), 2, 2))
    lifted = rng.normal(0.0, 0.02, (len(glyph), 2))  # where the pen came down again
    out = []
    for index, stroke in enumerate(glyph):
        xy = (stroke - low) * scale
        if len(xy) > 1:  # densified, so the wobble bends the stroke and not only its corners
            along = np.concatenate([[0.0], np.cumsum(np.hypot(*np.diff(xy, axis=0).T))])
            if along[-1] > 0:
                t = np.linspace(0.0, along[-1], max(2, int(along[-1] / 0.03) + 1))
                xy = np.stack([np.interp(t, along, xy[:, 0]), np.interp(t, along, xy[:, 1])], 1)
                xy += (amplitude[index, :, None, :] * np.sin(2 * np.pi * t[None, :, None] / wavelength[index, :, None, :]
                                                             + phase[index, :, None, :])).sum(axis=2).T
        xy = xy + lifted[index]
        xy[:, 0] -= shear * (xy[:, 1] - 0.5)
        out.append(xy)
    return out
