"""Any drawing -> the model's input, made the way MNIST itself was made.

MNIST digits are white on black, scaled so the longer side of the ink is 20 px
(aspect kept, antialiased) and placed in 28x28 with their centre of mass at the
centre. A canvas drawing differs in every respect: dark ink on white (or a
transparent layer), anywhere, any size, with a marker or a fine pen. So:

    load -> flatten transparency -> find the ink (polarity) -> crop to the digit
    (specks ignored) -> bring odd stroke widths to MNIST's -> 20 px box -> centre of mass

`preprocess(value, invert=False)` returns float32 [28, 28, 1] in [0, 1], the ONNX
input contract (training/onnx_contract.py); the UI shows the same array enlarged.
"""
from __future__ import annotations

from typing import Any

import numpy as np
from PIL import Image
from scipy import ndimage

from inference.image_io import EmptyImageError, ImageInputError, load_image

__all__ = ["preprocess", "ink_map", "crop_digit", "normalise_strokes", "to_mnist", "stroke_ratio",
           "EmptyImageError", "ImageInputError"]

MNIST_SIZE = 28  # output side
MNIST_BOX = 20  # longer side of the ink in MNIST
MNIST_CENTRE = (14.0, 14.0)  # MNIST's mean centre of mass (row, col), measured on the test set
MAX_ANALYSIS_SIDE = 160  # px: larger gray images are box-averaged first (a 280 px canvas to 140; measured
# 1.9 -> 1.6 ms per 280 px PNG, same accuracy on the drawing variants)
MIN_CONTRAST = 40  # of 255: less between background and darkest ink is a blank canvas
INK_LEVEL = 0.35  # of the contrast: pixels above it are ink for cropping and specks
# Specks. A connected part of the ink at least STROKE_PART of the biggest part's
# size is a stroke of the digit; one below SPECK_PART is a speck; in between, it
# is kept only within SPECK_DISTANCE (of the biggest part's longer side) of it,
# like a stroke the pen lifted from for a moment.
STROKE_PART = 0.1
SPECK_PART = 0.02
SPECK_DISTANCE = 0.15
MIN_DIGIT_SIDE = 0.03  # of the image's longer side (at least 3 px): smaller ink is a speck, not a digit
# Stroke width / longer side of the digit (`stroke_ratio`). MNIST's middle 80% lies
# in STROKE_BAND, its median is STROKE_TARGET (measured on MNIST test digits drawn
# by benchmarks/reading/drawing_variants "centered"). Strokes inside the band are left alone;
# strokes outside it are brought to the median. Measured on 1,000 test digits with a
# small CNN (98.6% on the raw digits): marker strokes 96.0% untouched -> 97.5%,
# fine-pen strokes 95.6% -> 97.4%; reshaping every digit instead would cost the
# ordinary ones 0.7 points (98.4% -> 97.7%), hence the band.
STROKE_BAND = (0.085, 0.175)
STROKE_TARGET = 0.12
WORK_SIDE = 80  # px: strokes are measured and reshaped at this size, then reduced to 20
RESAMPLE = Image.LANCZOS  # PIL widens the kernel when shrinking: antialiased, like MNIST's own scaling
# Converts a 4-neighbour edge count to a perimeter: strokes run in all directions,
# and their mean |cos| + |sin| is 4/pi.
_PERIMETER_PER_EDGE = np.pi / 4


def preprocess(value: Any, invert: bool = False) -> np.ndarray:
    """`value` (anything load_image accepts) as float32 [28, 28, 1] in [0, 1], white digit on black.

    Polarity is detected from the image's border; `invert=True` flips the
    detected polarity (the UI's override). Raises EmptyImageError for a blank
    canvas (or one holding only a speck) and ImageInputError for bad input.
    """
    image = load_image(value)
    ink = ink_map(image, invert=invert)
    digit = crop_digit(ink)
    digit = normalise_strokes(digit)
    return to_mnist(digit)[:, :, None]


def ink_map(image: Image.Image, invert: bool = False) -> np.ndarray:
    """Ink coverage float32 [H, W] in [0, 1] (1 = ink) of an L/LA/RGB/RGBA image.

    Dark ink on a light border, or light ink on a dark one; `invert` takes the other.
    Raises EmptyImageError when nothing stands out from the background.
    """
    gray = _gray_levels(image)
    if max(gray.size) > MAX_ANALYSIS_SIDE:
        # Box-averaging: the digit ends up 20 px tall anyway, and every later step costs time per pixel.
        gray = gray.reduce(-(-max(gray.size) // MAX_ANALYSIS_SIDE))
    gray = np.asarray(gray)

    border = np.concatenate([gray[0], gray[-1], gray[1:-1, 0], gray[1:-1, -1]])
    dark_ink = np.median(border) >= 128  # a light background means dark ink
    if invert:
        dark_ink = not dark_ink
    raw = 255 - gray if dark_ink else gray

    # The background level: almost every image shows more background than ink, so
    # a low percentile finds it even on grey paper or with ink touching the border.
    # A regular sample of ~16k pixels estimates it as well as all of them, faster.
    step = max(1, int((raw.size / 16384) ** 0.5))
    sample = raw[::step, ::step].ravel()
    background = int(np.searchsorted(np.cumsum(np.bincount(sample, minlength=256)), 0.01 * sample.size))
    peak = int(raw.max())
    if peak - background < MIN_CONTRAST:
        raise EmptyImageError(_blank_message(invert))
    ink = (raw.astype(np.float32) - background) * (1.0 / (peak - background))
    return np.clip(ink, 0.0, 1.0, out=ink)


def _gray_levels(image: Image.Image) -> Image.Image:
    """The image in gray levels (mode L). A transparent image is first composited over a
    backdrop that contrasts with its strokes: white under dark ink, black under light ink."""
    gray = image.convert("L")  # the strokes' own colour; alpha is ignored here
    if "A" not in image.getbands():
        return gray
    alpha = image.getchannel("A")
    # numpy's min/max on the alpha plane: 3x cheaper than PIL's getextrema (measured 16 vs 59 us
    # at 280x280), and the same array serves the sample below.
    alpha_levels = np.asarray(alpha)
    if alpha_levels.min() >= 250:
        return gray  # opaque: the image shows its own background
    if alpha_levels.max() == 0:
        raise EmptyImageError()
    # The strokes' mean gray, weighted by coverage, from a regular sample of ~20k pixels.
    step = max(1, int((image.width * image.height / 20000) ** 0.5))
    sample_gray, sample_alpha = np.asarray(gray)[::step, ::step], alpha_levels[::step, ::step]
    if not sample_alpha.any():
        sample_gray, sample_alpha = np.asarray(gray), alpha_levels
    weights = sample_alpha.astype(np.float32)
    ink_gray = float(np.vdot(sample_gray.astype(np.float32), weights) / weights.sum())
    backdrop = Image.new("L", image.size, 255 if ink_gray < 128 else 0)
    return Image.composite(gray, backdrop, alpha)


def _blank_message(invert: bool) -> str:
    if invert:
        return "Nothing to read with Invert on: turn Invert off, or draw a digit first."
    return "The canvas is blank: draw a digit first."


def crop_digit(ink: np.ndarray) -> np.ndarray:
    """The ink inside the digit's bounding box, stray specks removed (float32)."""
    mask = ink > INK_LEVEL
    labels, count = ndimage.label(mask, structure=np.ones((3, 3), dtype=bool))
    if count == 0:
        raise EmptyImageError()
    if count == 1:  # the usual case: one connected drawing
        rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
        top, bottom, left, right = rows[0], rows[-1] + 1, cols[0], cols[-1] + 1
        keep = [0]
    else:
        keep, (top, bottom, left, right) = _digit_parts(labels, count, mask)
    if max(bottom - top, right - left) < max(3, MIN_DIGIT_SIDE * max(ink.shape)):
        raise EmptyImageError("Only a speck was found: draw a digit first.")
    # One pixel more on each side keeps the strokes' antialiased edges.
    top, left = max(top - 1, 0), max(left - 1, 0)
    bottom, right = min(bottom + 1, ink.shape[0]), min(right + 1, ink.shape[1])
    crop = ink[top:bottom, left:right].copy()
    if len(keep) < count:
        kept_labels = np.zeros(count + 1, dtype=bool)
        kept_labels[np.array(keep) + 1] = True
        crop_labels = labels[top:bottom, left:right]
        crop[(crop_labels > 0) & ~kept_labels[crop_labels]] = 0.0
    return crop


def _digit_parts(labels: np.ndarray, count: int, mask: np.ndarray) -> tuple[list[int], tuple[int, int, int, int]]:
    """Indices (label - 1) of the connected parts that belong to the digit, and their joint box."""
    sizes = np.bincount(labels[mask], minlength=count + 1)[1:]
    boxes = ndimage.find_objects(labels)
    main = int(np.argmax(sizes))
    main_box = boxes[main]
    reach = SPECK_DISTANCE * max(_extent(main_box))
    keep = [main]
    for part in np.flatnonzero(sizes >= SPECK_PART * sizes[main]):
        if part != main and (sizes[part] >= STROKE_PART * sizes[main] or _gap(boxes[part], main_box) <= reach):
            keep.append(int(part))
    top = min(boxes[i][0].start for i in keep)
    bottom = max(boxes[i][0].stop for i in keep)
    left = min(boxes[i][1].start for i in keep)
    right = max(boxes[i][1].stop for i in keep)
    return keep, (top, bottom, left, right)


def _extent(box: tuple[slice, slice]) -> tuple[int, int]:
    return box[0].stop - box[0].start, box[1].stop - box[1].start


def _gap(box: tuple[slice, slice], other: tuple[slice, slice]) -> float:
    """Distance in pixels between two boxes (0 when they overlap)."""
    rows = max(box[0].start - other[0].stop, other[0].start - box[0].stop, 0)
    cols = max(box[1].start - other[1].stop, other[1].start - box[1].stop, 0)
    return float(np.hypot(rows, cols))


def stroke_ratio(digit: np.ndarray) -> float:
    """Mean stroke width over the digit's longer side: 2 x area / perimeter of its ink."""
    mask = digit > 0.5
    area = np.count_nonzero(mask)
    if area == 0:
        return 0.0
    edges = (np.count_nonzero(mask[1:] != mask[:-1]) + np.count_nonzero(mask[:, 1:] != mask[:, :-1])
             + np.count_nonzero(mask[0]) + np.count_nonzero(mask[-1])
             + np.count_nonzero(mask[:, 0]) + np.count_nonzero(mask[:, -1]))
    return 2.0 * area / (edges * _PERIMETER_PER_EDGE) / max(digit.shape)


def normalise_strokes(digit: np.ndarray) -> np.ndarray:
    """The digit at WORK_SIDE px; strokes far thicker or thinner than MNIST's brought to its median width."""
    ratio = stroke_ratio(digit)
    work = _resize(digit, WORK_SIDE / max(digit.shape))
    low, high = STROKE_BAND
    if low <= ratio <= high:
        return work
    # Widths in work pixels; each side of a stroke moves by half the difference.
    change = (STROKE_TARGET - ratio) * WORK_SIDE / 2.0
    room = int(np.ceil(max(change, 0.0))) + 1
    work = np.pad(work, room)
    if change > 0:
        # Thicken: everything within `change` of the ink becomes ink (a round pen).
        distance = ndimage.distance_transform_edt(work <= INK_LEVEL)
        grown = np.clip(change + 0.5 - distance, 0.0, 1.0)
        return np.maximum(work, grown.astype(np.float32))
    # Thin: keep only what lies deeper than `-change` inside the ink (antialiased edge).
    depth = ndimage.distance_transform_edt(work > 0.5)
    return np.clip(depth + change + 0.5, 0.0, 1.0).astype(np.float32)


def to_mnist(digit: np.ndarray) -> np.ndarray:
    """Crop to the ink, fit its longer side to 20 px, centre by mass in 28x28; float32 [28, 28] in [0, 1]."""
    rows = np.flatnonzero(digit.max(axis=1) > 0.05)
    cols = np.flatnonzero(digit.max(axis=0) > 0.05)
    if rows.size == 0:
        raise EmptyImageError()
    digit = digit[rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1]
    box = _resize(digit, MNIST_BOX / max(digit.shape))
    peak = box.max()
    if peak <= 0:
        raise EmptyImageError()
    box *= 1.0 / peak

    total = box.sum()
    centre_row = (box.sum(axis=1) @ np.arange(box.shape[0])) / total
    centre_col = (box.sum(axis=0) @ np.arange(box.shape[1])) / total
    top = int(round(MNIST_CENTRE[0] - centre_row))
    left = int(round(MNIST_CENTRE[1] - centre_col))
    out = np.zeros((MNIST_SIZE, MNIST_SIZE), dtype=np.float32)
    _paste(out, box, top, left)
    return out


def _resize(image: np.ndarray, scale: float) -> np.ndarray:
    """Resize a float image by `scale` (aspect kept, each side at least 1 px), antialiased."""
    height, width = image.shape
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    resized = Image.fromarray(np.ascontiguousarray(image, dtype=np.float32)).resize(size, RESAMPLE)
    return np.clip(np.asarray(resized), 0.0, 1.0)


def _paste(canvas: np.ndarray, patch: np.ndarray, top: int, left: int) -> None:
    """canvas[top:, left:] = patch, clipped at the canvas's edges."""
    rows = slice(max(top, 0), min(top + patch.shape[0], canvas.shape[0]))
    cols = slice(max(left, 0), min(left + patch.shape[1], canvas.shape[1]))
    canvas[rows, cols] = patch[rows.start - top:rows.stop - top, cols.start - left:cols.stop - left]
