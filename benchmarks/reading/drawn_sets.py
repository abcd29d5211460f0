"""Evaluation sets of canvas drawings, kept apart from everything the trainers learn from.

Rendered by training/strokes.py the way the app's canvas delivers a drawing (pen
strokes of random width on a white 280x280 canvas, then inference.preprocess), but
from sources training never sees:

digits (label 0-9)
    mnist_test_redrawn  MNIST TEST digits, skeletonised and redrawn (training redraws train digits)
    conventions_test    flag-and-foot 1s, crossed 7s, slashed 0s made from MNIST TEST digits, and
                        generated open 4s (the same generator as training, other seeds)
    conventions_written the issue-21 conventions (cursive one-stroke 4s, long-flag 1s, hooked 7s,
                        g-like 9s, round 6s, open/closed 4s and 9s, European 1s and 7s, slashed 0s,
                        one-stroke digits) written by a different generator than training's
                        (benchmarks/reading/written_conventions.py), with the issue's three pens
    hershey_unseen      digits of the Hershey fonts reserved for evaluation (EVAL_FONTS)
    sklearn_digits      scikit-learn's load_digits: 1,797 8x8 digits by 43 writers, upscaled, redrawn
non-digits (label -1)
    letters_symbols     letters and symbols of EVAL_FONTS (digit-like letters such as O, l, S, Z excluded)
    handwritten_letters letters of our own alphabet written by a pen with inertia, like a hand
                        (benchmarks/reading/handwritten_letters.py; no training generator), the issue's three pens
    scribbles           loops, zigzags and tangles: a different generator from training's random walks
    lines               near-horizontal lines (other seeds than training)
    two_digits          two MNIST TEST digits side by side

    sets = yield from drawn_sets(mnist, size=FULL_SIZE)   # or: load_drawn_sets(mnist)
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from training import strokes
from training.canvas_data import EVAL_FONTS, LETTERS, NOT_A_DIGIT, SYMBOLS, render_cached

DIGIT_SETS = ("mnist_test_redrawn", "conventions_test", "conventions_written", "hershey_unseen", "sklearn_digits")
OTHER_SETS = ("letters_symbols", "handwritten_letters", "scribbles", "lines", "two_digits")
SEED = 20_261_010  # evaluation seeds: never used by the trainers (they use (options.seed, 1 or 2, ...))


@dataclass(frozen=True)
class SetSize:
    mnist_test: int = 5000  # MNIST test digits redrawn
    per_convention: int = 500  # of each convention
    hershey_renders: int = 20  # renders of each (font, digit)
    sklearn: int | None = None  # None: all 1,797
    letters_renders: int = 3  # renders of each (font, letter or symbol)
    scribbles: int = 1000
    lines: int = 300
    two_digits: int = 1000
    written_per_convention: int = 150  # of each of benchmarks/reading/written_conventions.CONVENTIONS (21)
    handwritten_per_letter: int = 30  # of each letter of benchmarks/reading/handwritten_letters.ALPHABET (37)


FULL_SIZE = SetSize()
QUICK_SIZE = SetSize(mnist_test=300, per_convention=40, hershey_renders=2, sklearn=300, letters_renders=1,
                     scribbles=100, lines=40, two_digits=100, written_per_convention=9, handwritten_per_letter=3)


@dataclass(frozen=True)
class DrawnSet:
    name: str
    x: np.ndarray  # uint8 [N, 28, 28], white on black (the model input x 255)
    y: np.ndarray  # int64 [N]: 0-9, or NOT_A_DIGIT
    description: str

    @property
    def is_digits(self) -> bool:
        return self.name in DIGIT_SETS


DESCRIPTIONS = {
    "mnist_test_redrawn": "MNIST test digits redrawn as pen strokes",
    "conventions_test": "flagged 1s, crossed 7s, slashed 0s (MNIST test) and open 4s",
    "conventions_written": "writers' conventions written by the evaluation's own generator",
    "hershey_unseen": f"digits of {len(EVAL_FONTS)} stroke fonts not used in training",
    "sklearn_digits": "scikit-learn load_digits (43 writers), upscaled and redrawn",
    "letters_symbols": f"letters and symbols of {len(EVAL_FONTS)} stroke fonts",
    "handwritten_letters": "handwritten-looking letters (our own alphabet, a pen with inertia)",
    "scribbles": "loops, zigzags and tangles",
    "lines": "near-horizontal lines",
    "two_digits": "two MNIST test digits side by side",
}


def _groups(mnist, size: SetSize) -> list[tuple[str, strokes.Task]]:
    rng = np.random.default_rng(SEED)
    x_test, y_test = mnist.x_test, np.asarray(mnist.y_test, np.int64)
    groups: list[tuple[str, strokes.Task]] = []

    def add(group: str, kind: str, items: list, salt: int):
        groups.extend((group, task) for task in strokes.chunked(kind, items, (SEED, salt)))

    picked = rng.choice(len(x_test), min(size.mnist_test, len(x_test)), replace=False)
    for digit in range(10):
        add(f"mnist_test_redrawn:{digit}", "mnist", list(x_test[picked[y_test[picked] == digit]]), digit)
    for salt, (kind, digit) in enumerate((("one_flag", 1), ("seven_bar", 7), ("zero_slash", 0)), start=100):
        pool = np.flatnonzero(y_test == digit)
        add(f"conventions_test:{digit}", kind, list(x_test[rng.choice(pool, size.per_convention)]), salt)
    add("conventions_test:4", "open_four", [None] * size.per_convention, 110)
    for digit in range(10):
        items = [(font, str(digit)) for font in EVAL_FONTS for _ in range(size.hershey_renders)]
        add(f"hershey_unseen:{digit}", "font", items, 200 + digit)
    from sklearn.datasets import load_digits

    digits = load_digits()
    images, labels = digits.images / 16.0, digits.target
    if size.sklearn is not None:
        images, labels = images[: size.sklearn], labels[: size.sklearn]
    for digit in range(10):
        add(f"sklearn_digits:{digit}", "image", list(images[labels == digit]), 300 + digit)
    chars = [(font, c) for font in EVAL_FONTS for c in LETTERS + SYMBOLS for _ in range(size.letters_renders)]
    add(f"letters_symbols:{NOT_A_DIGIT}", "font", chars, 400)
    add(f"scribbles:{NOT_A_DIGIT}", "loops", [None] * size.scribbles, 401)
    add(f"lines:{NOT_A_DIGIT}", "line", [None] * size.lines, 402)
    pairs = [x_test[rng.choice(len(x_test), 2)] for _ in range(size.two_digits)]
    add(f"two_digits:{NOT_A_DIGIT}", "pair", pairs, 403)
    # Written by the evaluation's own generator (benchmarks/browser/motor_pen.py), each drawing with one of
    # the pens in turn; the polylines are written here, the workers draw them.
    from benchmarks.reading import handwritten_letters, written_conventions

    written_rng = np.random.default_rng([SEED, 500])
    by_digit: dict[int, list] = {}
    for name, (digit, _) in written_conventions.CONVENTIONS.items():
        by_digit.setdefault(digit, []).extend(
            written_conventions.written(name, size.written_per_convention, written_rng))
    for digit, drawings in sorted(by_digit.items()):
        add_written(groups, f"conventions_written:{digit}", drawings, 500 + digit)
    letters = [drawing for _, drawing in handwritten_letters.letters(size.handwritten_per_letter, written_rng)]
    add_written(groups, f"handwritten_letters:{NOT_A_DIGIT}", letters, 520)
    return groups


def add_written(groups: list, group: str, drawings: list, salt: int) -> None:
    """Polylines drawn the long way, each third with one of the evaluation pens."""
    from benchmarks.reading.written_conventions import EVAL_DISTORTION, EVAL_PENS

    for index, pen in enumerate(EVAL_PENS):
        for task in strokes.chunked("strokes", drawings[index::len(EVAL_PENS)], (SEED, salt, index)):
            groups.append((group, strokes.Task(task.kind, task.items, task.seed, EVAL_DISTORTION, pen)))


def drawn_sets(mnist, size: SetSize = FULL_SIZE):
    """Every evaluation set (a generator yielding (done, total) while drawing; returns {name: DrawnSet})."""
    description = {"sets": "drawn_sets v2", "mnist": getattr(mnist, "sha256", None), "size": size.__dict__,
                   "seed": SEED}
    arrays = yield from render_cached(description, _groups(mnist, size))
    parts: dict[str, tuple[list, list]] = {}
    for group in sorted(arrays, key=lambda g: (g.split(":")[0], int(g.split(":")[1]))):
        name, label = group.split(":")
        xs, ys = parts.setdefault(name, ([], []))
        xs.append(arrays[group])
        ys.append(np.full(len(arrays[group]), int(label), np.int64))
    return {name: DrawnSet(name, np.concatenate(parts[name][0]), np.concatenate(parts[name][1]), DESCRIPTIONS[name])
            for name in (*DIGIT_SETS, *OTHER_SETS) if name in parts}


def load_drawn_sets(mnist, size: SetSize = FULL_SIZE) -> dict[str, DrawnSet]:
    """drawn_sets() run to the end."""
    return strokes.run_to_end(drawn_sets(mnist, size))

