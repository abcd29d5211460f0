"""The evaluation's writers' conventions: the issue-21 conventions, written by a different generator.

training/conventions.py teaches the models these conventions with Bezier curves, arcs and
polylines of its own proportions, drawn by the fast renderer with the training pens. Here
the same conventions are written by benchmarks/browser/motor_pen.py (a pen with inertia following
jittered via-points: rounded corners, overshoot), with other proportions (listed per
convention below), stronger slant (up to 0.3 against 0.18) and narrower or wider hands,
and drawn the long way (training/strokes.py: skeleton, 280 px canvas, the app's own
inference.preprocess) with the three pens the issue's people sets were rendered with
(EVAL_PENS). So a model scores on conventions, not on the training generator's shapes.

    strokes = CONVENTIONS["four_cursive"][1](rng)     # via-point strokes of one drawing
"""
from __future__ import annotations

from typing import Callable

import numpy as np

from benchmarks.browser.motor_pen import Writer, ellipse, write
from training.strokes import Distortion, Pen

# The renderings of its people sets: a 14 px pen ~190 px tall near the centre, an 8 px
# pen ~70 px tall off-centre, a 26 px pen ~240 px tall. Pen.width is the pen over the drawing's size.
EVAL_PENS = (
    Pen(size=(170, 210), small_share=0.0, width=(14 / 210, 14 / 170), min_width=2.5, jitter=25),
    Pen(size=(60, 80), small_share=1.0, small_size=(60, 80), width=(8 / 80, 8 / 60), min_width=2.5),
    Pen(size=(225, 255), small_share=0.0, width=(26 / 255, 26 / 225), min_width=2.5, jitter=10),
)
# The motor pen is the hand: only a light warp on top of it.
EVAL_DISTORTION = Distortion(rotation=5.0, shear=0.05, aspect=0.05, elastic=1.0)


def _u(rng, low, high):
    return float(rng.uniform(low, high))


def four_cursive(rng):
    """One stroke: down, a round bottom, up to the right, then back down through the rising arm.
    (Training: the rise ends at x 0.7-0.95 and the stem crosses near bar height; here the bottom
    is rounder and lower, the rise shorter, and half the stems come down straight from the top.)"""
    bottom = _u(rng, 0.55, 0.75)
    top_right = (_u(rng, 0.7, 0.9), _u(rng, 0.0, 0.15))
    arm = [(_u(rng, 0.1, 0.3), 0.0), (_u(rng, 0.05, 0.2), bottom - 0.2), (0.3, bottom + 0.05),
           (0.6, bottom - 0.02), top_right]
    foot = (top_right[0] - _u(rng, 0.0, 0.3), 1.0)
    return [arm + [foot]]


def four_open(rng):
    """Two strokes, the arm bent into the bar; the stem starts above the arm."""
    bar = _u(rng, 0.5, 0.65)
    stem_x = _u(rng, 0.55, 0.7)
    return [[(_u(rng, 0.05, 0.25), _u(rng, 0.05, 0.2)), (0.05, bar), (_u(rng, 0.85, 1.0), bar)],
            [(stem_x, 0.0), (stem_x - _u(rng, -0.05, 0.1), 1.0)]]


def four_closed(rng):
    stem_x = _u(rng, 0.6, 0.75)
    bar = _u(rng, 0.6, 0.7)
    return [[(stem_x, 0.0), (0.0, bar), (1.0, bar)], [(stem_x, 0.0), (stem_x, 1.0)]]


def one_long_flag(rng):
    """Flag from its end up to the top, then the stem, and a foot (65%). (Training's flags fall
    30-55 degrees over 30-50% of the height; here 25-45 degrees over 35-55%.)"""
    reach = _u(rng, 0.35, 0.55)
    drop = reach * np.tan(np.deg2rad(_u(rng, 25, 45)))
    strokes = [[(0.55 - reach, drop), (0.55, 0.0), (0.5, 1.0)]]
    if rng.random() < 0.65:
        strokes.append([(0.2, 1.0), (0.8, 1.0)])
    return strokes


def one_european(rng):
    """A European 1: a short upstroke then the stem, no foot."""
    return [[(0.25, _u(rng, 0.25, 0.4)), (0.6, 0.0), (0.55, 1.0)]]


def seven_hook(rng):
    """A 7 whose bar starts with a little curl, the stem bowing and ending to the left. (Training:
    a falling tick before the bar; here a curl, and a stronger bow.)"""
    return [[(0.1, 0.15), (0.0, 0.07), (0.08, 0.0), (0.95, 0.02), (0.75, 0.35), (0.5, 0.7), (0.35, 1.0)]]


def seven_crossed(rng):
    middle = _u(rng, 0.4, 0.55)
    return [[(0.0, 0.0), (1.0, 0.0), (0.35, 1.0)],
            [(0.7 - middle * 0.65 - 0.2, middle), (0.7 - middle * 0.65 + 0.25, middle - 0.03)]]


def nine_curl(rng):
    """Loop, then a stem that hooks far left at the bottom like a g."""
    loop = ellipse((0.48, 0.24), (0.3, 0.24), 0.0, -1.0, 9)
    return [loop + [(0.75, 0.6), (0.6, 0.98), (0.3, 0.95), (_u(rng, 0.05, 0.2), _u(rng, 0.7, 0.85))]]


def nine_open(rng):
    """The loop stops short of the stem."""
    loop = ellipse((0.45, 0.25), (0.3, 0.24), _u(rng, 0.2, 0.5), -0.8, 8)
    return [loop, [(0.75, 0.1), (0.72, 1.0)]]


def six_round(rng):
    return [[(0.8, 0.0), (0.35, 0.25), (0.15, 0.65)] + ellipse((0.5, 0.72), (0.33, 0.27), np.pi, -1.0, 9)]


def zero_slashed(rng):
    return [ellipse((0.5, 0.5), (0.35, 0.5), -np.pi / 2, -1.02, 11),
            [(_u(rng, 0.1, 0.25), _u(rng, 0.85, 1.05)), (_u(rng, 0.75, 0.9), _u(rng, -0.05, 0.15))]]


def _cursive(digit: int) -> Callable:
    """`digit` in one stroke (via-points)."""
    paths = {
        0: lambda rng: ellipse((0.5, 0.5), (0.35, 0.5), -np.pi / 2, -_u(rng, 1.05, 1.2), 12),
        1: lambda rng: [(0.3, 0.3), (0.6, 0.0), (0.55, 1.0)],
        2: lambda rng: [(0.1, 0.2), (0.5, 0.0), (0.85, 0.25), (0.3, 0.8), (0.1, 0.95), (0.2, 0.8), (0.35, 0.95),
                        (1.0, 1.0)],
        3: lambda rng: [(0.1, 0.1), (0.6, 0.0), (0.8, 0.2), (0.4, 0.45), (0.35, 0.5), (0.5, 0.45), (0.85, 0.7),
                        (0.6, 1.0), (0.1, 0.9)],
        4: four_cursive,
        5: lambda rng: [(0.9, 0.0), (0.2, 0.02), (0.1, 0.45), (0.6, 0.4), (0.85, 0.7), (0.55, 1.0), (0.05, 0.9)],
        6: lambda rng: six_round(rng)[0],
        7: lambda rng: seven_hook(rng)[0],
        8: lambda rng: [(0.8, 0.1), (0.5, 0.0), (0.2, 0.15), (0.8, 0.7), (0.5, 1.0), (0.2, 0.7), (0.8, 0.15),
                        (0.5, 0.0)],
        9: lambda rng: nine_curl(rng)[0],
    }
    def draw(rng):
        path = paths[digit](rng)
        return path if isinstance(path[0], list) else [path]
    return draw


# name -> (digit, via-point generator)
CONVENTIONS: dict[str, tuple[int, Callable]] = {
    "four_cursive": (4, four_cursive), "four_open": (4, four_open), "four_closed": (4, four_closed),
    "one_long_flag": (1, one_long_flag), "one_european": (1, one_european),
    "seven_hook": (7, seven_hook), "seven_crossed": (7, seven_crossed),
    "nine_curl": (9, nine_curl), "nine_open": (9, nine_open), "six_round": (6, six_round),
    "zero_slashed": (0, zero_slashed),
    **{f"cursive_{digit}": (digit, _cursive(digit)) for digit in range(10)},
}


def written(name: str, count: int, rng: np.random.Generator) -> list:
    """`count` drawings of convention `name`, each by a new writer: polylines (unit box, y down)."""
    digit, via = CONVENTIONS[name]
    return [write(_normalised(via(rng)), Writer.sample(rng), rng) for _ in range(count)]


def _normalised(strokes):
    return [[tuple(map(float, point)) for point in stroke] for stroke in strokes]
