"""Writers' conventions MNIST lacks, as stroke-level variants for the training mix (issue 21).

People's drawings the shipped models misread (measured by the issue's authors on pen-tablet
and phone writers) and conventions from the world's handwriting:

    four_cursive   a 4 in one stroke with a curved, open top: down, curving right and up,
                   then down through the crossing ("ɥ"); read as 9 or 6 (30% of phone 4s)
    four_closed    a closed (triangular) 4, for balance with the open ones
    one_long_flag  a 1 with a long flag and often a foot (read as 2 or 7); the European 1
    seven_hook     a 7 whose bar starts with a small hook and whose stem curves down to the
                   left (read as 2), crossed (European 7) or not
    nine_curl      a 9 whose stem curls to the left at the bottom like a g (read as 3)
    nine_open      a 9 whose loop is left open
    six_round      6s with a big round loop and a short or hooked top (read as 8)
    cursive        every digit written in one stroke, with the loops and hooks a joined hand makes
                   (a looped 2, a 3 with a loop in the middle, a 5 whose bar comes first, a
                   figure-of-eight 8, a 0 that overlaps at the top, a 1 up its flag and down)

and edits of MNIST training digits (a skeleton plus strokes, like strokes.flag_and_foot_lines):

    one_long_flag_edit   an MNIST 1 with a long flag and often a foot
    seven_hook_edit      an MNIST 7 whose bar starts with a hook
    nine_curl_edit       an MNIST 9 whose stem ends in a curl to the left

Every generator here returns polylines (float [N, 2] arrays or lists of points; x right, y
down, any unit: the renderer fits them to the frame) and draws every random choice from the Generator it is given. The evaluation's
drawings of the same conventions are written by a different generator with different
proportions (benchmarks/reading/written_conventions.py: a pen that follows via-points with inertia),
so a model is not scored on the shapes it was trained on; tests/test_conventions.py checks
that the training mix never calls it.
"""
from __future__ import annotations

from typing import Callable

import numpy as np

Polyline = "list[tuple[float, float]] | np.ndarray"  # points (x, y), y down


def _bezier(points, count: int = 16) -> np.ndarray:
    """A Bezier curve with these control points (any degree), de Casteljau: [count, 2]."""
    curve = np.asarray(points, np.float64)[:, None, :]
    t = np.linspace(0.0, 1.0, count)[None, :, None]
    while len(curve) > 1:
        curve = (1 - t) * curve[:-1] + t * curve[1:]
    return curve[0]


def _arc(centre, radii, start: float, end: float, count: int = 24) -> np.ndarray:
    """An elliptical arc from angle `start` to `end` (radians; y down, so positive turns clockwise on screen)."""
    angle = np.linspace(start, end, count)
    return np.stack([centre[0] + radii[0] * np.cos(angle), centre[1] + radii[1] * np.sin(angle)], 1)


def _join(*parts) -> np.ndarray:
    """Pieces of a path, one after the other: float [N, 2]."""
    return np.concatenate([np.asarray(part, np.float64).reshape(-1, 2) for part in parts])


def _slanted(strokes: list, rng: np.random.Generator, slant: float = 0.18) -> list[np.ndarray]:
    """The strokes (float [N, 2] each) sheared by a random slant (x -= slant * y, either way): writers lean."""
    shear = rng.uniform(-slant, slant)
    out = []
    for stroke in strokes:
        stroke = np.array(stroke, np.float64).reshape(-1, 2)
        stroke[:, 0] -= shear * (stroke[:, 1] - 0.5)
        out.append(stroke)
    return out


# --------------------------------------------------------------------------- generated digits


def four_cursive(rng: np.random.Generator, digit: int = 4) -> list[Polyline]:
    """A 4 in one stroke with a curved open top (see the module docstring)."""
    left = rng.uniform(0.0, 0.2)
    top = rng.uniform(0.0, 0.15)
    bottom_of_u = rng.uniform(0.55, 0.72)
    rise_x = rng.uniform(0.7, 0.95)  # where the curve ends at the top right
    rise_top = rng.uniform(0.0, 0.2)
    arm = _bezier([(left + rng.uniform(0, 0.1), top), (left, bottom_of_u * 0.7),
                   (left + 0.05, bottom_of_u + rng.uniform(0.0, 0.1)),
                   (rise_x - 0.1, bottom_of_u), (rise_x, rise_top)], 28)
    if rng.random() < 0.6:
        # The stem comes back down left of the rise, crossing the curve near the bar's height.
        stem_x = rise_x - rng.uniform(0.1, 0.3)
        stem = _bezier([(rise_x, rise_top), (stem_x + 0.05, rise_top + 0.1), (stem_x, 1.0)], 12)
    else:
        # Straight back down the rise and on to the baseline: a "u" with a long right leg.
        stem = [(rise_x, rise_top), (rise_x - rng.uniform(0.0, 0.12), 1.0)]
    return _slanted([_join(arm, stem)], rng)


def four_closed(rng: np.random.Generator, digit: int = 4) -> list[Polyline]:
    """A closed 4: down the diagonal from the stem's top to the bar, along it, then the stem."""
    stem_x = rng.uniform(0.55, 0.75)
    bar_y = rng.uniform(0.55, 0.7)
    left = rng.uniform(0.0, 0.15)
    bar_end = stem_x + rng.uniform(0.1, 0.3)
    first = [(stem_x, 0.0), (left, bar_y), (bar_end, bar_y)]
    stem = [(stem_x, rng.uniform(-0.02, 0.05)), (stem_x + rng.uniform(-0.05, 0.03), 1.0)]
    return _slanted([first, stem] if rng.random() < 0.7 else [_join(first, [(stem_x, bar_y)], [stem[1]])], rng)


def one_long_flag(rng: np.random.Generator, digit: int = 1) -> list[Polyline]:
    """A 1 with a long flag (a third to a half of its height, falling 30-55 degrees) and often a foot."""
    slant = rng.uniform(-0.08, 0.08)
    top, bottom = (0.5, 0.0), (0.5 + slant, 1.0)
    reach = rng.uniform(0.3, 0.5)
    drop = reach * np.tan(np.deg2rad(rng.uniform(30, 55)))
    flag = (top[0] - reach, top[1] + drop)
    if rng.random() < 0.5:  # one stroke: up the flag, down the stem
        strokes = [[flag, top, bottom]]
    else:
        strokes = [[flag, top], [top, bottom]]
    if rng.random() < 0.65:
        half = rng.uniform(0.15, 0.3)
        strokes.append([(bottom[0] - half, 1.0 + rng.uniform(-0.02, 0.02)), (bottom[0] + half, 1.0)])
    return _slanted(strokes, rng, 0.1)


def seven_hook(rng: np.random.Generator, digit: int = 7) -> list[Polyline]:
    """A 7 whose bar starts with a small hook and whose stem curves down to the left; crossed or not."""
    left, right = rng.uniform(0.0, 0.15), rng.uniform(0.8, 1.0)
    bar_y = rng.uniform(0.0, 0.08)
    hook = [(left + rng.uniform(-0.03, 0.05), bar_y + rng.uniform(0.08, 0.18)), (left + 0.04, bar_y)]
    bar = [(right, bar_y + rng.uniform(-0.04, 0.04))]
    foot_x = rng.uniform(0.2, 0.45)
    bend = rng.uniform(0.05, 0.25)  # how far the stem bows out before curving left
    stem = _bezier([bar[0], (right - 0.1 + bend, 0.45), (foot_x, 1.0)], 14)
    strokes = [_join(hook, bar, stem)]
    if rng.random() < 0.35:  # the European 7's bar across the stem
        middle = stem[len(stem) // 2]
        half = rng.uniform(0.15, 0.25)
        strokes.append([(middle[0] - half, middle[1]), (middle[0] + half, middle[1] - rng.uniform(0, 0.05))])
    return _slanted(strokes, rng, 0.12)


def _nine_loop(rng: np.random.Generator, closed: bool) -> tuple[np.ndarray, tuple[float, float]]:
    """The loop of a 9 drawn from its right side counter-clockwise (on screen); its right edge."""
    centre = (rng.uniform(0.4, 0.5), rng.uniform(0.2, 0.3))
    radii = (rng.uniform(0.22, 0.32), rng.uniform(0.17, 0.27))
    start = rng.uniform(-0.3, 0.2)
    sweep = 2 * np.pi * (rng.uniform(1.0, 1.08) if closed else rng.uniform(0.72, 0.85))
    loop = _arc(centre, radii, start, start - sweep, 30)  # decreasing angle: counter-clockwise on screen
    return loop, (centre[0] + radii[0], centre[1])


def nine_curl(rng: np.random.Generator, digit: int = 9) -> list[Polyline]:
    """A 9 whose stem curls to the left at the bottom, like a handwritten g."""
    loop, (right, middle) = _nine_loop(rng, closed=rng.random() < 0.85)
    end = rng.uniform(0.7, 0.85)
    curl = _bezier([(right, middle), (right + rng.uniform(-0.05, 0.05), end), (right - 0.1, 1.02),
                    (right - rng.uniform(0.45, 0.75), rng.uniform(0.62, 0.82))], 18)
    return _slanted([_join(loop, curl)], rng)


def nine_open(rng: np.random.Generator, digit: int = 9) -> list[Polyline]:
    """A 9 whose loop is left open at the top left; the stem straight or bowed."""
    loop, (right, middle) = _nine_loop(rng, closed=False)
    stem = _bezier([(right, middle), (right + rng.uniform(-0.05, 0.08), 0.6), (right - rng.uniform(0.0, 0.2), 1.0)], 10)
    return _slanted([_join(loop, stem)] if rng.random() < 0.6 else [_join(loop), _join(stem)], rng)


def six_round(rng: np.random.Generator, digit: int = 6) -> list[Polyline]:
    """A 6 with a big round loop and a short, straight or hooked top stroke."""
    radius = (rng.uniform(0.28, 0.38), rng.uniform(0.22, 0.3))
    centre = (0.5, 1.0 - radius[1])
    top = (rng.uniform(0.55, 0.85), rng.uniform(0.0, 0.3))
    start = [(top[0] + rng.uniform(0.0, 0.12), top[1] + rng.uniform(0.0, 0.1))] if rng.random() < 0.4 else []
    down = _bezier([top, (centre[0] - radius[0] - 0.05, centre[1] - radius[1]), (centre[0] - radius[0], centre[1])], 12)
    loop = _arc(centre, radius, np.pi, np.pi - 2 * np.pi * rng.uniform(0.92, 1.05), 30)
    return _slanted([_join(start, down, loop)], rng)


def cursive(rng: np.random.Generator, digit: int) -> list[Polyline]:
    """`digit` written in one stroke, as a joined hand writes it."""
    return _slanted([_join(*_CURSIVE[digit](rng))], rng)


def _cursive_zero(rng):
    overlap = rng.uniform(0.05, 0.25)
    return [_arc((0.5, 0.5), (rng.uniform(0.3, 0.45), 0.5), -np.pi / 2, -np.pi / 2 - 2 * np.pi * (1 + overlap), 40)]


def _cursive_one(rng):
    return [[(rng.uniform(0.2, 0.35), rng.uniform(0.2, 0.35)), (0.55, 0.0), (0.5 + rng.uniform(-0.05, 0.05), 1.0)]]


def _cursive_two(rng):
    top = _arc((0.5, 0.28), (0.35, 0.28), np.pi * 1.1, np.pi * 2.25, 16)
    loop_x = rng.uniform(0.1, 0.25)
    down = _bezier([top[-1], (0.55, 0.7), (loop_x, 0.95)], 10)
    loop = _arc((loop_x + 0.08, 0.9), (0.08, 0.07), np.pi, np.pi * (1 + rng.uniform(1.2, 1.9)), 10) \
        if rng.random() < 0.6 else np.zeros((0, 2))
    return [top, down, loop, [(rng.uniform(0.8, 1.0), 1.0 + rng.uniform(-0.04, 0.04))]]


def _cursive_three(rng):
    upper = _arc((0.45, 0.25), (0.32, 0.25), np.pi * 1.15, np.pi * 2.45, 18)
    middle = (rng.uniform(0.3, 0.45), 0.5)
    if rng.random() < 0.5:  # a small loop where the two bowls meet
        knot = _arc((middle[0] + 0.06, middle[1]), (0.07, 0.05), -np.pi / 2, np.pi * 1.3, 10)
    else:
        knot = np.array([middle])
    lower = _arc((0.45, 0.74), (0.38, 0.26), -np.pi * 0.55, np.pi * 0.9, 20)
    return [upper, knot, lower]


def _cursive_four(rng):
    return four_cursive(rng)


def _cursive_five(rng):
    right = rng.uniform(0.75, 0.95)
    bar = [(right, 0.0), (rng.uniform(0.1, 0.25), rng.uniform(0.0, 0.05))]
    down = [(rng.uniform(0.05, 0.2), rng.uniform(0.4, 0.5))]
    belly = _arc((0.45, 0.7), (0.38, 0.3), -np.pi * 0.75, np.pi * 0.85, 22)
    return [bar, down, belly]


def _cursive_six(rng):
    return six_round(rng)


def _cursive_seven(rng):
    return seven_hook(rng)[:1]


def _cursive_eight(rng):
    t = np.linspace(0, 2 * np.pi * (1 + rng.uniform(0.0, 0.1)), 60)
    width = rng.uniform(0.25, 0.4)
    top_share = rng.uniform(0.4, 0.5)
    x = 0.5 + width * np.sin(2 * t) * 0.5 * np.where(np.sin(t) > 0, 1.0, 1.2)
    y = 0.5 - 0.5 * np.cos(t) * np.where(np.cos(t) > 0, top_share / 0.5, (1 - top_share) / 0.5)
    return [np.stack([x, y], 1)]


def _cursive_nine(rng):
    return nine_curl(rng) if rng.random() < 0.5 else nine_open(rng)


_CURSIVE: dict[int, Callable] = {0: _cursive_zero, 1: _cursive_one, 2: _cursive_two, 3: _cursive_three,
                                 4: _cursive_four, 5: _cursive_five, 6: _cursive_six, 7: _cursive_seven,
                                 8: _cursive_eight, 9: _cursive_nine}

# kind -> (digits it draws, generator(rng, digit) -> polylines)
GENERATED: dict[str, tuple[tuple[int, ...], Callable]] = {
    "four_cursive": ((4,), four_cursive),
    "four_closed": ((4,), four_closed),
    "one_long_flag": ((1,), one_long_flag),
    "seven_hook": ((7,), seven_hook),
    "nine_curl": ((9,), nine_curl),
    "nine_open": ((9,), nine_open),
    "six_round": ((6,), six_round),
    "cursive": (tuple(range(10)), cursive),
}


# --------------------------------------------------------------------------- edits of MNIST digits


def _ink(shape: np.ndarray) -> np.ndarray:
    return shape > 0.5


def long_flag_lines(shape: np.ndarray, rng: np.random.Generator) -> list[Polyline]:
    """A long flag (30-50% of the height, 30-55 degrees) from a 1's top, and often a foot:
    work-frame lines (x, y)."""
    rows, cols = np.nonzero(_ink(shape))
    top, bottom = rows.min(), rows.max()
    height = bottom - top
    x_top = cols[rows <= top + 2].mean()
    reach = rng.uniform(0.3, 0.5) * height
    drop = reach * np.tan(np.deg2rad(rng.uniform(30, 55)))
    lines = [[(x_top, top + 1.0), (x_top - reach, top + 1.0 + drop)]]
    if rng.random() < 0.6:
        x_bottom = cols[rows >= bottom - 2].mean()
        half = rng.uniform(0.15, 0.3) * height
        lines.append([(x_bottom - half, bottom), (x_bottom + half, bottom)])
    return lines


def seven_hook_lines(shape: np.ndarray, rng: np.random.Generator) -> list[Polyline]:
    """A small hook at the left end of a 7's bar: a tick falling from the bar's start."""
    rows, cols = np.nonzero(_ink(shape))
    top, height = rows.min(), rows.max() - rows.min()
    band = rows <= top + 0.25 * height
    start = np.argmin(cols[band])
    x, y = float(cols[band][start]), float(rows[band][start])
    size = rng.uniform(0.08, 0.16) * height
    return [[(x, y), (x - 0.3 * size, y + 0.4 * size), (x + rng.uniform(-0.2, 0.3) * size, y + size)]]


def nine_curl_lines(shape: np.ndarray, rng: np.random.Generator) -> list[Polyline]:
    """A curl to the left at the bottom of a 9's stem, like a handwritten g."""
    rows, cols = np.nonzero(_ink(shape))
    bottom, height = rows.max(), rows.max() - rows.min()
    x = float(cols[rows >= bottom - 1].mean())
    width = rng.uniform(0.25, 0.45) * height
    lift = rng.uniform(0.05, 0.2) * height
    curl = _bezier([(x, bottom - 0.05 * height), (x - 0.1 * width, bottom + 0.08 * height),
                    (x - 0.7 * width, bottom + 0.06 * height), (x - width, bottom - lift)], 12)
    return [_join(curl)]


# kind -> (digit, lines to add to an MNIST training digit of that label)
MNIST_EDITS: dict[str, tuple[int, Callable]] = {
    "one_long_flag_edit": (1, long_flag_lines),
    "seven_hook_edit": (7, seven_hook_lines),
    "nine_curl_edit": (9, nine_curl_lines),
}
