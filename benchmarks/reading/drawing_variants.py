"""MNIST test digits drawn the ways people draw them, on a 280x280 canvas.

Each variant maps one MNIST digit (uint8 [28, 28], white on black) and a numpy
Generator to a canvas a user might send. The digit's own shape is scaled up and
made crisp, like a brush stroke, rather than blurred up from 28 px; "thick" and
"thin" redraw its centre line with a marker or a fine pen. Comparing a model's
accuracy on these canvases (through `inference.preprocess`) with its accuracy on
the raw digits measures how well preprocessing recovers what the model was
trained on. `naive_preprocess` is the original app's pipeline, for comparison.

    from benchmarks.reading.drawing_variants import VARIANTS
    canvas = VARIANTS["small_corner"](mnist.x_test[0], np.random.default_rng(0))
"""
from __future__ import annotations

from typing import Callable

import numpy as np
from PIL import Image
from scipy import ndimage

CANVAS = 280  # the canvas side, in pixels
CENTRED_SIZE = (150, 215)  # longer side of a digit drawn "normally", px (uniform range)
SMALL_SIZE = (40, 70)  # a digit drawn small...
SMALL_MARGIN = (4, 24)  # ...this far from the edges of a random corner
LARGE_SIZE = (250, 272)  # a digit filling the canvas
CENTRE_JITTER = 15  # px: nobody draws exactly in the middle
# Pen widths as a fraction of the digit's longer side. MNIST strokes are about 0.12 of
# it (inference.preprocess.stroke_ratio of the "centered" canvases: median 0.117, 80%
# within 0.085-0.17): a marker is about twice that, a fine pen about a fifth.
THICK_PEN = (0.20, 0.26)
THIN_PEN = (0.018, 0.03)
SKELETON_SCALE = 3  # the centre line is traced on the digit upscaled this much
SOURCE_BLUR = 0.5  # source px: smooths MNIST's pixel steps before upscaling
FIELD_MARGIN = 2  # source px of room around the digit's box
HOLLOW = 0.14  # ink deeper than this (of the digit's longer side) is a filled loop, not a stroke

Variant = Callable[[np.ndarray, np.random.Generator], "Image.Image | np.ndarray"]


def digit_field(digit: np.ndarray, size: int) -> np.ndarray:
    """The digit resized smoothly so its ink's longer side is `size` px, with a margin; float [0, 1]."""
    rows = np.flatnonzero(digit.max(axis=1))
    cols = np.flatnonzero(digit.max(axis=0))
    crop = digit[rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1].astype(np.float32) / 255.0
    scale = size / max(crop.shape)
    # The margin keeps strokes that touch the box from being cut flat; the slight blur
    # keeps MNIST's pixel steps from showing as bumps along every upscaled edge.
    crop = ndimage.gaussian_filter(np.pad(crop, FIELD_MARGIN), SOURCE_BLUR, mode="constant")
    height, width = crop.shape
    target = (max(1, round(width * scale)), max(1, round(height * scale)))
    return np.asarray(Image.fromarray(crop).resize(target, Image.BICUBIC))


def crisp_shape(digit: np.ndarray, size: int) -> np.ndarray:
    """The digit as a solid stroke with a ~1.5 px antialiased edge (alpha in [0, 1]), trimmed to its ink."""
    field = digit_field(digit, size)
    # MNIST's edges fall from 1 to 0 over ~2 source pixels, i.e. ~2*scale canvas pixels;
    # this gain turns that ramp into a ~1.5 px edge, like a brush's antialiasing.
    gain = 1.33 * size / 20.0
    return trim(np.clip((field - 0.5) * gain + 0.5, 0.0, 1.0))


def _zhang_suen_tables() -> tuple[np.ndarray, np.ndarray]:
    """For each of the 256 neighbourhoods, whether each of the two sub-passes removes the centre pixel.

    Bit i of the code is neighbour P(i+2), clockwise from north: N, NE, E, SE, S, SW, W, NW.
    """
    codes = np.arange(256)
    bits = [(codes >> i) & 1 for i in range(8)]
    count = sum(bits)
    transitions = sum((bits[i] == 0) & (bits[(i + 1) % 8] == 1) for i in range(8))
    north, east, south, west = bits[0], bits[2], bits[4], bits[6]
    removable = (count >= 2) & (count <= 6) & (transitions == 1)
    first = removable & ((north & east & south) == 0) & ((east & south & west) == 0)
    second = removable & ((north & east & west) == 0) & ((north & south & west) == 0)
    return first, second


_THINNING_PASSES = _zhang_suen_tables()
# Summed over a 3x3 window, gives each pixel's neighbourhood code (bit i = P(i+2)).
_NEIGHBOUR_BITS = np.array([[128, 1, 2], [64, 0, 4], [32, 16, 8]], dtype=np.uint8)


def thin_to_centre_line(shape: np.ndarray) -> np.ndarray:
    """Zhang-Suen thinning: the one-pixel-wide, connected centre line of a binary shape.

    Each sub-pass peels, all at once, the edge pixels whose removal keeps the shape
    connected and does not shorten a line end; it stops when nothing changes.
    """
    line = shape.astype(np.uint8)
    while True:
        changed = False
        for removable in _THINNING_PASSES:
            code = ndimage.correlate(line, _NEIGHBOUR_BITS, mode="constant")
            remove = (line == 1) & removable[code]
            if remove.any():
                line[remove] = 0
                changed = True
        if not changed:
            return line.astype(bool)


def _four_connected(line: np.ndarray) -> np.ndarray:
    """Fill the corner of every diagonal step, so the upscaled distance has no gaps between them."""
    line = line.copy()
    down = line[:-1, :-1] & line[1:, 1:] & ~line[:-1, 1:] & ~line[1:, :-1]
    line[:-1, 1:] |= down
    up = line[:-1, 1:] & line[1:, :-1] & ~line[:-1, :-1] & ~line[1:, 1:]
    line[:-1, :-1] |= up
    return line


def centre_line(digit: np.ndarray, pad: int = 1) -> tuple[np.ndarray, float]:
    """(distance to the digit's centre line, with `pad` px room around it; the digit's traced size in px).

    Traced on the digit upscaled SKELETON_SCALE times.
    """
    rows = np.flatnonzero(digit.max(axis=1))
    cols = np.flatnonzero(digit.max(axis=0))
    size = (max(rows[-1] - rows[0], cols[-1] - cols[0]) + 1) * SKELETON_SCALE
    shape = digit_field(digit, size) > 0.5
    # A writer whose pen filled a loop meant a loop: hollow out blobs wider than any
    # stroke, so the pen traces their outline instead of a line through them.
    shape &= ndimage.distance_transform_edt(shape) <= HOLLOW * size
    line = np.pad(_four_connected(thin_to_centre_line(shape)), pad)
    if not line.any():
        line = np.pad(shape, pad)
    return ndimage.distance_transform_edt(~line).astype(np.float32), float(size)


def pen_stroke(digit: np.ndarray, size: int, pen_width: float) -> np.ndarray:
    """The digit's centre line redrawn with a round pen `pen_width` px wide, `size` px tall/wide (alpha, trimmed)."""
    pad = int(np.ceil(pen_width / 2.0 * SKELETON_SCALE * 20 / size)) + 2
    distance, traced_size = centre_line(digit, pad)
    scale = size / traced_size
    height, width = distance.shape
    target = (max(1, round(width * scale)), max(1, round(height * scale)))
    # A distance field stays a distance field under smooth upscaling: one cheap
    # transform at low resolution gives crisp pens of any width at canvas size.
    distance = np.asarray(Image.fromarray(distance).resize(target, Image.BILINEAR)) * scale
    return trim(np.clip(pen_width / 2.0 + 0.5 - distance, 0.0, 1.0))


def place(alpha: np.ndarray, top: int, left: int) -> np.ndarray:
    """`alpha` pasted on an empty CANVAS x CANVAS at (top, left), kept on the canvas."""
    alpha = alpha[:CANVAS, :CANVAS]
    canvas = np.zeros((CANVAS, CANVAS), dtype=np.float32)
    height, width = alpha.shape
    top = int(np.clip(top, 0, CANVAS - height))
    left = int(np.clip(left, 0, CANVAS - width))
    canvas[top:top + height, left:left + width] = alpha
    return canvas


def trim(alpha: np.ndarray) -> np.ndarray:
    rows = np.flatnonzero(alpha.max(axis=1) > 0)
    cols = np.flatnonzero(alpha.max(axis=0) > 0)
    return alpha[rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1]


def place_centred(alpha: np.ndarray, rng: np.random.Generator, jitter: int = CENTRE_JITTER) -> np.ndarray:
    height, width = alpha.shape
    dy, dx = rng.integers(-jitter, jitter + 1, size=2)
    return place(alpha, (CANVAS - height) // 2 + dy, (CANVAS - width) // 2 + dx)


def black_on_white(alpha: np.ndarray) -> np.ndarray:
    """Gray uint8 [H, W], as a paint program's white canvas with a black brush."""
    return np.round(255.0 * (1.0 - alpha)).astype(np.uint8)


def white_on_black(alpha: np.ndarray) -> np.ndarray:
    """Gray uint8 [H, W], as a blackboard-style canvas with a white brush."""
    return np.round(255.0 * alpha).astype(np.uint8)


def transparent_layer(alpha: np.ndarray) -> np.ndarray:
    """RGBA uint8 like Gradio 6's sketchpad: black strokes, coverage in alpha, RGB 0 under alpha 0."""
    rgba = np.zeros(alpha.shape + (4,), dtype=np.uint8)
    rgba[:, :, 3] = np.round(255.0 * alpha).astype(np.uint8)
    return rgba


def _size(rng: np.random.Generator, bounds: tuple[int, int]) -> int:
    return int(rng.integers(bounds[0], bounds[1] + 1))


def centered(digit: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    return black_on_white(place_centred(crisp_shape(digit, _size(rng, CENTRED_SIZE)), rng))


def small_corner(digit: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    alpha = crisp_shape(digit, _size(rng, SMALL_SIZE))
    height, width = alpha.shape
    margin_y, margin_x = rng.integers(SMALL_MARGIN[0], SMALL_MARGIN[1] + 1, size=2)
    bottom, right = rng.integers(0, 2, size=2)
    top = CANVAS - height - margin_y if bottom else margin_y
    left = CANVAS - width - margin_x if right else margin_x
    return black_on_white(place(alpha, top, left))


def large(digit: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    return black_on_white(place_centred(crisp_shape(digit, _size(rng, LARGE_SIZE)), rng, jitter=2))


def thick(digit: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    size = _size(rng, CENTRED_SIZE)
    return black_on_white(place_centred(pen_stroke(digit, size, size * rng.uniform(*THICK_PEN)), rng))


def thin(digit: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    size = _size(rng, CENTRED_SIZE)
    pen = max(2.5, size * rng.uniform(*THIN_PEN))
    return black_on_white(place_centred(pen_stroke(digit, size, pen), rng))


def white_on_black_variant(digit: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    return white_on_black(place_centred(crisp_shape(digit, _size(rng, CENTRED_SIZE)), rng))


def transparent(digit: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    return transparent_layer(place_centred(crisp_shape(digit, _size(rng, CENTRED_SIZE)), rng))


VARIANTS: dict[str, Variant] = {
    "centered": centered,
    "small_corner": small_corner,
    "large": large,
    "thick": thick,
    "thin": thin,
    "white_on_black": white_on_black_variant,
    "transparent": transparent,
}


def render(name: str, digits: np.ndarray, seed: int = 0) -> list[np.ndarray]:
    """Every digit of `digits` [N, 28, 28] drawn as variant `name`, repeatably."""
    rng = np.random.default_rng(seed)
    return [VARIANTS[name](digit, rng) for digit in digits]


def naive_preprocess(image) -> np.ndarray:
    """The original app's pipeline: grayscale -> resize to 28x28 -> /255, nothing else. [28, 28, 1] float32."""
    if not isinstance(image, Image.Image):
        image = Image.fromarray(np.asarray(image))
    small = image.convert("L").resize((28, 28))
    return (np.asarray(small, dtype=np.float32) / 255.0)[:, :, None]

