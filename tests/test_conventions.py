"""Writers' conventions (issue 21): the training mix's variants (training/conventions.py, letters.py),
and the evaluation's own generator (benchmarks/browser/motor_pen.py and the sets written with it), which the
training mix must never call."""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from training import centre_lines, conventions, letters, strokes

ROOT = Path(__file__).resolve().parent.parent
ISSUE_LETTERS = "jDJLCayUPYcdhAQHfp"  # the letters the served verdicts accepted most often (issue 21)


def one_stroke(drawing) -> np.ndarray:
    assert len(drawing) == 1, "written in one stroke"
    return np.asarray(drawing[0])


def turns_of(values: np.ndarray) -> int:
    """How often a coordinate changes direction along a path (small wobbles ignored)."""
    steps = np.diff(values)
    signs = np.sign(steps[np.abs(steps) > 1e-3])
    return int(np.count_nonzero(np.diff(signs) != 0))


def test_the_cursive_four_goes_down_up_and_down_again_in_one_stroke():
    rng = np.random.default_rng(0)
    for _ in range(30):
        path = one_stroke(conventions.four_cursive(rng))
        y = path[:, 1]
        top_right = len(y) // 4 + int(np.argmin(y[len(y) // 4:]))  # where the rise turns into the stem
        lowest_of_u = int(np.argmax(y[:top_right]))
        assert y[top_right] < y[lowest_of_u] - 0.25  # up from the bottom of the curve...
        assert path[top_right, 0] > path[0, 0] + 0.3  # ...on the right of where the pen started
        assert y[-1] > y[lowest_of_u]  # then down past it: the stem
        assert y[0] < y[lowest_of_u] - 0.3  # and the top is open: the pen started high on the left


def test_long_flag_ones_and_hooked_sevens_and_curled_nines_have_their_strokes():
    rng = np.random.default_rng(1)
    for _ in range(30):
        one = conventions.one_long_flag(rng)
        stem_and_flag = np.concatenate([np.asarray(s) for s in one[:2 if len(one[0]) == 2 else 1]])
        height = np.ptp(stem_and_flag[:, 1])
        assert np.ptp(stem_and_flag[:, 0]) >= 0.25 * height  # a long flag (a bare stem is ~0.1 wide)

        seven = np.asarray(conventions.seven_hook(rng)[0])
        assert seven[0, 1] > seven[1, 1]  # the bar starts with a hook rising into it
        top = int(np.argmax(seven[:, 0]))  # the bar's right end
        assert seven[-1, 0] < seven[top, 0] - 0.3  # the stem ends far left of where it began

        nine = one_stroke(conventions.nine_curl(rng))
        stem_x = nine[nine[:, 1] > 0.5, 0].max()  # the stem, below the loop
        assert nine[-1, 0] < stem_x - 0.3 and nine[-1, 1] < nine[:, 1].max() - 0.05  # it curls up to the left


@pytest.mark.parametrize("digit", range(10))
def test_cursive_digits_are_one_stroke(digit):
    rng = np.random.default_rng(digit)
    for _ in range(5):
        drawing = conventions.cursive(rng, digit)
        assert len(drawing) == 1 and len(drawing[0]) >= 3


def test_every_convention_renders_as_a_digit_drawing(mnist):
    for kind, (digits, _) in conventions.GENERATED.items():
        items = [digits[i % len(digits)] for i in range(10)]
        images, ok = centre_lines.render_task(strokes.Task(kind, items, (2, 3)))
        assert ok.all() and (images.reshape(10, -1).max(axis=1) == 255).all(), kind
    for kind, (digit, _) in conventions.MNIST_EDITS.items():
        digits = list(mnist.x_train[mnist.y_train == digit][:10])
        shapes = np.stack([strokes.mnist_shape(d) for d in digits])
        for shape in shapes:  # the added strokes start on the digit's ink and stay in the frame
            lines = conventions.MNIST_EDITS[kind][1](shape, np.random.default_rng(0))
            points = np.concatenate([np.asarray(line) for line in lines])
            assert (points >= 0).all() and (points < strokes.WORK_SIDE).all(), kind
            x, y = np.rint(points[0]).astype(int)
            assert (shape[max(y - 3, 0):y + 4, max(x - 3, 0):x + 4] > 0.5).any(), kind
        images, ok = centre_lines.render_task(strokes.Task(kind, digits, (2, 4)))
        plain, _ = centre_lines.render_task(strokes.Task("mnist", digits, (2, 4)))
        assert ok.sum() >= 9 and images[ok].mean() > 0, kind


def test_the_training_letters_include_the_ones_real_hands_get_accepted_and_write_them_unevenly():
    from training.canvas_data import DIGIT_LIKE_LETTERS

    hand = letters.hand_letters()
    assert set("DJj") <= set(hand) and "Q" not in hand
    assert not set(hand) & (set(DIGIT_LIKE_LETTERS) - set("DJj"))
    from training import fast_canvas

    items = [("futural", "L"), ("scripts", "D")] * 3
    neat = fast_canvas.drawings_points([strokes.hershey_strokes(*item) for item in items])
    written = letters.handwritten(items, np.random.default_rng(0))
    again = letters.handwritten(items, np.random.default_rng(0))
    assert [len(w) for w in written] == [len(n) for n in neat]  # the same points, moved
    assert all(np.array_equal(a, b) for a, b in zip(written, again))  # by the seed alone
    moved = [np.abs(w - n).max() for w, n in zip(written, neat)]
    assert min(moved) > 0.5 and max(moved) < 12  # a wobble and a lean of a few work px, not a new shape
    # The L's upright stroke is no longer straight: its columns wobble along it.
    l_stroke = written[0][neat[0][:, 1] == neat[0][:, 1].min()]
    assert np.ptp(l_stroke[:, 1]) > 0.3


def test_the_training_mix_holds_every_convention_and_never_calls_the_evaluation_generators(mnist, monkeypatch):
    import benchmarks.reading.handwritten_letters
    import benchmarks.browser.motor_pen
    import benchmarks.reading.written_conventions
    from training.canvas_data import NOT_A_DIGIT, assemble_training_data
    from training.options import TrainOptions

    def forbidden(*args, **kwargs):
        raise AssertionError("the training mix called an evaluation generator")

    for module, name in ((benchmarks.browser.motor_pen, "write"), (benchmarks.reading.written_conventions, "written"),
                         (benchmarks.reading.handwritten_letters, "letters")):
        monkeypatch.setattr(module, name, forbidden)
    monkeypatch.setenv("CANVAS_DATA_CACHE", "0")
    data = strokes.run_to_end(assemble_training_data(mnist, TrainOptions(limit=1000, seed=5)))
    counts = data.summary["counts"]["train"]
    assert set(conventions.GENERATED) | set(conventions.MNIST_EDITS) <= set(counts)
    assert counts["not_a_digit:letter_hand"] > 0
    # Generated conventions carry their digits' labels: every cursive digit is in the mix.
    assert set(range(10)) <= set(np.unique(data.y_train)) and NOT_A_DIGIT in data.y_train
    # And no training module so much as imports the evaluation's generators.
    for path in (ROOT / "training").glob("*.py"):
        source = path.read_text()
        for module in ("motor_pen", "written_conventions", "handwritten_letters"):
            mentions = re.sub(r"benchmarks/(\w+/)?" + module, "", source)  # a comment naming the file is fine
            assert module not in mentions, (path.name, module)


def test_the_evaluation_writes_the_same_conventions_with_its_own_generator_and_pens():
    from benchmarks.reading import handwritten_letters, written_conventions

    rng = np.random.default_rng(0)
    digits = {digit for digit, _ in written_conventions.CONVENTIONS.values()}
    assert digits == set(range(10))
    for name in ("four_cursive", "one_long_flag", "seven_hook", "nine_curl", "seven_crossed", "zero_slashed"):
        assert name in written_conventions.CONVENTIONS
    drawings = written_conventions.written("four_cursive", 6, rng)
    assert all(len(drawing) == 1 and len(drawing[0]) > 20 for drawing in drawings)  # pen paths, not via-points
    assert not np.allclose(drawings[0][0][:5], drawings[1][0][:5])  # every writer differs
    # Drawn the long way with the issue's pens: a 14 px pen ~190 px tall, an 8 px pen ~70 px, a 26 px pen ~240 px.
    sizes = [pen.small_size if pen.small_share == 1.0 else pen.size for pen in written_conventions.EVAL_PENS]
    assert [round(sum(size) / 2) for size in sizes] == [190, 70, 240]
    images, ok = strokes.render_task(strokes.Task("strokes", drawings, (1, 1), written_conventions.EVAL_DISTORTION,
                                                  written_conventions.EVAL_PENS[1]))
    assert ok.all() and (images.reshape(6, -1).max(axis=1) == 255).all()
    # The letters: every letter the issue found accepted, none of the digit-like ones.
    written_letters = handwritten_letters.letters(1, rng)
    names = {letter for letter, _ in written_letters}
    assert set(ISSUE_LETTERS) <= names and not names & set(handwritten_letters.DIGIT_LIKE)
