"""benchmarks/reading/per_digit.py: shifts that bring in background, and reading through the ONNX files."""
from __future__ import annotations

import numpy as np

from benchmarks.reading.per_digit import NINE, read, shifted
from training.artifacts import DEFAULT_EXPORTS_DIR
from training.onnx_contract import run_onnx, to_model_input


def test_a_shift_moves_the_ink_and_brings_in_background():
    image = np.zeros((1, 28, 28, 1), np.float32)
    image[0, 0, 0, 0] = image[0, 10, 12, 0] = 1.0
    moved = shifted(image, 1, -1)
    assert moved[0, 11, 11, 0] == 1.0 and moved.sum() == 1.0  # the corner pixel left the frame
    assert np.array_equal(shifted(image, 0, 0), image)


def test_reading_without_shifts_is_the_served_argmax_and_shifts_average_nine_positions(mnist):
    model = (DEFAULT_EXPORTS_DIR / "model3.onnx").read_bytes()
    images = to_model_input(mnist.x_test[:200])
    assert np.array_equal(read(model, images), run_onnx(model, images).argmax(axis=1))
    averaged = sum(np.log(np.clip(run_onnx(model, shifted(images, dy, dx)), 1e-12, 1)) for dy, dx in NINE)
    assert np.array_equal(read(model, images, shifts=8), averaged.argmax(axis=1))
