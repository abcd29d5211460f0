"""The canvas renderers (training/strokes.py) and the data they make: deterministic and canvas-like."""
from __future__ import annotations

import numpy as np
import pytest

from training import strokes


def a_digit(mnist, label: int) -> np.ndarray:
    return mnist.x_train[int(np.flatnonzero(mnist.y_train == label)[0])]


def test_a_canvas_is_black_antialiased_pen_on_white_280px(mnist):
    canvas = strokes.draw_canvas(strokes.mnist_shape(a_digit(mnist, 3)), np.random.default_rng(0))
    assert canvas.shape == (280, 280) and canvas.dtype == np.uint8
    border = np.concatenate([canvas[0], canvas[-1], canvas[:, 0], canvas[:, -1]])
    assert (border == 255).all()  # white canvas
    assert canvas.min() == 0  # solid black ink
    edge = (canvas > 0) & (canvas < 255)
    assert 0 < edge.sum() < (canvas < 255).sum()  # an antialiased rim, not a blur


def test_the_pen_has_the_width_asked_for():
    # A horizontal line drawn 200 px long with a 12 px pen: ~12 px of ink across it, everywhere along it.
    shape = strokes.strokes_shape([[(0.0, 0.0), (1.0, 0.0)]])
    alpha = strokes.pen_alpha(strokes.skeleton(shape), 200, 12.0)
    middle = alpha[:, alpha.shape[1] // 4: 3 * alpha.shape[1] // 4]
    widths = middle.sum(axis=0)
    assert np.allclose(widths, 12.0, atol=1.0)
    assert alpha.shape[1] == pytest.approx(200 + 12, abs=4)  # the centre line, plus a round cap at each end


def test_rendering_is_deterministic_per_seed_and_varies_between_seeds(mnist):
    digits = list(mnist.x_train[:6])
    first, ok_first = strokes.render_task(strokes.Task("mnist", digits, (1, 2)))
    again, _ = strokes.render_task(strokes.Task("mnist", digits, (1, 2)))
    other, _ = strokes.render_task(strokes.Task("mnist", digits, (1, 3)))
    assert ok_first.all()
    assert np.array_equal(first, again)
    assert not np.array_equal(first, other)


def test_canvas_input_is_the_apps_preprocessing_of_the_canvas(mnist):
    from inference.preprocess import preprocess

    shape = strokes.mnist_shape(a_digit(mnist, 5))
    x = strokes.canvas_input(shape, np.random.default_rng(7))
    canvas = strokes.draw_canvas(shape, np.random.default_rng(7))
    expected = np.round(preprocess(canvas)[:, :, 0] * 255).astype(np.uint8)
    assert np.array_equal(x, expected)
    # MNIST's layout: white digit on black, nothing in the 4 px frame around the 20x20 box.
    assert x.max() == 255 and x[:2].max() == 0 and x[-2:].max() == 0


@pytest.mark.parametrize("edit,label", [(strokes.add_flag_and_foot, 1), (strokes.cross_seven, 7),
                                        (strokes.slash_zero, 0)])
def test_convention_edits_add_strokes_to_the_digit(mnist, edit, label):
    shape = strokes.mnist_shape(a_digit(mnist, label))
    edited = edit(shape, np.random.default_rng(0))
    assert (edited > 0.5).sum() >= (shape > 0.5).sum() + 15  # a new stroke, not a speck
    assert ((shape > 0.5) & ~(edited > 0.5)).sum() == 0  # the digit itself is kept


def test_an_open_four_is_open_at_the_top():
    rng = np.random.default_rng(0)
    for _ in range(20):
        shape = strokes.strokes_shape(strokes.open_four(rng))
        ink = shape > 0.5
        top = np.flatnonzero(ink.any(axis=1))[0]
        # The top row of ink holds separate strokes (arm and stem) or one, never a closed roof across.
        band = ink[top:top + 3].any(axis=0)
        assert band.sum() < 0.6 * np.flatnonzero(ink.any(axis=0)).size


def test_training_and_evaluation_fonts_are_disjoint_and_draw_every_digit():
    from training.canvas_data import EVAL_FONTS, TRAIN_FONTS

    assert not set(TRAIN_FONTS) & set(EVAL_FONTS)
    for font in TRAIN_FONTS + EVAL_FONTS:
        for digit in "0123456789":
            assert strokes.hershey_strokes(font, digit), (font, digit)


def test_the_training_mix_has_digits_conventions_and_non_digits(mnist, monkeypatch):
    from training.canvas_data import NOT_A_DIGIT, assemble_training_data
    from training.options import TrainOptions

    monkeypatch.setenv("CANVAS_DATA_CACHE", "0")

    def run():
        progress = assemble_training_data(mnist, TrainOptions(limit=1000, seed=3))
        while True:
            try:
                next(progress)
            except StopIteration as stop:
                return stop.value

    data = run()
    counts = data.summary["counts"]["train"]
    assert counts["mnist"] == 900 and counts["redrawn"] >= 890  # every training digit, redrawn once
    assert {"one_flag", "seven_bar", "zero_slash", "open_four", "font"} <= set(counts)
    assert {f"not_a_digit:{kind}" for kind in ("font", "scribble", "curves", "doodle", "line", "pair")} <= set(counts)
    assert (data.y_train == NOT_A_DIGIT).sum() > 0 and set(np.unique(data.y_train)) <= set(range(-1, 10))
    assert len(data.x_val_other) > 0 and (data.y_val >= 0).all()
    again = run()
    assert np.array_equal(data.x_train, again.x_train) and np.array_equal(data.y_train, again.y_train)


def _ring_with_a_faint_stretch(faint: float) -> np.ndarray:
    """A ring (a drawn 0) whose right quarter has intensity `faint`, as a light pen stroke scans."""
    shape = strokes.strokes_shape([[(np.cos(a), np.sin(a)) for a in np.linspace(0, 2 * np.pi, 60)]])
    rows, cols = np.mgrid[0:shape.shape[0], 0:shape.shape[1]]
    right = cols > 0.75 * shape.shape[1]
    shape[right] *= faint
    return shape


def test_a_faint_stretch_is_traced_not_broken_into_pieces():
    # At SKELETON_LEVEL the faint quarter vanishes and the 0 would be redrawn as a "C";
    # the skeleton goes down the retry levels until it is one piece, as the writer drew it.
    shape = _ring_with_a_faint_stretch(0.4)
    line_ = strokes.skeleton(shape)
    assert strokes._pieces(line_) == 1 and strokes._loops(line_) == 1
    assert line_[:, int(0.8 * shape.shape[1]):].any()  # the faint side is part of the line


def test_a_redraw_that_stays_in_pieces_is_refused_and_left_out():
    shape = _ring_with_a_faint_stretch(0.22)  # above TRACE_LEVEL, below every retry level
    with pytest.raises(strokes.BrokenDrawing):
        strokes.skeleton(shape)
    # Two strokes apart are two pieces in the shape too: allowed.
    apart = strokes.strokes_shape([[(0.0, 0.0), (0.0, 1.0)], [(1.0, 0.0), (1.0, 1.0)]])
    assert strokes._pieces(strokes.skeleton(apart)) == 2


def test_flags_of_generated_ones_fall_steeply():
    # A long, flat flag makes a 7: the flag's drop is 0.6-1.3 times its reach (31-52 degrees).
    rng = np.random.default_rng(0)
    stem = strokes.strokes_shape([[(0.5, 0.0), (0.5, 1.0)]])
    for _ in range(20):
        flagged = strokes.add_flag_and_foot(stem, rng, foot_share=0.0)
        added = (flagged > 0.5) & ~(stem > 0.5)
        rows, cols = np.nonzero(added)
        reach, drop = cols.max() - cols.min(), rows.max() - rows.min()
        assert 0.45 * reach <= drop <= 1.5 * reach + 4, (reach, drop)


def test_doodles_draw_shapes_not_specks_and_training_keeps_them_apart_from_the_evaluation_scribbles():
    rng = np.random.default_rng(2)
    for _ in range(40):
        drawn = strokes.doodle(rng)
        assert drawn and all(len(stroke) >= 2 for stroke in drawn)
        shape = strokes.strokes_shape(drawn)
        assert (shape > 0.5).sum() > 100  # a drawing, not a speck
    assert "doodle" in strokes.KINDS and "loops" in strokes.KINDS  # training draws doodles, the benchmark loops


def test_render_workers_leave_when_the_process_that_started_them_is_killed(tmp_path):
    """A process rendering with iter_render's two spawned workers killed with SIGKILL (a server stopped that
    way while it trained): its workers exit within seconds. Before, they waited for ever on their task
    queue, whose pipe they hold open themselves (two were still there an hour after a test killed a
    training replica)."""
    import os
    import signal
    import subprocess
    import sys
    import time
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    script = ("import os, sys\n"
              f"sys.path.insert(0, {str(root)!r})\n"
              "from training.strokes import Task, iter_render\n"
              "from tests.fakes import slow_render\n"
              "tasks = [Task('x', [None], (0, i)) for i in range(4)]\n"
              "print(os.getpid(), flush=True)\n"
              "next(iter_render(tasks, workers=2, render=slow_render, parallel_from=0))\n")
    parent = subprocess.Popen([sys.executable, "-c", script], cwd=root, stdout=subprocess.PIPE, text=True)

    def state(pid: int) -> str | None:
        """The process's state letter ("S", "Z", ...), or None once it is gone."""
        try:
            return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except (OSError, IndexError):
            return None

    def workers() -> list[int]:
        """The parent's children that are multiprocessing workers (not its resource tracker)."""
        found = []
        for entry in Path("/proc").iterdir():
            try:
                stat = (entry / "stat").read_text()
                command = (entry / "cmdline").read_bytes()
            except (OSError, ValueError):
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == parent.pid and b"spawn_main" in command:
                found.append(int(entry.name))
        return found

    try:
        assert int(parent.stdout.readline()) == parent.pid
        deadline = time.monotonic() + 60
        while len(started := workers()) < 2 and time.monotonic() < deadline:
            time.sleep(0.2)
        assert len(started) == 2, started
        os.kill(parent.pid, signal.SIGKILL)
        parent.wait(timeout=10)
        deadline = time.monotonic() + 15
        while (alive := [pid for pid in started if state(pid) not in (None, "Z")]) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert alive == [], f"render workers {alive} outlived the process that started them"
    finally:
        if parent.poll() is None:
            parent.kill()
