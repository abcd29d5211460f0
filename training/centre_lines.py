"""The training mix's drawings as centre lines, rendered in batches (training/fast_canvas.py).

    images, ok = render_task(strokes.Task("mnist", digits, seed))   # the fast twin of strokes.render_task

Each kind of drawing (strokes.KINDS, plus the writers' conventions of
training/conventions.py) becomes the centre line a pen would follow, as points in
the 64 px work frame: an MNIST digit's skeleton (strokes.skeleton, which refuses a
skeleton that breaks the digit into pieces), plus the strokes a convention adds to
it; or the polylines of a stroke font or a generator. fast_canvas.render then puts
the writer's hand and the pen on every drawing of the task at once.

Only the training mix uses this path; the evaluation drawings (benchmarks/drawn_sets.py)
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
        shapes = fast_canvas.mnist_shapes(np.stack(items))
        return [_mnist_line(kind, shape, line, rng) for shape, line in zip(shapes, strokes.skeletons(shapes))]
    if kind == "pair":
        if not items:
            return []
        lines = strokes.skeletons(fast_canvas.mnist_shapes(np.concatenate([np.asarray(pair) for pair in items])))
        return [_pair_line(lines[2 * i], lines[2 * i + 1], rng) for i in range(len(items))]
    if not items:
        return []
    if kind == "font":
        return fast_canvas.drawings_points([strokes.hershey_strokes(*item) for item in items])
    if kind == "letter_hand":  # items: (training font, letter)
        return fast_canvas.drawings_points([letters.handwritten(font, char, rng) for font, char in items])
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


def _mnist_line(kind: str, shape: np.ndarray, line: np.ndarray | None, rng: np.random.Generator) -> np.ndarray | None:
    """An MNIST digit's skeleton, with the strokes a convention adds to it (work-frame pixels)."""
    edit = _EDITS.get(kind) or (conventions.MNIST_EDITS[kind][1] if kind in conventions.MNIST_EDITS else None)
    added = edit(shape, rng) if edit else []
    if line is None:
        return None
    points = fast_canvas.line_points(line)
    return np.concatenate([points, fast_canvas.work_polyline_points(added)]) if added else points


def _pair_line(left: np.ndarray | None, right: np.ndarray | None, rng: np.random.Generator) -> np.ndarray | None:
    """Two digits side by side, as someone writing "42" (strokes.side_by_side's spacing)."""
    gap = int(rng.integers(-strokes.WORK_MARGIN, strokes.WORK_MARGIN // 2))
    shift = int(rng.integers(-4, 5))
    if left is None or right is None:
        return None
    first, second = fast_canvas.line_points(left), fast_canvas.line_points(right)
    second = second + np.array([shift, strokes.WORK_SIDE - (2 * strokes.WORK_MARGIN - gap)], np.float32)
    both = np.concatenate([first, second])
    # Back into the work frame (the hand's warp turns about its centre), as side_by_side shrinks its frame.
    low, high = both.min(axis=0), both.max(axis=0)
    scale = (strokes.WORK_SIDE - 2 * strokes.WORK_MARGIN) / max(float((high - low).max()), 1.0)
    return ((both - (low + high) / 2.0) * scale + strokes.WORK_SIDE / 2.0).astype(np.float32)
