"""Any drawing -> the model's input, made the way MNIST itself was made.

MNIST digits are white on black, scaled so the longer side of the ink is 20 px
(aspect kept, antialiased) and placed in 28x28 with their centre of mass at the
centre. A canvas drawing differs in every respect: dark ink on white (or a
transparent layer), anywhere, any size, with a marker or a fine pen. So:

    load -> flatten transparency -> find the ink (polarity) -> crop to the digit
    (specks ignored) -> bring the stroke width to MNIST's -> 20 px box -> centre of mass

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
MAX_ANALYSIS_SIDE = 400  # larger images are reduced first: a digit needs no more detail
MIN_CONTRAST = 40  # of 255: less between background and darkest ink is a blank canvas
INK_LEVEL = 0.35  # of the contrast: pixels above it are ink for cropping and specks
# Specks: a part smaller than SPECK_PART of the biggest one is dropped when it lies
# more than SPECK_DISTANCE (of the biggest part's longer side) from it; parts at
# least that big are strokes of the digit, and crumbs below NOISE_PART always go.
SPECK_PART = 0.25
SPECK_DISTANCE = 0.25
NOISE_PART = 0.01
MIN_DIGIT_SIDE = 0.03  # of the image's longer side (at least 3 px): smaller ink is a speck, not a digit
# Stroke width / longer side of the digit. MNIST's middle 80% lies in about
# 0.08-0.18 (median 0.12; benchmarks/drawing_variants.mnist_stroke_ratio); strokes
# outside STROKE_BAND are thickened or thinned to its nearest edge.
STROKE_BAND = (0.085, 0.175)
STROKE_TARGET = 0.12
RESAMPLE = Image.LANCZOS
WORK_SIDE = 80  # px: strokes are measured and reshaped at this size, then reduced to 20
# Converts a 4-neighbour edge count to a perimeter: strokes run in all directions,
# and their mean |cos| + |sin| is 4/pi.
_PERIMETER_PER_EDGE = np.pi / 4
_LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)  # ITU-R 601, as PIL's convert("L")


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
    """Ink coverage float32 [H, W] in [0, 1] (1 = ink) of an L/LA/RGB/RGBA image."""
    if max(image.size) > MAX_ANALYSIS_SIDE:
        factor = -(-max(image.size) // MAX_ANALYSIS_SIDE)
        # Premultiplied, so transparent pixels' arbitrary colour cannot bleed into the strokes' edges.
        has_alpha = "A" in image.getbands()
        image = image.convert("RGBa" if has_alpha else image.mode).reduce(factor)
        image = image.convert("RGBA") if has_alpha else image
    if "A" in image.getbands():
        image = _flatten_transparency(image)
    gray = np.asarray(image.convert("L"))

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


def _flatten_transparency(image: Image.Image) -> Image.Image:
    """Composite over a backdrop that contrasts with the strokes: white under dark ink, black under light."""
    low, high = image.getchannel("A").getextrema()
    if low >= 250:
        return image  # opaque: the image shows its own background
    if high == 0:
        raise EmptyImageError()
    image = image.convert("RGBA")
    # The strokes' mean colour, weighted by coverage (a regular sample is plenty).
    pixels = np.asarray(image)
    sample = pixels[::2, ::2] if pixels[::2, ::2, 3].any() else pixels
    alpha = sample[:, :, 3].astype(np.float32)
    ink_gray = float((sample[:, :, :3] @ _LUMA * alpha).sum() / alpha.sum())
    backdrop = (255, 255, 255, 255) if ink_gray < 128 else (0, 0, 0, 255)
    return Image.alpha_composite(Image.new("RGBA", image.size, backdrop), image)


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
    for part in np.flatnonzero(sizes >= NOISE_PART * sizes[main]):
        if part != main and (sizes[part] >= SPECK_PART * sizes[main] or _gap(boxes[part], main_box) <= reach):
            keep.append(int(part))
    top = min(boxes[i][0].start for i in keep)
    bottom = max(boxes[i][0].stop for i in keep)
    left = min(boxes[i][1].start for i in keep)
    right = max(boxes[i][1].stop for i in keep)
    return keep, (top, bottom, left, right)


def _extent(box: tuple[slice, slice]) -> tuple[int, int]:
    return box[0].stop - box[0].start, box[1].stop - box[1].start


def _gap(box: tuple[slice, slice], other: tuple[slice, slice]) -> int:
    """Pixels between two boxes (0 when they overlap), the larger of the vertical and horizontal gaps."""
    rows = max(box[0].start - other[0].stop, other[0].start - box[0].stop, 0)
    cols = max(box[1].start - other[1].stop, other[1].start - box[1].stop, 0)
    return max(rows, cols)


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
    """The digit at WORK_SIDE px, its strokes thickened or thinned into MNIST's range (STROKE_BAND)."""
    ratio = stroke_ratio(digit)
    work = _resize(digit, WORK_SIDE / max(digit.shape))
    low, high = STROKE_BAND
    if low <= ratio <= high:
        return work
    # Widths in work pixels; each side of a stroke moves by half the difference.
    target = STROKE_TARGET if STROKE_TARGET else np.clip(ratio, low, high)
    change = (target - ratio) * WORK_SIDE / 2.0
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
    # PIL widens its filter when shrinking, so LANCZOS/BILINEAR antialias; BOX is area averaging.
    resized = Image.fromarray(np.ascontiguousarray(image, dtype=np.float32)).resize(size, RESAMPLE)
    return np.clip(np.asarray(resized), 0.0, 1.0)


def _paste(canvas: np.ndarray, patch: np.ndarray, top: int, left: int) -> None:
    """canvas[top:, left:] = patch, clipped at the canvas's edges."""
    rows = slice(max(top, 0), min(top + patch.shape[0], canvas.shape[0]))
    cols = slice(max(left, 0), min(left + patch.shape[1], canvas.shape[1]))
    canvas[rows, cols] = patch[rows.start - top:rows.stop - top, cols.start - left:cols.stop - left]
