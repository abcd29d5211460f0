"""benchmarks/reading/one_writer.py: one hand's digits, as the page would send them."""
from __future__ import annotations

import io

import numpy as np
from PIL import Image

from benchmarks.reading.drawings import _writer
from benchmarks.reading.one_writer import HAND, writer_digit
from inference.preprocess import preprocess


def test_each_drawing_is_a_canvas_png_of_the_same_hand_with_its_own_jitter():
    first, again, other = writer_digit(7, 3), writer_digit(7, 3), writer_digit(7, 4)
    assert first == again and first != other  # seeded per drawing
    image = np.asarray(Image.open(io.BytesIO(first)).convert("L"))
    assert image.shape == (280, 280)
    ink = image < 128
    rows = np.nonzero(ink.any(axis=1))[0]
    assert 150 <= rows.max() - rows.min() <= 240  # ~190 px tall, as the pen-tablet rendering
    assert ink[0].sum() == ink[-1].sum() == 0  # inside the canvas
    assert HAND.slant > 0.3  # leans further than the training mix (0.18) and the evaluation's writers (0.3)


def test_every_digit_reaches_the_model_input_as_a_drawing():
    for digit in range(10):
        pixels = preprocess(writer_digit(digit, 0))
        assert pixels.shape == (28, 28, 1) and pixels.max() > 0.5


def test_the_personal_benchmark_names_both_writers():
    from benchmarks.reading.segment_digits import segment_digit

    assert _writer("italic") is writer_digit and _writer("segments") is segment_digit
