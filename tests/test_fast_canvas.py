"""The training mix's fast renderer (training/fast_canvas.py, training/centre_lines.py): the same kind
of image as the long way (canvas + the app's preprocessing), deterministic, in batches."""
from __future__ import annotations

import numpy as np
import pytest

from training import centre_lines, fast_canvas, strokes


def long_way(line: np.ndarray, size: int, width: float) -> np.ndarray:
    """A skeleton drawn on the 280 px canvas with a round pen and read by inference.preprocess."""
    from inference.preprocess import preprocess
    from training.onnx_contract import to_pixels

    alpha = strokes.pen_alpha(line, size, width)
    canvas = strokes.place_on_canvas(alpha, np.random.default_rng(0), strokes.Pen(jitter=0), False)
    return to_pixels(preprocess(np.round(255.0 * (1.0 - canvas)).astype(np.uint8)))


def test_batched_shapes_and_skeletons_are_the_per_digit_ones(mnist):
    digits = mnist.x_train[:80]
    shapes = fast_canvas.mnist_shapes(digits)
    assert np.allclose(shapes, np.stack([strokes.mnist_shape(d) for d in digits]), atol=1e-5)
    # One shape whose redraw stays in pieces (tests/test_strokes.py): refused by both.
    ring = np.zeros((64, 64), np.float32)
    ring[:] = strokes.strokes_shape([[(np.cos(a), np.sin(a)) for a in np.linspace(0, 2 * np.pi, 60)]])
    ring[:, 48:] *= 0.22
    batch = np.concatenate([shapes, ring[None]])
    lines = strokes.skeletons(batch)
    for shape, line in zip(batch, lines):
        try:
            expected = strokes.skeleton(shape)
        except strokes.BrokenDrawing:
            expected = None
        assert (line is None) == (expected is None)
        assert line is None or np.array_equal(line, expected)
    assert lines[-1] is None and sum(line is None for line in lines) < 5


def test_the_emulation_draws_what_the_canvas_and_preprocessing_draw(mnist):
    # The same centre lines and pens, the long way and emulated: the same images to a few gray levels.
    rng = np.random.default_rng(4)
    lines, sizes, widths, expected = [], [], [], []
    for line in strokes.skeletons(fast_canvas.mnist_shapes(mnist.x_test[:64])):
        if line is None or len(lines) == 60:
            continue
        small = rng.random() < 0.2
        size = int(rng.integers(45, 91)) if small else int(rng.integers(110, 241))
        width = max(2.5, size * rng.uniform(0.05, 0.2))
        lines.append(fast_canvas.line_points(line))
        sizes.append(size)
        widths.append(width)
        expected.append(long_way(line, size, width))
    owner = np.repeat(np.arange(len(lines)), [len(line) for line in lines])
    fast = fast_canvas.emulate(np.concatenate(lines), owner, np.array(sizes, float), np.array(widths)) / 255.0
    slow = np.array(expected) / 255.0
    assert fast.shape == slow.shape == (60, 28, 28)
    assert np.abs(fast - slow).mean() < 0.025  # measured 0.018 (of 1) on 400 digits
    assert fast.mean() == pytest.approx(slow.mean(), rel=0.03)  # as much ink
    assert (fast > 0.5).mean() == pytest.approx((slow > 0.5).mean(), rel=0.05)  # as wide strokes
    gray = lambda x: ((x > 0.05) & (x < 0.95)).sum() / (x > 0.05).sum()  # noqa: E731 - soft edges alike
    assert gray(fast) == pytest.approx(gray(slow), abs=0.05)

    def widths_of(images):
        return np.array([np.ptp(np.flatnonzero(image.max(axis=0) > 0.05)) for image in images])

    assert np.abs(widths_of(fast) - widths_of(slow)).mean() < 0.5  # same proportions, to half a pixel


def test_a_task_renders_mnist_layout_digits_deterministically_per_seed(mnist):
    digits = list(mnist.x_train[:40])
    first, ok = centre_lines.render_task(strokes.Task("mnist", digits, (5, 1)))
    again, _ = centre_lines.render_task(strokes.Task("mnist", digits, (5, 1)))
    other, _ = centre_lines.render_task(strokes.Task("mnist", digits, (5, 2)))
    assert first.shape == (40, 28, 28) and first.dtype == np.uint8 and ok.sum() >= 39
    assert np.array_equal(first, again) and not np.array_equal(first, other)
    drawn = first[ok].astype(np.float64)
    assert (drawn.reshape(len(drawn), -1).max(axis=1) == 255).all()  # normalised to full ink
    # MNIST's layout: the ink's longer side 20 px, centred by mass, an empty frame around it.
    assert drawn[:, :2].max() == 0 and drawn[:, -2:].max() == 0
    rows = np.arange(28)
    centre = (drawn.sum(axis=2) @ rows) / drawn.sum(axis=(1, 2))
    assert np.abs(centre - 14).max() <= 0.75
    for image in drawn:
        ink_rows, ink_cols = np.flatnonzero(image.max(axis=1) > 12), np.flatnonzero(image.max(axis=0) > 12)
        assert max(np.ptp(ink_rows), np.ptp(ink_cols)) in (18, 19)


@pytest.mark.parametrize("kind, items", [("font", [("futural", "A"), ("cursive", "7")] * 5), ("scribble", [None] * 10),
                                         ("doodle", [None] * 10), ("open_four", [None] * 10), ("line", [None] * 10)])
def test_generated_and_font_drawings_render(kind, items):
    images, ok = centre_lines.render_task(strokes.Task(kind, items, (1, 2)))
    assert ok.all() and images.shape == (10, 28, 28)
    assert (images.reshape(10, -1).max(axis=1) == 255).all() and (images > 0).sum(axis=(1, 2)).min() > 20


def test_polylines_are_sampled_densely_and_never_bridged():
    points = fast_canvas.work_polyline_points([[(0, 0), (10, 0)], [(30, 20), (30, 40)]])
    first, second = points[points[:, 0] < 10], points[points[:, 0] >= 10]
    assert len(first) + len(second) == len(points)
    assert np.diff(first[:, 1]).max() <= fast_canvas.POINT_SPACING + 1e-6
    assert np.diff(second[:, 0]).max() <= fast_canvas.POINT_SPACING + 1e-6
    # Nothing between the strokes: every point lies on one of the two lines.
    assert ((points[:, 0] == 0) | (points[:, 1] == 30)).all()
    assert first[:, 1].min() == 0 and first[:, 1].max() == 10 and second[:, 0].max() == 40


def test_the_hands_warp_moves_points_like_the_raster_warp():
    # A point at the work frame's centre stays; an affine part with no distortion is the identity.
    points = np.array([[(strokes.WORK_SIDE - 1) / 2.0] * 2, [10.0, 50.0]], np.float32)
    still = fast_canvas.warp_points(points, np.zeros(2, int), 1, np.random.default_rng(0), strokes.NO_DISTORTION)
    assert np.array_equal(still, points)
    moved = fast_canvas.warp_points(points, np.zeros(2, int), 1, np.random.default_rng(0),
                                    strokes.Distortion(elastic=0.0))
    assert np.allclose(moved[0], points[0], atol=1e-9) and not np.allclose(moved[1], points[1])
