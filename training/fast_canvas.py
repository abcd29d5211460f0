"""The training mix's renderer: drawings as centre lines, the canvas and the app's preprocessing emulated in batches.

training/strokes.py draws each drawing the long way (warp a raster, skeletonise it,
paint a 280x280 canvas with an antialiased round pen, run inference.preprocess on
it): ~2.7 ms a drawing, so the ~100,000 drawings of the training mix took ~130 s on
2 cores. Here the same drawing is made from its centre line, with numpy over a
whole batch at once, in ~0.2 ms:

    centre line (points in the 64 px work frame: an MNIST digit's skeleton, or a
    polyline of a stroke font or a generator, sampled every POINT_SPACING px)
    -> the writer's hand: rotation, shear, aspect and a smooth elastic displacement,
       applied to the points (the pen is put on afterwards, so it keeps one width)
    -> the pen and the app's preprocessing, emulated: inference.preprocess crops
       the drawing, brings a stroke whose width is outside STROKE_BAND to
       STROKE_TARGET, scales the ink's longer side to 20 px (Lanczos) and centres
       it by mass in 28x28. Here the size, pen width and band decision are worked
       out from the pen's size and width (as that pipeline measures them), and
       each 20x20 pixel gets the coverage of a round pen at its distance from the
       centre line, blurred like the two Lanczos resizes (`_coverage`); then the
       same peak normalisation and centre-of-mass placement as preprocess.to_mnist.

The emulation's constants were fitted against the long way on the same centre lines
(tests/test_fast_canvas.py keeps it so: pixel error, ink, stroke widths, edges);
`python -m benchmarks.reading.fast_canvas_check` compares the two renderers' images and how the
shipped models read them (README, "How it reads real drawings"). The evaluation drawings
(benchmarks/reading/drawn_sets.py) still go the long way: through the app's own code.

Every random choice comes from the numpy Generator passed in: the same seed gives
the same drawings.
"""
from __future__ import annotations

import functools

import numpy as np
from PIL import Image
from scipy.special import erf

from training.strokes import WORK_MARGIN, WORK_SIDE, Distortion, Pen

RENDER_VERSION = 3  # part of the training mix's cache key (training/canvas_data.py): raise it when a drawing changes
# Work px between the points of a sampled polyline (a skeleton's pixels are 1-1.4 apart): ~0.55 output
# px, where the thinnest pen after preprocessing is ~1.7 px wide (the scallops between points: < 0.05 px).
POINT_SPACING = 1.4
BOX = 20  # px: preprocess scales the ink's longer side to this (inference.preprocess.MNIST_BOX)
SIDE = 28
CENTRE = 14.0  # inference.preprocess.MNIST_CENTRE
# inference.preprocess's stroke-width band and target (stroke width / longer side of the ink), and its work side.
STROKE_BAND = (0.085, 0.175)
STROKE_TARGET = 0.12
PREPROCESS_WORK = 80
# Fitted on 150 MNIST test skeletons drawn both ways (sizes 45-240 px, pens 5-20% of the size):
RATIO_GAIN = 1.02  # preprocess.stroke_ratio / (pen width / longer side of the crop): 1.025 +- 0.057 measured
EDGE_RAMP = 1.25  # px of the 140 px analysis image over which a pen's edge rises (box-reduced antialiasing)
THICKEN_OFFSET = -0.65  # work px: where preprocess's thickening puts the new edge, against the estimate
LANCZOS_SIGMA = 0.27  # output px: the final 4x Lanczos reduction as a Gaussian blur (gives the share of gray edge pixels in the ink, 0.58)
WINDOW = 3  # output px each side of a centre-line point whose distance is computed (the pen + blur reach ~3 px)


@functools.lru_cache(maxsize=None)
def _resize_operator(n_in: int, n_out: int, method: int) -> np.ndarray:
    """PIL's 1-D resampling of n_in samples to n_out as a matrix [n_out, n_in] (PIL resizes separably,
    so a 2-D resize of a float image is M @ image @ M.T, exactly)."""
    eye = np.eye(n_in, dtype=np.float32)
    return np.stack([np.asarray(Image.fromarray(eye[i][None, :]).resize((n_out, 1), method))[0]
                     for i in range(n_in)], 1)


# The training mix skeletonises MNIST digits 36 px tall (in a 46 px frame) rather than the long
# way's 50 (64): the skeleton's cost grows with the cube of the size (area x thinning passes), and
# its pixels are still ~0.55 output px apart. Its points are scaled into the work frame after.
SKELETON_INNER, SKELETON_MARGIN = 36, 5


def mnist_shapes(digits: np.ndarray, inner: int = WORK_SIDE - 2 * WORK_MARGIN, margin: int = WORK_MARGIN) -> np.ndarray:
    """strokes.mnist_shape of every digit of uint8 [N, 28, 28], at once: float32 [N, S, S], the
    digit `inner` px tall in a frame with `margin` px around it (default: the work frame, 64 px)."""
    from scipy import ndimage

    from training.strokes import SOURCE_BLUR

    digits = np.asarray(digits, np.float32).reshape(-1, 28, 28) / 255.0
    field = ndimage.gaussian_filter(digits, (0, SOURCE_BLUR, SOURCE_BLUR))
    up = _resize_operator(28, inner, Image.BICUBIC)
    # up @ field @ up.T for every digit as stacked 28-px products: one big matrix product (all the
    # digits' rows at once) wakes OpenBLAS's threads, which on 2 busy cores cost up to 45 ms a call
    # (measured), where a stack of small ones stays on this thread (8 ms for 1,000 digits).
    big = np.clip(np.matmul(up, np.matmul(field, up.T)), 0.0, 1.0)
    count, side = len(big), inner
    out = np.zeros((count, side + 2 * margin, side + 2 * margin), np.float32)
    out[:, margin:margin + side, margin:margin + side] = big
    return out


def to_work_frame(points: np.ndarray, inner: int = SKELETON_INNER, margin: int = SKELETON_MARGIN) -> np.ndarray:
    """Points (row, col) of a frame made by mnist_shapes(inner, margin), in the work frame's pixels."""
    scale = (WORK_SIDE - 2 * WORK_MARGIN) / inner
    return ((np.asarray(points, np.float32) - margin) * scale + WORK_MARGIN).astype(np.float32)


def line_points(line: np.ndarray) -> np.ndarray:
    """The pixels of a skeleton (bool [H, W]) as centre-line points float32 [P, 2] (row, col)."""
    return np.argwhere(line).astype(np.float32)


def polyline_points(strokes, spacing: float = POINT_SPACING) -> np.ndarray:
    """Polylines in any unit (x right, y down; aspect kept) placed in the work frame as
    strokes.strokes_shape places them, sampled every `spacing` px: float32 [P, 2] (row, col)."""
    return drawings_points([strokes], spacing)[0]


def drawings_points(drawings, spacing: float = POINT_SPACING, fit: bool = True, strokes_too: bool = False):
    """`polyline_points` of many drawings (each a list of polylines) at once; with fit=False the
    polylines are already in work-frame pixels (x, y) and are only sampled.

    All strokes of all drawings together: their vertices one after the other, each stroke's arc
    length starting beyond the last one's, so one interpolation samples them all and never
    bridges two strokes (a few dozen numpy calls a batch, not a drawing). With `strokes_too`, also
    (all points float32 [P, 2], each point's stroke [P], its arc length along that stroke [P], each
    stroke's drawing [S], points per drawing [N]), for stroke-level distortions (training/letters.py)."""
    strokes, drawing_of_stroke = [], []
    for index, drawing in enumerate(drawings):
        for stroke in drawing:
            stroke = np.asarray(stroke, np.float64).reshape(-1, 2)
            if len(stroke):
                strokes.append(stroke)
                drawing_of_stroke.append(index)
    count = len(drawings)
    drawing_of_stroke = np.asarray(drawing_of_stroke, np.int64)
    if len(np.unique(drawing_of_stroke)) != count:
        raise ValueError("every drawing needs at least one point")
    sizes = np.array([len(stroke) for stroke in strokes])
    xy = np.concatenate(strokes)
    stroke_of = np.repeat(np.arange(len(strokes)), sizes)
    if fit:
        drawing_of = drawing_of_stroke[stroke_of]
        starts = np.searchsorted(drawing_of, np.arange(count))
        low, high = np.minimum.reduceat(xy, starts), np.maximum.reduceat(xy, starts)
        scale = (WORK_SIDE - 2 * WORK_MARGIN) / np.maximum((high - low).max(axis=1), 1e-6)
        xy = (xy - ((low + high) / 2.0)[drawing_of]) * scale[drawing_of, None] + WORK_SIDE / 2.0
    first = np.zeros(len(xy), bool)
    first[np.cumsum(sizes) - sizes] = True
    steps = np.concatenate([[0.0], np.hypot(*np.diff(xy, axis=0).T)])
    steps[first] = 0.0  # no length between one stroke's end and the next one's start
    along = np.cumsum(steps)
    start = along[first]
    length = np.bincount(stroke_of, weights=steps, minlength=len(strokes))
    samples = np.maximum(2, np.ceil(length / spacing).astype(np.int64) + 1)
    samples[length == 0] = 1
    owner = np.repeat(np.arange(len(strokes)), samples)
    position = np.arange(owner.size) - np.repeat(np.cumsum(samples) - samples, samples)
    t = start[owner] + length[owner] * position / np.maximum(samples[owner] - 1, 1)
    # Stroke k's arc length is shifted by k * (2 * total + 2) so strokes never meet in the interpolation.
    shift = 2.0 * (along[-1] + 1.0)
    key = along + shift * stroke_of
    sample_key = t + shift * owner
    out = np.stack([np.interp(sample_key, key, xy[:, 1]), np.interp(sample_key, key, xy[:, 0])], 1)
    per_drawing = np.bincount(drawing_of_stroke, weights=samples, minlength=count).astype(np.int64)
    out = out.astype(np.float32)
    if strokes_too:
        return out, owner, t - start[owner], drawing_of_stroke, per_drawing
    return np.split(out, np.cumsum(per_drawing)[:-1])


def work_polyline_points(strokes, spacing: float = POINT_SPACING) -> np.ndarray:
    """Polylines already in work-frame pixels (x, y) sampled every `spacing` px: float32 [P, 2] (row, col)."""
    return drawings_points([strokes], spacing, fit=False)[0]


# --------------------------------------------------------------------------- the writer's hand, on points


@functools.lru_cache(maxsize=None)
def _elastic_basis(grid: int) -> np.ndarray:
    """[WORK_SIDE, grid]: the bicubic upscaling strokes.warp gives its control points, per work px."""
    return _resize_operator(grid, WORK_SIDE, Image.BICUBIC)


def warp_points(points: np.ndarray, owner: np.ndarray, count: int, rng: np.random.Generator,
                distortion: Distortion) -> np.ndarray:
    """Every drawing's points moved by its own random rotation, shear, aspect change and smooth
    elastic displacement about the work frame's centre (strokes.warp's hand, drawn the same way)."""
    if distortion.rotation == distortion.shear == distortion.aspect == distortion.elastic == 0:
        return points
    angle = np.deg2rad(rng.uniform(-distortion.rotation, distortion.rotation, count))
    shear = rng.uniform(-distortion.shear, distortion.shear, count)
    aspect = 1.0 + rng.uniform(-distortion.aspect, distortion.aspect, count)
    cos, sin = np.cos(angle), np.sin(angle)
    # (row, col) forward map: rotation @ shear @ aspect, as strokes.warp (which applies its inverse to pixels)
    forward = np.empty((count, 2, 2))
    forward[:, 0, 0] = cos - sin * shear
    forward[:, 0, 1] = -sin * aspect
    forward[:, 1, 0] = sin + cos * shear
    forward[:, 1, 1] = cos * aspect
    centre = (WORK_SIDE - 1) / 2.0
    row, col = points[:, 0].astype(np.float64) - centre, points[:, 1].astype(np.float64) - centre
    f = forward[owner]
    moved = np.stack([f[:, 0, 0] * row + f[:, 0, 1] * col, f[:, 1, 0] * row + f[:, 1, 1] * col], 1) + centre
    if distortion.elastic > 0:
        # The displacement field (strokes.warp's bicubic spread of random control points) sampled on a
        # coarse grid per drawing, then read bilinearly at the points: it is smooth, and gathering a
        # drawing's 2 x 16 control values for every point cost more than the rest of the warp.
        grid = distortion.elastic_grid
        control = rng.uniform(-1, 1, (count, 2, grid, grid)).astype(np.float32)
        coarse = _coarse_basis(grid)  # [FIELD_GRID, grid]
        field = np.einsum("ai,nkij,bj->nkab", coarse, control, coarse)  # [N, 2, G, G] (no BLAS: see mnist_shapes)
        where = np.clip(points.astype(np.float64) * ((FIELD_GRID - 1) / (WORK_SIDE - 1)), 0, FIELD_GRID - 1 - 1e-9)
        cell = where.astype(np.int64)
        frac = where - cell
        r, c = cell[:, 0], cell[:, 1]
        fr, fc = frac[:, 0:1], frac[:, 1:2]
        # One flat gather per corner: drawing, axis and grid cell as one index.
        flat = field.reshape(-1)
        cells = FIELD_GRID * FIELD_GRID
        base = owner * (2 * cells) + r * FIELD_GRID + c

        def at(offset):
            return np.stack([flat[base + offset], flat[base + cells + offset]], 1)  # [P, 2]

        value = ((1 - fr) * ((1 - fc) * at(0) + fc * at(1)) + fr * ((1 - fc) * at(FIELD_GRID) + fc * at(FIELD_GRID + 1)))
        moved += distortion.elastic * value
    return moved


FIELD_GRID = 17  # samples per side of the displacement field (every 4 work px)


@functools.lru_cache(maxsize=None)
def _coarse_basis(grid: int) -> np.ndarray:
    """[FIELD_GRID, grid]: the elastic basis (_elastic_basis) at FIELD_GRID evenly spaced work px."""
    positions = np.linspace(0, WORK_SIDE - 1, FIELD_GRID)
    return _interpolate_rows(_elastic_basis(grid), positions).astype(np.float32)


def _interpolate_rows(table: np.ndarray, position: np.ndarray) -> np.ndarray:
    """table's rows at fractional row positions (linear between neighbours, clamped)."""
    position = np.clip(position, 0, len(table) - 1)
    low = np.minimum(position.astype(np.int64), len(table) - 2)
    frac = (position - low)[:, None]
    return table[low] * (1 - frac) + table[low + 1] * frac


# --------------------------------------------------------------------------- pen + preprocessing, emulated


def render(lines: list[np.ndarray], rng: np.random.Generator, distortion: Distortion = Distortion(),
           pen: Pen = Pen()) -> np.ndarray:
    """Model inputs uint8 [N, 28, 28] (white on black) of the centre lines `lines` (float [P, 2]
    (row, col) in the work frame, each at least one point), as the app would make of them drawn on
    its canvas with a random `pen` after the hand's random `distortion`."""
    count = len(lines)
    if count == 0:
        return np.zeros((0, SIDE, SIDE), np.uint8)
    if any(len(line) == 0 for line in lines):
        raise ValueError("every drawing needs at least one centre-line point")
    owner = np.repeat(np.arange(count), [len(line) for line in lines])
    points = warp_points(np.concatenate(lines), owner, count, rng, distortion)
    small = rng.random(count) < pen.small_share
    size = np.where(small, rng.integers(pen.small_size[0], pen.small_size[1], count, endpoint=True),
                    rng.integers(pen.size[0], pen.size[1], count, endpoint=True)).astype(np.float64)
    width = np.maximum(pen.min_width, size * rng.uniform(*pen.width, count))
    return emulate(points, owner, size, width)


def emulate(points: np.ndarray, owner: np.ndarray, size: np.ndarray, width: np.ndarray) -> np.ndarray:
    """What the app makes of centre lines drawn on its canvas: `points` float [P, 2] (row, col, work
    px) of drawings `owner` [P] (0..N-1, in order), each drawn `size` canvas px large (its centre
    line's pixel box, as strokes.pen_alpha scales it) with a pen `width` canvas px wide.
    uint8 [N, 28, 28], white on black."""
    count = len(size)
    starts = np.searchsorted(owner, np.arange(count))
    low = np.minimum.reduceat(points, starts)
    extent = np.maximum.reduceat(points, starts) - low
    longest = extent.max(axis=1)
    line_canvas = size * longest / (longest + 1.0)  # the centre line's longer side on the canvas

    # ---- what preprocess makes of it: the 280 px canvas is box-reduced to 140 px and cropped to the
    # ink with a pixel to spare; its stroke ratio decides whether the width is changed.
    crop = (line_canvas + width) / 2.0 + 2.0
    ratio = RATIO_GAIN * (width / 2.0) / crop
    to_work = PREPROCESS_WORK / crop  # 140 px -> preprocess's work image
    half = width / 4.0 * to_work  # half the pen's width, work px
    ramp = EDGE_RAMP * np.maximum(to_work, 1.0)
    change = np.where((ratio < STROKE_BAND[0]) | (ratio > STROKE_BAND[1]),
                      (STROKE_TARGET - ratio) * PREPROCESS_WORK / 2.0, 0.0)
    half = np.where(change > 0, half + 0.15 * ramp + change + THICKEN_OFFSET, half + change)
    ramp = np.where(change != 0, 1.0, ramp)
    rim = half + 0.45 * ramp  # the 0.05-level of the edge, beyond the centre line
    frame_to_work = line_canvas / np.maximum(longest, 1e-6) / 2.0 * to_work  # work-frame px -> work px
    ink = extent * frame_to_work[:, None] + 2.0 * rim[:, None]  # the ink's box (0.05 level), work px
    to_box = BOX / ink.max(axis=1)  # work px -> output px: the longer side of the ink -> 20
    # preprocess resizes the ink's box onto a whole number of pixels per side: the shorter side is
    # stretched a little to fill round(side), as PIL does.
    box = np.maximum(np.rint(ink * to_box[:, None]), 1).astype(np.int64)
    axis_scale = box / ink  # work px -> output px, per axis
    pen_half = half * to_box
    sigma = np.sqrt(LANCZOS_SIGMA ** 2 + (ramp * to_box) ** 2 / 12.0)

    # ---- each output pixel's distance to the centre line (nearest point within WINDOW px)
    where = ((points - low[owner]) * frame_to_work[owner, None] + rim[owner, None]) * axis_scale[owner]
    distance = _nearest_distance(where, owner, count)
    coverage = _coverage(distance, pen_half[:, None, None], sigma[:, None, None])
    rows = np.arange(BOX)
    coverage[(rows[None, :] >= box[:, 0, None])[:, :, None] | (rows[None, :] >= box[:, 1, None])[:, None, :]] = 0.0
    peak = coverage.reshape(count, -1).max(axis=1)
    coverage /= np.maximum(peak, 1e-6)[:, None, None]
    out = np.zeros((count, SIDE, SIDE), np.uint8)
    _place_by_mass(coverage, out)
    return out


# Window offsets (row, col) around a point's pixel whose distance is computed: a disc of radius
# sqrt(10) (3.2 px: the widest pen's half-width, 1.75 px, plus 3 of its blur's sigma) instead of the
# 7x7 square, 37 offsets instead of 49.
_OFFSETS = np.array([(r, c) for r in range(-WINDOW, WINDOW + 1) for c in range(-WINDOW, WINDOW + 1)
                     if r * r + c * c <= 10], np.int64)
_FRAME = BOX + 2 * WINDOW  # the distance frame: the box with room for every offset, no bounds checks


_OFFSET_FLAT = (_OFFSETS[:, 0] * _FRAME + _OFFSETS[:, 1]).astype(np.int32)
_OFFSET_ROWS, _OFFSET_COLS = _OFFSETS[:, 0].astype(np.float32), _OFFSETS[:, 1].astype(np.float32)


def _nearest_distance(where: np.ndarray, owner: np.ndarray, count: int) -> np.ndarray:
    """float32 [N, BOX, BOX]: per output pixel centre, the distance to the nearest point of its
    drawing within the window (inf further away)."""
    where = where.astype(np.float32)
    base = np.floor(where)
    fraction = where - base - np.float32(0.5)  # the point, from its pixel's centre
    base = base.astype(np.int32) + WINDOW
    flat = (owner.astype(np.int32) * _FRAME + base[:, 0]) * _FRAME + base[:, 1]
    index = flat[:, None] + _OFFSET_FLAT[None, :]
    d_rows = fraction[:, 0, None] - _OFFSET_ROWS[None, :]
    d_cols = fraction[:, 1, None] - _OFFSET_COLS[None, :]
    d_rows *= d_rows
    d_cols *= d_cols
    d_rows += d_cols
    nearest = np.full(count * _FRAME * _FRAME, np.inf, np.float32)
    np.minimum.at(nearest, index.ravel(), d_rows.ravel())
    frame = nearest.reshape(count, _FRAME, _FRAME)[:, WINDOW:WINDOW + BOX, WINDOW:WINDOW + BOX]
    return np.sqrt(frame)


# 0.5 * erf(x / sqrt(2)) tabulated: the coverage needs two per output pixel, and scipy's erf costs
# ~45 ns each (measured), a table lookup a third of that. Nearest entry: error <= 0.001.
_ERF_STEP = 0.005
_ERF_LIMIT = 8.0
_HALF_ERF = (0.5 * erf(np.arange(-_ERF_LIMIT, _ERF_LIMIT + _ERF_STEP / 2, _ERF_STEP) / np.sqrt(2.0))).astype(np.float32)


def _half_erf(x: np.ndarray) -> np.ndarray:
    index = np.clip(np.rint((x + _ERF_LIMIT) * (1.0 / _ERF_STEP)), 0, len(_HALF_ERF) - 1).astype(np.int32)
    return _HALF_ERF[index]


def _coverage(distance: np.ndarray, half: np.ndarray, sigma: np.ndarray) -> np.ndarray:
    """A round pen's coverage at `distance` from its centre line: a band of half-width `half`
    blurred by a Gaussian of `sigma` (float32; 0 far away, where distance is inf)."""
    scale = (1.0 / sigma).astype(np.float32)
    half = (half * scale).astype(np.float32)
    distance = np.minimum(distance, np.float32(1e3)) * scale
    value = _half_erf(half - distance)
    value += _half_erf(half + distance)
    return np.clip(value, 0.0, 1.0, out=value)


_PAD = BOX  # room around the 28x28 output for any placement of the box


def _place_by_mass(boxes: np.ndarray, out: np.ndarray) -> None:
    """Each [BOX, BOX] image into out [N, 28, 28] with its centre of mass at CENTRE (rounded to
    whole pixels, as inference.preprocess.to_mnist), as uint8."""
    count = len(boxes)
    total = boxes.sum(axis=(1, 2))
    index = np.arange(BOX, dtype=np.float64)
    tops = np.rint(CENTRE - (boxes.sum(axis=2) * index).sum(axis=1) / total).astype(np.int64)
    lefts = np.rint(CENTRE - (boxes.sum(axis=1) * index).sum(axis=1) / total).astype(np.int64)
    side = SIDE + 2 * _PAD
    origin = (np.arange(count) * side + tops + _PAD) * side + lefts + _PAD
    grid = (np.arange(BOX)[:, None] * side + np.arange(BOX)[None, :]).ravel()
    canvas = np.zeros(count * side * side, np.uint8)
    canvas[(origin[:, None] + grid[None, :]).ravel()] = np.rint(boxes * 255.0).astype(np.uint8).ravel()
    out[:] = canvas.reshape(count, side, side)[:, _PAD:_PAD + SIDE, _PAD:_PAD + SIDE]
