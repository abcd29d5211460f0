"""The training mix's drawings as centre lines, rendered in batches (training/fast_canvas.py).

    images, ok = render_task(strokes.Task("mnist", digits, seed))   # the fast twin of strokes.render_task

Each kind of drawing (strokes.KINDS, plus the writers' conventions of
training/conventions.py) becomes the centre line a pen would follow, as points in
the 64 px work frame: an MNIST digit's skeleton (strokes.skeleton, which refuses a
skeleton that breaks the digit into pieces), plus the strokes a convention adds to
it; or the polylines of a stroke font or a generator. fast_canvas.render then puts
the writer's hand and the pen on every drawing of the task at once.

Only the training mix uses this path; the evaluation drawings (benchmarks/reading/drawn_sets.py)
are drawn the long way, through the app's own preprocessing.
"""
from __future__ import annotations

import numpy as np

from training import conventions, fast_canvas, letters, strokes

MNIST_KINDS = ("mnist", "one_flag", "seven_bar", "zero_slash", *conventions.MNIST_EDITS)


def render_task(task: strokes.Task) -> tuple[np.ndarray, np.ndarray]:
    """(model inputs uint8 [N, 28, 28], bool [N] drawn): a drawing whose skeleton breaks is False."""
    rng = np.random.default_rng(list(task.seed))
    lines = centre_lines(task.kind, task.items, rng)
    ok = np.array([line is not None and len(line) > 0 for line in lines], bool)
    out = np.zeros((len(lines), 28, 28), np.uint8)
    if ok.any():
        out[ok] = fast_canvas.render([line for line, good in zip(lines, ok) if good], rng, task.distortion, task.pen)
    return out, ok


def centre_lines(kind: str, items: list, rng: np.random.Generator) -> list[np.ndarray | None]:
    """The centre line of every item of `kind` (None where the skeleton breaks the drawing)."""
    if kind in MNIST_KINDS:
        if not items:
            return []
        shapes = _small_shapes(np.stack(items))
        return _mnist_lines(kind, shapes, strokes.skeleton_points(shapes, midpoints=True), rng)
    if kind == "pair":
        if not items:
            return []
        lines = strokes.skeleton_points(_small_shapes(np.concatenate([np.asarray(pair) for pair in items])),
                                        midpoints=True)
        lines = [None if line is None else fast_canvas.to_work_frame(line) for line in lines]
        return [_pair_line(lines[2 * i], lines[2 * i + 1], rng) for i in range(len(items))]
    if not items:
        return []
    if kind == "font":
        return fast_canvas.drawings_points([strokes.hershey_strokes(*item) for item in items])
    if kind == "letter_hand":  # items: (training font, letter)
        return letters.handwritten(items, rng)
    if kind in conventions.GENERATED:  # items: the digit to write
        draw = conventions.GENERATED[kind][1]
        return fast_canvas.drawings_points([draw(rng, digit) for digit in items])
    generators = {"open_four": strokes.open_four, "scribble": strokes.scribble, "curves": strokes.curves,
                  "doodle": strokes.doodle, "line": strokes.line}
    if kind in generators:
        return fast_canvas.drawings_points([generators[kind](rng) for _ in items])
    raise ValueError(f"the training mix draws no {kind!r}; kinds: "
                     f"{', '.join((*MNIST_KINDS, 'pair', 'font', 'letter_hand', *conventions.GENERATED, *generators))}")


_EDITS = {"one_flag": strokes.flag_and_foot_lines, "seven_bar": strokes.seven_bar_lines,
          "zero_slash": strokes.zero_slash_lines}


def _mnist_lines(kind: str, shapes: np.ndarray, lines: list, rng: np.random.Generator) -> list[np.ndarray | None]:
    """MNIST digits' skeleton points, with the strokes a convention adds to each (work-frame pixels),
    the added strokes of the whole batch sampled at once."""
    edit = _EDITS.get(kind) or (conventions.MNIST_EDITS[kind][1] if kind in conventions.MNIST_EDITS else None)
    added = [edit(shape, rng) for shape in shapes] if edit else []
    out = [None if line is None else line.astype(np.float32) for line in lines]
    edited = [index for index, line in enumerate(out) if line is not None and added and added[index]]
    if edited:
        spacing = fast_canvas.POINT_SPACING * fast_canvas.SKELETON_INNER / (strokes.WORK_SIDE - 2 * strokes.WORK_MARGIN)
        for index, points in zip(edited, fast_canvas.drawings_points([added[i] for i in edited], spacing, fit=False)):
            out[index] = np.concatenate([out[index], points])
    return [None if line is None else fast_canvas.to_work_frame(line) for line in out]


def _small_shapes(digits: np.ndarray) -> np.ndarray:
    """MNIST digits in the frame the training mix skeletonises them in (fast_canvas.SKELETON_INNER)."""
    return fast_canvas.mnist_shapes(digits, fast_canvas.SKELETON_INNER, fast_canvas.SKELETON_MARGIN)


def _pair_line(left: np.ndarray | None, right: np.ndarray | None, rng: np.random.Generator) -> np.ndarray | None:
    """Two digits side by side, as someone writing "42" (strokes.side_by_side's spacing)."""
    gap = int(rng.integers(-strokes.WORK_MARGIN, strokes.WORK_MARGIN // 2))
    shift = int(rng.integers(-4, 5))
    if left is None or right is None:
        return None
    first, second = left.astype(np.float32), right.astype(np.float32)
    second = second + np.array([shift, strokes.WORK_SIDE - (2 * strokes.WORK_MARGIN - gap)], np.float32)
    both = np.concatenate([first, second])
    # Back into the work frame (the hand's warp turns about its centre), as side_by_side shrinks its frame.
    low, high = both.min(axis=0), both.max(axis=0)
    scale = (strokes.WORK_SIDE - 2 * strokes.WORK_MARGIN) / max(float((high - low).max()), 1.0)
    return ((both - (low + high) / 2.0) * scale + strokes.WORK_SIDE / 2.0).astype(np.float32)
