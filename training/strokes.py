"""Drawings as the app's canvas delivers them: pen strokes, redrawn from MNIST, fonts or generators.

A person drawing in the app makes strokes of one uniform width with a round,
antialiased pen, black on a white 280x280 canvas; MNIST digits are scanned pen
traces with soft, uneven edges. Training on MNIST alone leaves that gap (issue 10:
Model 2 reads 96.8-97.1% of real people's canvas digits against 99.38% of MNIST).
So every drawing here goes the way a user's does:

    a shape (an MNIST digit upscaled, or lines from a stroke font or a generator)
    -> random warp (rotation, shear, aspect, elastic) -> skeleton (scikit-image)
    -> redrawn with a round pen of random width at a random size and place on the
       280x280 canvas (black ink on white, antialiased)
    -> inference.preprocess.preprocess, the app's own preprocessing

`canvas_input(...)` returns the model input (uint8 [28, 28], white on black) and
`draw_canvas(...)` the canvas itself. Writers' conventions MNIST lacks are stroke
edits of a digit's shape before it is warped (`add_flag_and_foot`, `cross_seven`,
`slash_zero`) or generated (`open_four`). Every random choice comes from the
numpy Generator passed in: the same seed gives the same drawings.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Iterable, Sequence

import numpy as np
from PIL import Image, ImageDraw
from scipy import ndimage

RENDER_VERSION = 4  # part of the drawing caches' key (training/canvas_data.py): raise it when a drawing changes
CANVAS = 280  # the app's canvas side, px
WORK_SIDE = 64  # px: shapes are warped and skeletonised at this size (MNIST digit ~ 2x)
WORK_MARGIN = 7  # px of room around a shape in its work frame, so warps and edits stay inside
SHAPE_WIDTH = 4  # px: lines drawn into a work frame are this wide before skeletonising
# Ink deeper than this (of the frame's side) is a filled loop, not a stroke. Bold strokes and
# inked-in loops look alike: at 0.09 bold 1s came out as 0s (49 errors in 1,500 test digits
# redrawn, against 34 at 0.14, the value benchmarks/reading/drawing_variants.py uses).
HOLLOW = 0.14
SKELETON_LEVEL = 0.5  # of the shape's intensity: what counts as ink when skeletonising (0.3 measured worse: 44 vs 34 errors in 1,500)
# A faint stretch of a stroke falls below SKELETON_LEVEL and the redraw comes out in pieces
# (a 0 as "C" and a dot, a 7 as dots): not what the writer drew. So the skeleton must have no
# more pieces and no fewer loops than the shape has at TRACE_LEVEL; if not, lower levels are tried, and a
# shape still broken at the last one is not drawn at all (BrokenDrawing). Measured on the
# models shipped before: Model 2's errors on the MNIST test digits redrawn fell from 134 to 117
# and on scikit-learn's digits from 197 to 173 (its 0s: 87% -> 96% read right).
TRACE_LEVEL = 0.2
RETRY_LEVELS = (0.35, 0.25)
# px of a 64x64 work frame (1.5%): smaller enclosed regions are a skeleton's corners or the gaps
# between close strokes, not loops a writer drew.
LOOP_AREA = 60
SOURCE_BLUR = 0.6  # MNIST px: smooths the pixel steps before upscaling (else every edge is a staircase)

Stroke = Sequence[tuple[float, float]]  # (x, y) points, y down


@dataclass(frozen=True)
class Distortion:
    """The random warp of a shape before it is skeletonised (the writer's hand)."""

    rotation: float = 10.0  # degrees, either way
    shear: float = 0.2  # x += shear * y, either way (slant)
    aspect: float = 0.15  # width scaled by 1 +- aspect (narrow and wide writers)
    elastic: float = 2.0  # px (of WORK_SIDE) of smooth random displacement, at most
    elastic_grid: int = 4  # control points per side of the displacement field: larger = wigglier


@dataclass(frozen=True)
class Pen:
    """How a drawing lands on the canvas: its size, place and pen width."""

    size: tuple[int, int] = (110, 240)  # longer side of the drawing, px (uniform)
    small_share: float = 0.08  # share of drawings made small, somewhere off-centre (a tiny 3 in a corner)
    small_size: tuple[int, int] = (45, 90)
    # Pen width over the drawing's longer side: from a fine pen to a marker (MNIST's is ~0.12).
    width: tuple[float, float] = (0.05, 0.20)
    min_width: float = 2.5  # px: the app's thinnest brush
    jitter: int = 20  # px from the centre, each axis


NO_DISTORTION = Distortion(rotation=0.0, shear=0.0, aspect=0.0, elastic=0.0)


# --------------------------------------------------------------------------- shapes (float [H, W] in [0, 1])


def mnist_shape(digit: np.ndarray) -> np.ndarray:
    """An MNIST digit (uint8 [28, 28], white on black) upscaled smoothly into a WORK_SIDE frame."""
    field = ndimage.gaussian_filter(np.asarray(digit, np.float32) / 255.0, SOURCE_BLUR)
    scale = (WORK_SIDE - 2 * WORK_MARGIN) / 28.0
    side = round(28 * scale)
    big = np.asarray(Image.fromarray(field).resize((side, side), Image.BICUBIC))
    return np.pad(np.clip(big, 0.0, 1.0), WORK_MARGIN)


def strokes_shape(strokes: Iterable[Stroke], width: int = SHAPE_WIDTH) -> np.ndarray:
    """Polylines in a unit box (x right, y down; aspect kept) drawn into a WORK_SIDE frame."""
    strokes = [np.asarray(stroke, np.float64) for stroke in strokes if len(stroke)]
    points = np.concatenate(strokes)
    low, high = points.min(axis=0), points.max(axis=0)
    scale = (WORK_SIDE - 2 * WORK_MARGIN) / max(float((high - low).max()), 1e-6)
    centre = (low + high) / 2.0
    image = Image.new("L", (WORK_SIDE, WORK_SIDE), 0)
    draw = ImageDraw.Draw(image)
    for stroke in strokes:
        xy = [(float(x), float(y)) for x, y in (stroke - centre) * scale + WORK_SIDE / 2.0]
        if len(xy) == 1:
            xy = xy * 2
        draw.line(xy, fill=255, width=width, joint="curve")
        for x, y in (xy[0], xy[-1]):  # round ends, as a pen makes them
            draw.ellipse((x - width / 2, y - width / 2, x + width / 2, y + width / 2), fill=255)
    return np.asarray(image, np.float32) / 255.0


def _draw_lines(shape: np.ndarray, strokes: Iterable[Stroke], width: int = SHAPE_WIDTH) -> np.ndarray:
    """Extra lines (work-frame pixel coordinates) drawn onto a shape."""
    image = Image.fromarray(np.round(np.clip(shape, 0, 1) * 255).astype(np.uint8))
    draw = ImageDraw.Draw(image)
    for stroke in strokes:
        draw.line([(float(x), float(y)) for x, y in stroke], fill=255, width=width, joint="curve")
    return np.asarray(image, np.float32) / 255.0


def _ink_box(shape: np.ndarray) -> tuple[int, int, int, int]:
    rows = np.flatnonzero((shape > 0.5).any(axis=1))
    cols = np.flatnonzero((shape > 0.5).any(axis=0))
    return rows[0], rows[-1], cols[0], cols[-1]


def _ink_column(shape: np.ndarray, row: int, near: float | None = None) -> float:
    """Mean column of the ink on `row` (the part closest to `near`, when given)."""
    cols = np.flatnonzero(shape[row] > 0.5)
    if cols.size == 0:
        return float(np.mean(np.flatnonzero((shape > 0.5).any(axis=0))))
    if near is not None:
        cols = cols[np.abs(cols - near) <= np.abs(cols - near).min() + SHAPE_WIDTH]
    return float(cols.mean())


# --------------------------------------------------------------------------- writers' conventions


def flag_and_foot_lines(shape: np.ndarray, rng: np.random.Generator, foot_share: float = 0.6) -> list:
    """The flag most writers outside the US give a 1, and often a foot (read as 2 before): lines in
    work-frame pixels (x, y) to add to the 1's shape."""
    top, bottom, _, _ = _ink_box(shape)
    height = bottom - top
    x_top = _ink_column(shape, top + 2)
    # The flag falls steeply (31-52 degrees below horizontal): a long flat one is a 7's bar,
    # and 1s generated that way were read as 7 (40 of 500 test 1s before, most looking like 7s).
    reach = rng.uniform(0.15, 0.32) * height
    flag_end = (x_top - reach, top + reach * rng.uniform(0.6, 1.3))
    lines = [[(x_top, top + 1), flag_end]]
    if rng.random() < foot_share:
        x_bottom = _ink_column(shape, bottom - 2)
        half = rng.uniform(0.15, 0.3) * height
        lines.append([(x_bottom - half, bottom), (x_bottom + half, bottom)])
    return lines


def add_flag_and_foot(shape: np.ndarray, rng: np.random.Generator, foot_share: float = 0.6) -> np.ndarray:
    """A 1 with a flag and often a foot (`flag_and_foot_lines` drawn onto its shape)."""
    return _draw_lines(shape, flag_and_foot_lines(shape, rng, foot_share))


def seven_bar_lines(shape: np.ndarray, rng: np.random.Generator) -> list:
    """The bar across a 7's stem (the continental 7): one line in work-frame pixels (x, y)."""
    top, bottom, left, right = _ink_box(shape)
    height = bottom - top
    row = int(top + rng.uniform(0.42, 0.6) * height)
    stem = _ink_column(shape, row, near=(left + right) / 2.0)
    half = rng.uniform(0.13, 0.24) * height
    tilt = rng.uniform(-0.06, 0.06) * height
    return [[(stem - half, row + tilt), (stem + half, row - tilt)]]


def cross_seven(shape: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A 7 with a bar across its stem (`seven_bar_lines` drawn onto its shape)."""
    return _draw_lines(shape, seven_bar_lines(shape, rng))


def zero_slash_lines(shape: np.ndarray, rng: np.random.Generator) -> list:
    """A slash through a 0 (programmers' zero, read as 8 before): one line in work-frame pixels (x, y)."""
    top, bottom, left, right = _ink_box(shape)
    reach = rng.uniform(-0.05, 0.12)  # how far the slash runs past the ring (negative: stops inside)
    height, width = bottom - top, right - left
    start = (left - reach * width + rng.uniform(0, 0.15) * width, bottom + reach * height)
    end = (right + reach * width - rng.uniform(0, 0.15) * width, top - reach * height)
    return [[start, end]]


def slash_zero(shape: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A 0 with a slash through it (`zero_slash_lines` drawn onto its shape)."""
    return _draw_lines(shape, zero_slash_lines(shape, rng))


def open_four(rng: np.random.Generator) -> list[list[tuple[float, float]]]:
    """An open-top 4 as people write it in one or two strokes (read as 6 or 9 before).

    The left arm runs down (straight or curving) into the bar; the stem starts at
    about the arm's height, with or without a gap at the top; the bar may stop at
    the stem or run past it.
    """
    arm_x = rng.uniform(0.0, 0.2)
    arm_top = rng.uniform(0.0, 0.15)
    bar_y = rng.uniform(0.5, 0.68)
    stem_x = rng.uniform(0.55, 0.75)
    bar_end = stem_x + rng.uniform(0.0, 0.28)
    foot_x = arm_x + rng.uniform(-0.12, 0.08)
    if rng.random() < 0.5:  # a curved corner: the arm sweeps into the bar
        t = np.linspace(0, 1, 9)[:, None]
        p0, p1, p2 = np.array([arm_x + 0.05, arm_top]), np.array([foot_x, bar_y + 0.08]), np.array([stem_x, bar_y])
        arm = ((1 - t) ** 2 * p0 + 2 * (1 - t) * t * p1 + t ** 2 * p2).tolist()
        arm.append([bar_end, bar_y])
    else:
        arm = [[arm_x + rng.uniform(0, 0.1), arm_top], [foot_x, bar_y], [bar_end, bar_y]]
    stem_top = arm_top + rng.uniform(-0.1, 0.12)
    stem = [[stem_x + rng.uniform(-0.05, 0.05), stem_top], [stem_x + rng.uniform(-0.08, 0.03), 1.0]]
    if rng.random() < 0.4:  # one stroke: down the arm, along the bar, up to the stem's top, all the way down
        return [[*arm[:-1], [stem_x, bar_y], stem[0], stem[1]]]
    return [arm, stem]


# --------------------------------------------------------------------------- non-digits


def scribble(rng: np.random.Generator) -> list[np.ndarray]:
    """A random-walk scribble: one to three smooth wandering strokes (float [N, 2] each)."""
    strokes = []
    for _ in range(int(rng.integers(1, 4))):
        steps = int(rng.integers(8, 30))
        heading = rng.uniform(0, 2 * np.pi)
        turns = np.cumsum(rng.normal(0, rng.uniform(0.3, 1.2), steps))
        lengths = rng.uniform(0.3, 1.0, steps)
        xy = np.cumsum(np.stack([np.cos(heading + turns), np.sin(heading + turns)], 1) * lengths[:, None], 0)
        strokes.append(xy)
    return strokes


def loops_scribble(rng: np.random.Generator) -> list[list[tuple[float, float]]]:
    """A scribble of overlapping loops and zigzags (a different generator than `scribble`)."""
    kind = rng.integers(0, 3)
    t = np.linspace(0, 1, 80)
    if kind == 0:  # a spring: loops drifting sideways
        turns = rng.uniform(2.5, 6)
        x = np.cos(2 * np.pi * turns * t) * rng.uniform(0.2, 0.5) + t * rng.uniform(1.2, 3.0)
        y = np.sin(2 * np.pi * turns * t) * rng.uniform(0.3, 0.6)
        return [np.stack([x, y], 1).tolist()]
    if kind == 1:  # a zigzag
        count = int(rng.integers(4, 10))
        x = np.linspace(0, rng.uniform(1.0, 2.5), count)
        y = np.where(np.arange(count) % 2 == 0, 0.0, rng.uniform(0.4, 1.2)) + rng.normal(0, 0.08, count)
        return [np.stack([x, y], 1).tolist()]
    # a tangle: a closed curve of random harmonics
    angle = 2 * np.pi * t
    radius = 1 + sum(rng.uniform(-0.5, 0.5) * np.cos(k * angle + rng.uniform(0, 6)) for k in range(2, 6))
    loops = int(rng.integers(1, 4))
    return [np.stack([radius * np.cos(loops * angle) + 0.3 * np.cos(angle),
                      radius * np.sin(loops * angle)], 1).tolist()]


def curves(rng: np.random.Generator) -> list[np.ndarray]:
    """One or two smooth curves through random points (Catmull-Rom): doodles, squiggles, arcs (float [N, 2] each)."""
    strokes = []
    for _ in range(int(rng.integers(1, 3))):
        points = rng.uniform(0, 1, (int(rng.integers(3, 8)), 2))
        padded = np.concatenate([points[:1], points, points[-1:]])
        t = np.linspace(0, 1, 8)[None, :, None]
        # Every segment at once: a, b, c, d [segments, 1, 2] against t [1, 8, 1].
        a, b, c, d = (padded[i:len(padded) - 3 + i][:, None, :] for i in range(4))
        path = 0.5 * ((2 * b) + (-a + c) * t + (2 * a - 5 * b + 4 * c - d) * t ** 2 + (-a + 3 * b - 3 * c + d) * t ** 3)
        strokes.append(path.reshape(-1, 2))
    return strokes


def doodle(rng: np.random.Generator) -> list[list[tuple[float, float]]]:
    """Shapes people draw that are no digit: a triangle or star, a spiral, hatching, a crossed-out
    circle. (Not the evaluation's springs, zigzags and tangles: benchmarks/reading/drawn_sets.py keeps
    those to measure how non-digits never seen in training are judged.)"""
    kind = rng.integers(0, 4)
    if kind == 0:  # a triangle or a star of 5 or 7 points, closed (a ring of more corners is a fair 0)
        corners, step = [(3, 1), (5, 2), (7, 2), (7, 3)][int(rng.integers(0, 4))]
        angles = rng.uniform(0, 2 * np.pi) + 2 * np.pi * step * np.arange(corners + 1) / corners
        radius = rng.uniform(0.8, 1.2, corners + 1)
        radius[-1] = radius[0]
        return [np.stack([radius * np.cos(angles), radius * np.sin(angles)], 1).tolist()]
    if kind == 1:  # a spiral of 1.5-4 turns, either way
        t = np.linspace(0, 1, 120)
        turns = rng.uniform(1.5, 4.0)
        angle = 2 * np.pi * turns * t * rng.choice([-1, 1])
        radius = 0.1 + t
        return [np.stack([radius * np.cos(angle), radius * np.sin(angle)], 1).tolist()]
    if kind == 2:  # hatching: 3-7 parallel strokes, sometimes crossed by a second set
        strokes_ = []
        for direction in range(1 if rng.random() < 0.6 else 2):
            angle = rng.uniform(0, np.pi)
            along = np.array([np.cos(angle), np.sin(angle)])
            across = np.array([-along[1], along[0]])
            count = int(rng.integers(3, 8))
            for offset in np.linspace(-0.5, 0.5, count):
                centre = across * offset + rng.normal(0, 0.03, 2)
                half = rng.uniform(0.35, 0.6)
                strokes_.append([tuple(centre - along * half), tuple(centre + along * half)])
        return strokes_
    # a circle crossed out by an X
    angle = np.linspace(0, 2 * np.pi, 50)
    circle = np.stack([np.cos(angle), np.sin(angle)], 1).tolist()
    reach = rng.uniform(0.8, 1.2)
    return [circle, [(-reach, -reach), (reach, reach)], [(-reach, reach), (reach, -reach)]]


def line(rng: np.random.Generator, max_angle: float = 35.0) -> list[list[tuple[float, float]]]:
    """A straight line within `max_angle` degrees of horizontal (a steeper one is a fair 1)."""
    angle = np.deg2rad(rng.uniform(-max_angle, max_angle))
    return [[(0.0, 0.0), (float(np.cos(angle)), float(np.sin(angle)))]]


def side_by_side(left: np.ndarray, right: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Two shapes (work frames) next to each other, as someone writing "42": one wider frame."""
    gap = int(rng.integers(-WORK_MARGIN, WORK_MARGIN // 2))
    shift = int(rng.integers(-4, 5))
    right = np.roll(right, shift, axis=0)
    overlap = 2 * WORK_MARGIN - gap
    out = np.zeros((WORK_SIDE, 2 * WORK_SIDE - overlap), np.float32)
    out[:, :WORK_SIDE] = left
    out[:, WORK_SIDE - overlap:] = np.maximum(out[:, WORK_SIDE - overlap:], right)
    # Back to a square frame with the two digits inside it, so the rest of the pipeline is unchanged.
    side = out.shape[1]
    square = np.zeros((side, side), np.float32)
    square[(side - WORK_SIDE) // 2:(side - WORK_SIDE) // 2 + WORK_SIDE] = out
    return np.asarray(Image.fromarray(square).resize((WORK_SIDE, WORK_SIDE), Image.BILINEAR))


# --------------------------------------------------------------------------- stroke fonts


@functools.lru_cache(maxsize=None)
def _font(name: str):
    from HersheyFonts import HersheyFonts

    font = HersheyFonts()
    font.load_default_font(name)
    return font


def hershey_strokes(font: str, char: str) -> list[list[tuple[float, float]]]:
    """The strokes of one character of a Hershey stroke font (x right, y down), [] if it has none."""
    strokes = [list(stroke) for stroke in _font(font).strokes_for_text(char)]
    return [[(float(x), float(y)) for x, y in stroke] for stroke in strokes if stroke]


# --------------------------------------------------------------------------- warp, skeleton, pen


def warp(shape: np.ndarray, rng: np.random.Generator, distortion: Distortion) -> np.ndarray:
    """One random rotation + shear + aspect change + smooth elastic displacement, about the frame's centre."""
    if distortion == NO_DISTORTION:
        return shape
    side = shape.shape[0]
    centre = (side - 1) / 2.0
    angle = np.deg2rad(rng.uniform(-distortion.rotation, distortion.rotation))
    shear = rng.uniform(-distortion.shear, distortion.shear)
    aspect = 1.0 + rng.uniform(-distortion.aspect, distortion.aspect)
    # Output (row, col) -> input (row, col): the inverse of aspect, then shear, then rotation.
    cos, sin = np.cos(angle), np.sin(angle)
    forward = np.array([[cos, -sin], [sin, cos]]) @ np.array([[1.0, 0.0], [shear, 1.0]]) @ np.diag([1.0, aspect])
    inverse = np.linalg.inv(forward)
    rows, cols = np.mgrid[0:side, 0:side].astype(np.float32) - centre
    coords = np.tensordot(inverse.astype(np.float32), np.stack([rows, cols]), axes=1) + centre
    if distortion.elastic > 0:
        grid = distortion.elastic_grid
        for axis in range(2):
            control = rng.uniform(-1, 1, (grid, grid)).astype(np.float32)
            field = np.asarray(Image.fromarray(control).resize((side, side), Image.BICUBIC))
            coords[axis] += field * distortion.elastic
    return ndimage.map_coordinates(shape, coords, order=1, mode="constant", cval=0.0)


class BrokenDrawing(ValueError):
    """The shape's skeleton has more pieces or fewer loops than the shape (see TRACE_LEVEL)."""


_EIGHT_CONNECTED = np.ones((3, 3), bool)


def _pieces(mask: np.ndarray) -> int:
    """Connected pieces of ink (8-connected, as a drawn line is)."""
    return int(ndimage.label(mask, structure=_EIGHT_CONNECTED)[1])


def _loops(mask: np.ndarray) -> int:
    """Closed loops: background regions (4-connected, the dual of 8-connected ink) not touching the
    border, of at least LOOP_AREA pixels."""
    labels, count = ndimage.label(np.pad(~mask, 1, constant_values=True))
    sizes = np.bincount(labels.ravel(), minlength=count + 1)[1:]
    sizes[labels[0, 0] - 1] = 0  # the padding joins every region that touches the border into one
    return int(np.count_nonzero(sizes >= LOOP_AREA))


def _deep_block(depth: float) -> int:
    """Side of the square of ink around every pixel deeper than `depth` in it (its inscribed square)."""
    return 2 * int(depth / np.sqrt(2.0)) + 1


def _has_full_block(mask: np.ndarray, side: int) -> bool:
    """Whether some side x side square of `mask` is all ink (an integral image: ~10 us, where the
    distance transform it spares costs ~100 us; almost no digit has a blob that deep)."""
    if min(mask.shape) < side:
        return False
    total = np.pad(mask.astype(np.int32).cumsum(0).cumsum(1), ((1, 0), (1, 0)))
    blocks = total[side:, side:] - total[:-side, side:] - total[side:, :-side] + total[:-side, :-side]
    return bool((blocks == side * side).any())


def skeleton(shape: np.ndarray) -> np.ndarray:
    """The one-pixel centre line of a shape (scikit-image), as bool [H, W]; BrokenDrawing if no
    level traces it with the pieces and loops the shape has at TRACE_LEVEL."""
    from skimage.morphology import skeletonize

    traced = shape > TRACE_LEVEL
    pieces, loops = _pieces(traced), _loops(traced)
    for level in (SKELETON_LEVEL, *RETRY_LEVELS):
        mask = shape > level
        # A writer whose pen filled a loop meant a loop: hollow out blobs wider than a stroke,
        # so the redrawn pen traces their outline rather than one line through them.
        if _has_full_block(mask, _deep_block(HOLLOW * shape.shape[0])):
            mask &= ndimage.distance_transform_edt(mask) <= HOLLOW * shape.shape[0]
        line_ = skeletonize(mask)
        if not line_.any():
            line_ = mask
        if line_.any() and _pieces(line_) <= pieces and _loops(line_) >= loops:
            return line_
    raise BrokenDrawing(f"the skeleton does not keep the shape's {pieces} piece(s) and {loops} loop(s)")


def skeletons(shapes: np.ndarray) -> list[np.ndarray | None]:
    """`skeleton` of every shape of float [N, H, W] (None where it raises BrokenDrawing): the same
    lines, as bool [H, W] (see `skeleton_points`)."""
    out: list[np.ndarray | None] = []
    for points in skeleton_points(shapes):
        if points is None:
            out.append(None)
            continue
        line_ = np.zeros(np.shape(shapes)[1:], bool)
        line_[points[:, 0], points[:, 1]] = True
        out.append(line_)
    return out


def skeleton_points(shapes: np.ndarray, midpoints: bool = False) -> list[np.ndarray | None]:
    """The pixels (int [P, 2], row and col, in order) of `skeleton` of every shape of float [N, H, W],
    None where it raises BrokenDrawing; the same lines, made for a batch: the pieces and loops of
    every shape counted in one labelling (the per-shape calls cost ~4 labellings a shape, more than
    the skeleton itself), on the part of the frames that holds ink. With `midpoints`, float points
    with the midpoint of every two neighbouring pixels added (a denser centre line)."""
    from skimage.morphology import skeletonize

    full = np.asarray(shapes)
    out: list[np.ndarray | None] = [None] * len(full)
    if not len(full):
        return out
    # Everything below is local (3x3 neighbourhoods, distances within the ink): a frame cropped to the
    # batch's ink with a pixel of background around it gives the same lines, on ~35% fewer pixels.
    ink = (full > TRACE_LEVEL).any(axis=0)
    if not ink.any():
        return out
    rows, cols = np.flatnonzero(ink.any(axis=1)), np.flatnonzero(ink.any(axis=0))
    top, left = max(rows[0] - 1, 0), max(cols[0] - 1, 0)
    bottom, right = min(rows[-1] + 2, full.shape[1]), min(cols[-1] + 2, full.shape[2])
    shapes = full[:, top:bottom, left:right]
    traced = shapes > TRACE_LEVEL
    # LOOP_AREA is in pixels of the 64 px work frame: the same share of a smaller frame.
    loop_area = LOOP_AREA * (full.shape[1] / WORK_SIDE) ** 2
    pieces = _batch_pieces(traced)
    loops = _batch_loops(traced, pieces, loop_area)
    pending = np.arange(len(shapes))
    deep = HOLLOW * full.shape[1]
    for level in (SKELETON_LEVEL, *RETRY_LEVELS):
        if not len(pending):
            break
        masks = shapes[pending] > level
        for index in np.flatnonzero(_full_blocks(masks, _deep_block(deep))):
            masks[index] &= ndimage.distance_transform_edt(masks[index]) <= deep
        inked = masks.reshape(len(masks), -1).any(axis=1)
        lines = masks.copy()  # an empty skeleton stays the mask itself, as in `skeleton`
        for index in np.flatnonzero(inked):
            line_ = skeletonize(masks[index])
            if line_.any():
                lines[index] = line_
        line_pieces = _batch_pieces(lines)
        good = inked & (line_pieces <= pieces[pending])
        looped = np.flatnonzero(good & (loops[pending] > 0))  # a shape without loops cannot lose one
        if len(looped):
            good[looped] = _batch_loops(lines[looped], line_pieces[looped], loop_area) >= loops[pending[looped]]
        chosen = np.flatnonzero(good)
        which, row, col = np.nonzero(lines[chosen])  # every chosen line's pixels at once, in order
        points = np.stack([row + top, col + left], 1)
        if midpoints:
            which, points = _with_midpoints(lines[chosen], which, points, top, left)
        for index, part in zip(chosen, np.split(points, np.cumsum(np.bincount(which, minlength=len(chosen)))[:-1])):
            out[pending[index]] = part
        pending = pending[~good]
    return out


def _with_midpoints(lines: np.ndarray, which: np.ndarray, points: np.ndarray, top: int, left: int):
    """Lines' pixels plus the midpoint of every pair of 8-neighbours, grouped by line again."""
    whiches, parts = [which], [points.astype(np.float32)]
    for d_row, d_col in ((0, 1), (1, 0), (1, 1), (1, -1)):
        here = lines[:, :lines.shape[1] - d_row, max(-d_col, 0):lines.shape[2] - max(d_col, 0)]
        there = lines[:, d_row:, max(d_col, 0):lines.shape[2] - max(-d_col, 0) or None]
        line, row, col = np.nonzero(here & there)
        whiches.append(line)
        parts.append(np.stack([row + top + d_row / 2.0, col + left + max(-d_col, 0) + d_col / 2.0], 1).astype(np.float32))
    which = np.concatenate(whiches)
    order = np.argsort(which, kind="stable")
    return which[order], np.concatenate(parts)[order]


def _mosaic(masks: np.ndarray, fill: bool) -> np.ndarray:
    """Masks [N, H, W] stacked into one image, one row of `fill` above, below and between them and a
    column of it each side: labelling the mosaic labels every mask on its own."""
    count, height, width = masks.shape
    mosaic = np.full((count, height + 1, width + 2), fill, bool)
    mosaic[:, 1:, 1:-1] = masks
    return np.concatenate([mosaic.reshape(count * (height + 1), width + 2), np.full((1, width + 2), fill)])


def _owners(labels: np.ndarray, count: int, tiles: int) -> np.ndarray:
    """The mask (tile) each label 1..count of a `_mosaic` labelling lies in. ndimage.label numbers
    regions in the order a raster scan meets them, and the tiles are stacked in rows, so a tile's
    regions are numbered after every region of the tiles above it (find_objects, the obvious way,
    costs as much as the labelling)."""
    highest = np.maximum.accumulate(labels[:-1].reshape(tiles, -1).max(axis=1))
    return np.searchsorted(highest, np.arange(1, count + 1))


def _batch_pieces(masks: np.ndarray) -> np.ndarray:
    """`_pieces` of every mask of [N, H, W]."""
    labels, count = ndimage.label(_mosaic(masks, False), structure=_EIGHT_CONNECTED)
    return np.bincount(_owners(labels, count, len(masks)), minlength=len(masks))


def _batch_loops(masks: np.ndarray, pieces: np.ndarray | None = None, loop_area: float = LOOP_AREA) -> np.ndarray:
    """`_loops` of every mask of [N, H, W] (`pieces`: their `_batch_pieces`, if known): the background
    around and between the masks is one region. Only the masks with a hole at all (by their Euler
    number: pieces - holes, from 2x2 pixel patterns, no labelling) have their background labelled."""
    if pieces is None:
        pieces = _batch_pieces(masks)
    loops = np.zeros(len(masks), np.int64)
    holed = np.flatnonzero(pieces - _euler_numbers(masks) > 0)
    if not len(holed):
        return loops
    labels, count = ndimage.label(_mosaic(~masks[holed], True))
    sizes = np.bincount(labels.ravel(), minlength=count + 1)[1:]
    enclosed = (sizes >= loop_area) & (np.arange(1, count + 1) != labels[0, 0])
    loops[holed] = np.bincount(_owners(labels, count, len(holed))[enclosed], minlength=len(holed))
    return loops


def _euler_numbers(masks: np.ndarray) -> np.ndarray:
    """Pieces minus holes of every mask of [N, H, W], 8-connected ink (Gray's 2x2 pattern count:
    (one-pixel patterns - three-pixel patterns - 2 x diagonal pairs) / 4)."""
    padded = np.pad(masks, ((0, 0), (1, 1), (1, 1))).astype(np.int8)
    a, b = padded[:, :-1, :-1], padded[:, :-1, 1:]
    c, d = padded[:, 1:, :-1], padded[:, 1:, 1:]
    total = a + b + c + d
    ones = (total == 1).sum(axis=(1, 2))
    threes = (total == 3).sum(axis=(1, 2))
    diagonals = ((total == 2) & (a == d)).sum(axis=(1, 2))
    return (ones - threes - 2 * diagonals) // 4


def _full_blocks(masks: np.ndarray, side: int) -> np.ndarray:
    """Whether a mask of [N, H, W] may hold a full side x side square (`_has_full_block` or more:
    never a false no). Any such square covers a full (side // 2) x (side // 2) block of aligned 2x2
    cells, which a minimum filter finds on a quarter of the pixels."""
    cells = side // 2
    height, width = (masks.shape[1] // 2) * 2, (masks.shape[2] // 2) * 2
    if min(height, width) // 2 < cells:
        return np.zeros(len(masks), bool)
    pooled = masks[:, :height, :width].reshape(len(masks), height // 2, 2, width // 2, 2).all(axis=(2, 4))
    eroded = ndimage.minimum_filter(pooled.view(np.uint8), size=(1, cells, cells), mode="constant", cval=0)
    return eroded.reshape(len(masks), -1).any(axis=1)


def pen_alpha(line_: np.ndarray, size: int, pen_width: float) -> np.ndarray:
    """The centre line (longer side scaled to `size` px) redrawn with a round antialiased pen `pen_width` px wide.

    The distance to the line is computed once in the work frame and upscaled
    bilinearly (a distance field stays one under smooth scaling), then turned into
    coverage with a one-pixel antialiased edge, as a browser canvas draws a stroke.
    """
    rows = np.flatnonzero(line_.any(axis=1))
    cols = np.flatnonzero(line_.any(axis=0))
    line_ = line_[rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1]
    scale = size / max(line_.shape)
    pad = int(np.ceil(pen_width / 2.0 / scale)) + 2
    distance = ndimage.distance_transform_edt(~np.pad(line_, pad)).astype(np.float32)
    height, width = distance.shape
    target = (max(1, round(width * scale)), max(1, round(height * scale)))
    distance = np.asarray(Image.fromarray(distance).resize(target, Image.BILINEAR)) * scale
    alpha = np.clip(pen_width / 2.0 + 0.5 - distance, 0.0, 1.0)
    rows = np.flatnonzero(alpha.max(axis=1) > 0)
    cols = np.flatnonzero(alpha.max(axis=0) > 0)
    return alpha[rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1]


def place_on_canvas(alpha: np.ndarray, rng: np.random.Generator, pen: Pen, small: bool) -> np.ndarray:
    """Coverage pasted on an empty CANVAS x CANVAS: near the centre, or (small) anywhere it fits."""
    alpha = alpha[:CANVAS, :CANVAS]
    height, width = alpha.shape
    if small:
        top = int(rng.integers(0, CANVAS - height + 1))
        left = int(rng.integers(0, CANVAS - width + 1))
    else:
        dy, dx = rng.integers(-pen.jitter, pen.jitter + 1, size=2)
        top = int(np.clip((CANVAS - height) // 2 + dy, 0, CANVAS - height))
        left = int(np.clip((CANVAS - width) // 2 + dx, 0, CANVAS - width))
    canvas = np.zeros((CANVAS, CANVAS), np.float32)
    canvas[top:top + height, left:left + width] = alpha
    return canvas


def draw_canvas(shape: np.ndarray, rng: np.random.Generator, distortion: Distortion = Distortion(),
                pen: Pen = Pen()) -> np.ndarray:
    """A shape as the canvas delivers it: uint8 [280, 280] gray, black ink on white."""
    line_ = skeleton(warp(shape, rng, distortion))
    small = rng.random() < pen.small_share
    size = int(rng.integers(*(pen.small_size if small else pen.size), endpoint=True))
    width = max(pen.min_width, size * rng.uniform(*pen.width))
    alpha = pen_alpha(line_, size, width)
    return np.round(255.0 * (1.0 - place_on_canvas(alpha, rng, pen, small))).astype(np.uint8)


def canvas_input(shape: np.ndarray, rng: np.random.Generator, distortion: Distortion = Distortion(),
                 pen: Pen = Pen()) -> np.ndarray:
    """The model input the app makes of this drawing: uint8 [28, 28], white on black (MNIST's layout)."""
    from inference.preprocess import preprocess

    from training.onnx_contract import to_pixels

    return to_pixels(preprocess(draw_canvas(shape, rng, distortion, pen)))


# --------------------------------------------------------------------------- many drawings at once

# Kinds of drawing a task renders; each item is what the kind needs.
#   "mnist":      uint8 [28, 28] digit                 "one_flag": an MNIST 1 (flag, often a foot)
#   "seven_bar":  an MNIST 7                            "zero_slash": an MNIST 0
#   "open_four":  None (generated)                      "font": (font name, character)
#   "scribble" / "loops" / "curves" / "doodle" / "line": None (generated)     "pair": uint8 [2, 28, 28] (two digits side by side)
#   "image":      float [H, W] in [0, 1], white on black (e.g. scikit-learn's 8x8 digits)
#   "strokes":    polylines (x right, y down, any unit), e.g. written by the evaluation's benchmarks/browser/motor_pen.py
KINDS = ("mnist", "one_flag", "seven_bar", "zero_slash", "open_four", "font", "scribble", "loops", "curves",
         "doodle", "line", "pair", "image", "strokes")


def image_shape(image: np.ndarray) -> np.ndarray:
    """Any small white-on-black image (float in [0, 1]) upscaled smoothly into a work frame."""
    image = np.asarray(image, np.float32)
    blur = SOURCE_BLUR * max(image.shape) / 28.0
    field = ndimage.gaussian_filter(np.pad(image, 1), blur)
    field /= max(float(field.max()), 1e-6)
    inner = WORK_SIDE - 2 * WORK_MARGIN
    big = np.asarray(Image.fromarray(field).resize((inner, inner), Image.BICUBIC))
    return np.pad(np.clip(big, 0.0, 1.0), WORK_MARGIN)


def shape_for(kind: str, item, rng: np.random.Generator) -> np.ndarray:
    """The work-frame shape of one drawing of `kind` (see KINDS)."""
    if kind == "mnist":
        return mnist_shape(item)
    if kind == "one_flag":
        return add_flag_and_foot(mnist_shape(item), rng)
    if kind == "seven_bar":
        return cross_seven(mnist_shape(item), rng)
    if kind == "zero_slash":
        return slash_zero(mnist_shape(item), rng)
    if kind == "open_four":
        return strokes_shape(open_four(rng))
    if kind == "font":
        return strokes_shape(hershey_strokes(*item))
    if kind == "scribble":
        return strokes_shape(scribble(rng))
    if kind == "loops":
        return strokes_shape(loops_scribble(rng))
    if kind == "line":
        return strokes_shape(line(rng))
    if kind == "curves":
        return strokes_shape(curves(rng))
    if kind == "doodle":
        return strokes_shape(doodle(rng))
    if kind == "pair":
        return side_by_side(mnist_shape(item[0]), mnist_shape(item[1]), rng)
    if kind == "image":
        return image_shape(item)
    if kind == "strokes":
        return strokes_shape(item)
    raise ValueError(f"unknown drawing kind {kind!r}; choose one of {', '.join(KINDS)}")


@dataclass(frozen=True)
class Task:
    """Drawings of one kind, rendered with one seed: the unit of work of `iter_render`."""

    kind: str
    items: list  # one entry per drawing (None for generated kinds)
    seed: tuple[int, ...]  # seeds a numpy Generator: the same seed gives the same drawings
    distortion: Distortion = Distortion()
    pen: Pen = Pen()


def render_task(task: Task) -> tuple[np.ndarray, np.ndarray]:
    """(model inputs uint8 [N, 28, 28], bool [N] rendered); a drawing preprocessing refuses is False."""
    from inference.image_io import ImageInputError

    rng = np.random.default_rng(list(task.seed))
    out = np.zeros((len(task.items), 28, 28), np.uint8)
    ok = np.zeros(len(task.items), bool)
    for index, item in enumerate(task.items):
        try:
            out[index] = canvas_input(shape_for(task.kind, item, rng), rng, task.distortion, task.pen)
            ok[index] = True
        except (ImageInputError, BrokenDrawing):  # a speck the app would refuse; a redraw in pieces
            pass
    return out, ok


PARALLEL_FROM = 1500  # drawings: fewer are rendered in this process (starting workers costs ~2 s)


def run_to_end(progress):
    """The return value of a generator that yields progress, its progress ignored."""
    while True:
        try:
            next(progress)
        except StopIteration as stop:
            return stop.value


def iter_render(tasks: Sequence[Task], workers: int | None = None, render=None, parallel_from: int = PARALLEL_FROM):
    """Render every task with `render` (a module-level function Task -> (images, ok); default
    `render_task`, the long way; the training mix passes training.centre_lines.render_task) in
    `workers` processes (default: up to 2 usable cores; fewer than `parallel_from` drawings are
    rendered in this process), yielding (drawings finished, drawings in all) as tasks finish;
    returns the results in task order.

    Worker processes are spawned, not forked: the caller may hold TensorFlow or server
    threads, which a fork would copy in an undefined state. Closing the generator stops
    the queued work.
    """
    import multiprocessing
    import os
    from concurrent.futures import ProcessPoolExecutor, as_completed

    render = render or render_task
    total = sum(len(task.items) for task in tasks)
    if workers is None:
        workers = min(2, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1)
    results: list = [None] * len(tasks)
    done = 0
    if workers <= 1 or total < parallel_from:
        for index, task in enumerate(tasks):
            results[index] = render(task)
            done += len(task.items)
            yield done, total
        return results
    pool = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"), initializer=leave_with_parent)
    try:
        futures = {pool.submit(render, task): index for index, task in enumerate(tasks)}
        for future in as_completed(futures):
            index = futures[future]
            results[index] = future.result()
            done += len(tasks[index].items)
            yield done, total
    finally:
        # Also on cancel (GeneratorExit) or failure: queued tasks are dropped, running ones finish.
        pool.shutdown(wait=True, cancel_futures=True)
    return results


def leave_with_parent() -> None:
    """In a render worker: exit when the process that started the pool is gone.

    A pool's workers wait on its task queue, whose pipe each of them holds open too, so a parent killed
    with SIGKILL (a server stopped that way while it trained) never closes it: its two workers waited for
    ever, ~290 MB each (seen after a test killed a training replica; they were there an hour later).
    multiprocessing's sentinel of the parent process is closed by the kernel when it dies, whatever
    the signal."""
    import multiprocessing
    import os
    import threading

    parent = multiprocessing.parent_process()
    if parent is None:
        return

    def wait_for_parent() -> None:
        parent.join()
        os._exit(0)

    threading.Thread(target=wait_for_parent, name="leave-with-parent", daemon=True).start()


def chunked(kind: str, items: list, seed: tuple[int, ...], size: int = 500) -> list[Task]:
    """`items` split into Tasks of `size` drawings, each seeded by (seed..., chunk number)."""
    return [Task(kind, items[start:start + size], (*seed, start // size))
            for start in range(0, len(items), size)]
