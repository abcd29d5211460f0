"""How exported ONNX models read one set, digit by digit, optionally averaged over 1-pixel shifts.

    python -m benchmarks.reading.per_digit exports/model3.onnx OTHER/model3.onnx            # MNIST test
    python -m benchmarks.reading.per_digit exports/model3.onnx --set conventions_written    # a drawn set
    python -m benchmarks.reading.per_digit exports/model3.onnx --shifts 4                   # test-time shifts

For comparing a retrained model with the shipped one where the figure that moved is one digit's
(the README's Model 3 section: the 1s of the written conventions), and for test-time augmentation:
`--shifts 4` averages the log-probabilities over the image and its four 1-pixel shifts, `--shifts 8`
over all nine positions. Reads MNIST from MNIST_DIR; the drawn sets come from their cache
(benchmarks/reading/drawn_sets.py). Prints one line per model; nothing is written.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

FOUR = ((0, 0), (1, 0), (-1, 0), (0, 1), (0, -1))
NINE = FOUR + ((1, 1), (-1, -1), (1, -1), (-1, 1))


def shifted(images: np.ndarray, dy: int, dx: int) -> np.ndarray:
    """images [N, 28, 28, 1] moved by (dy, dx) pixels, the background (0) coming in."""
    out = np.zeros_like(images)
    height, width = images.shape[1:3]
    out[:, max(dy, 0):height + min(dy, 0), max(dx, 0):width + min(dx, 0)] = \
        images[:, max(-dy, 0):height + min(-dy, 0), max(-dx, 0):width + min(-dx, 0)]
    return out


def read(model_bytes: bytes, images: np.ndarray, shifts: int = 0) -> np.ndarray:
    """The digit read for each image, averaging log-probabilities over the shifts asked for."""
    from training.onnx_contract import run_onnx

    offsets = {0: ((0, 0),), 4: FOUR, 8: NINE}[shifts]
    scores = sum(np.log(np.clip(run_onnx(model_bytes, shifted(images, dy, dx)), 1e-12, 1.0)) for dy, dx in offsets)
    return scores.argmax(axis=1)


def load_set(name: str) -> tuple[np.ndarray, np.ndarray]:
    from training.mnist import load_mnist
    from training.onnx_contract import to_model_input

    mnist = load_mnist()
    if name == "mnist_test":
        return to_model_input(mnist.x_test), mnist.y_test
    from benchmarks.reading.drawn_sets import load_drawn_sets

    drawn = load_drawn_sets(mnist)[name]
    return to_model_input(drawn.x), drawn.y


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("models", nargs="+", help="ONNX files")
    parser.add_argument("--set", default="mnist_test", help="mnist_test or a drawn set's name")
    parser.add_argument("--shifts", type=int, choices=(0, 4, 8), default=0)
    args = parser.parse_args(argv)
    images, labels = load_set(args.set)
    for path in args.models:
        digits = read(Path(path).read_bytes(), images, args.shifts)
        per_digit = "  ".join(f"{d}: {np.mean(digits[labels == d] == d):.1%}" for d in range(10) if np.any(labels == d))
        print(f"{path} on {args.set} ({len(labels):,}, shifts {args.shifts}): {np.mean(digits == labels):.2%}  |  {per_digit}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
