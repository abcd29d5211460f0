"""What both trainers learn from: MNIST plus MNIST redrawn the way the canvas draws, conventions, non-digits.

    data = yield from assemble_training_data(mnist, options)   # inside a trainer (a generator)

The mix (RECIPE), all derived from the MNIST TRAINING images and the stroke fonts
kept for training (TRAIN_FONTS), never from the test set or the fonts the
benchmarks evaluate on (benchmarks/reading/drawn_sets.py):

- every training digit as MNIST has it, and once more redrawn as pen strokes on the
  canvas and passed through the app's preprocessing (training/strokes.py);
- writers' conventions MNIST lacks: 1s with a flag and a foot, crossed 7s, slashed 0s
  (stroke edits of MNIST training digits), open one-stroke 4s (generated), and digits
  of the training stroke fonts; and issue 21's (training/conventions.py): cursive
  one-stroke 4s with an open curved top, long-flag 1s, 7s with a hooked bar and a stem
  curving left, 9s curling left like a g, open 9s, round 6s, closed 4s, every digit
  written in one stroke, and MNIST 1s, 7s and 9s given long flags, hooks and curls;
- non-digits with label NOT_A_DIGIT (trained towards a uniform output: outlier
  exposure): letters and symbols of the training fonts, the same fonts' letters
  written stroke by stroke like a hand (training/letters.py), random-walk scribbles,
  smooth random curves, doodles (triangles, stars, spirals, hatching, a crossed-out
  circle), near-horizontal lines, two training digits side by side.

The validation split (the same MNIST images the trainers always held out) gets the
same treatment with its own seeds: it fits the temperature and the verdict
thresholds (training/calibration.py).

The drawings are made from centre lines in batches (training/centre_lines.py,
training/fast_canvas.py), which emulate the canvas and the app's preprocessing: ~0.2 ms
a drawing where the long way (training/strokes.py, canvas + inference.preprocess)
took ~2.7 ms and ~130 s for the whole mix on 2 cores. The result is still cached under
<data dir>/cache/canvas-data (datadir.py), keyed by the MNIST copy, the options, the
recipe, MIX_VERSION, the renderers' versions and the source of inference/preprocess.py.
"""
from __future__ import annotations

import hashlib
import json
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from training import centre_lines, conventions, fast_canvas, letters, strokes

NOT_A_DIGIT = -1  # label of a training drawing that is no digit: its target is uniform over the ten
# Stroke fonts (Hershey, hershey-fonts package) split between training and evaluation.
TRAIN_FONTS = ("futural", "rowmans", "scripts", "timesr", "cursive")
EVAL_FONTS = ("futuram", "rowmand", "rowmant", "scriptc", "timesi", "timesib", "timesrb")
DIGIT_LIKE_LETTERS, LETTERS = letters.DIGIT_LIKE_LETTERS, letters.LETTERS  # (defined with the letters)
SYMBOLS = "+*=#%&?@<>~^-"
CACHE_NAME = "canvas-data"  # <data dir>/cache/canvas-data
CACHE_ENV = "CANVAS_DATA_CACHE"  # "0" turns the cache off; a path moves it
MIX_VERSION = 5  # part of the cache key: raise it when _tasks() changes what is drawn
# Drawings: fewer are rendered in this process. Starting 2 worker processes costs ~2 s; the fast
# renderer draws ~5,000 drawings a second on one core.
FAST_PARALLEL_FROM = 10_000
# Drawings per task: each task costs ~10 ms besides its drawings (measured: 21 ms for 50 MNIST
# digits, 125 ms for 500), so bigger tasks than the long way's 500; still ~130 progress steps.
TASK_SIZE = 1000


@dataclass(frozen=True)
class Recipe:
    """How many drawings of each kind, per 55,000 training digits (scaled down for limited runs)."""

    redrawn_per_digit: int = 1  # redrawn copies of every MNIST training digit
    # Writers' conventions (training/strokes.py's edits and open 4s, training/conventions.py's issue-21
    # variants: edits of MNIST digits and generated ones; "cursive" is spread over the ten digits).
    conventions: dict = field(default_factory=lambda: {
        "one_flag": 3000, "seven_bar": 2000, "zero_slash": 1500, "open_four": 2500,
        "one_long_flag_edit": 1500, "seven_hook_edit": 1500, "nine_curl_edit": 2500,
        "four_cursive": 3000, "four_closed": 500, "one_long_flag": 1000, "seven_hook": 1500, "nine_curl": 2000,
        "nine_open": 1000, "six_round": 1500, "cursive": 3000})
    font_digits: int = 3000  # digits drawn from TRAIN_FONTS
    # letter_hand: the training fonts' letters written stroke by stroke like a hand (training/letters.py)
    non_digits: dict = field(default_factory=lambda: {
        "font": 6000, "letter_hand": 4000, "scribble": 3000, "curves": 2500, "doodle": 2500, "line": 1000,
        "pair": 3000})
    validation_share: float = 0.2  # validation counts relative to the training counts above

    def to_dict(self) -> dict:
        return asdict(self)


RECIPE = Recipe()
CONVENTION_DIGIT = {"one_flag": 1, "seven_bar": 7, "zero_slash": 0, "open_four": 4}  # (strokes.py's conventions)


@dataclass
class CanvasData:
    """Training and validation arrays (uint8 [N, 28, 28], white on black, as MNIST)."""

    x_train: np.ndarray
    y_train: np.ndarray  # int64, NOT_A_DIGIT for non-digits
    x_val: np.ndarray  # digits only: MNIST validation images, redrawn ones and conventions
    y_val: np.ndarray
    val_kind: np.ndarray  # str per validation digit: "mnist", "redrawn", "one_flag", ...
    x_val_other: np.ndarray  # validation non-digits (for fitting the verdict)
    summary: dict  # counts per kind, for the metadata


def assemble_with_events(data, options, events):
    """assemble_training_data() as a trainer's sub-generator: each (status, fraction) it yields
    becomes the trainer's own progress events, `events(status, fraction)` (an iterable of them);
    returns the CanvasData."""
    assembly = assemble_training_data(data, options)
    while True:
        try:
            status, fraction = next(assembly)
        except StopIteration as stop:
            return stop.value
        yield from events(status, fraction)


def assemble_training_data(data, options, recipe: Recipe = RECIPE):
    """The training mix for `data` (MnistData) and `options` (limit, seed): a generator.

    Yields (status text, fraction done) while drawing; returns a CanvasData.
    This is the one place the trainers' data is put together: add new sources here.
    """
    from training.mnist import split_validation

    x_all, y_all = data.x_train, np.asarray(data.y_train, np.int64)
    if options.limit is not None:
        x_all, y_all = x_all[: options.limit], y_all[: options.limit]
    val_size = min(5000, len(x_all) // 10)
    x_train, y_train, x_val, y_val = split_validation(x_all, y_all, size=val_size, seed=options.seed)

    began = time.perf_counter()
    yield "Preparing the canvas drawings", 0.0
    key = _cache_key(data, options, recipe)
    cached = _read_cache(key)
    if cached is not None:
        yield "Canvas drawings loaded from the cache", 1.0
        return _combine(x_train, y_train, x_val, y_val, cached, recipe,
                        {"source": "cache", "seconds": round(time.perf_counter() - began, 3)})

    scale = len(x_train) / 55000
    train_tasks = _tasks(x_train, y_train, scale, recipe, seed=(options.seed, 1), validation=False)
    val_tasks = _tasks(x_val, y_val, scale * recipe.validation_share, recipe, seed=(options.seed, 2), validation=True)
    tasks = [task for _, task in train_tasks] + [task for _, task in val_tasks]
    progress = strokes.iter_render(tasks, render=centre_lines.render_task, parallel_from=FAST_PARALLEL_FROM)
    try:
        while True:
            done, total = next(progress)
            yield f"Drawing training images as pen strokes: {done:,}/{total:,}", done / total
    except StopIteration as stop:
        rendered = stop.value
    finally:
        progress.close()
    drawn = {}
    for (group, _), (images, ok) in zip(train_tasks + val_tasks, rendered):
        parts = drawn.setdefault(group, [])
        parts.append(images[ok])
    arrays = {group: np.concatenate(parts) for group, parts in drawn.items()}
    _write_cache(key, arrays)
    return _combine(x_train, y_train, x_val, y_val, arrays, recipe,
                    {"source": "drawn", "seconds": round(time.perf_counter() - began, 3)})


def _tasks(x, y, scale: float, recipe: Recipe, seed: tuple[int, int], validation: bool):
    """[(group, Task)]; groups are "<split>:<kind>:<label>" so the arrays can be put back together."""
    split = "val" if validation else "train"
    rng = np.random.default_rng(list(seed))
    tasks = []

    def add(kind: str, label: int, items: list, salt: int):
        for task in strokes.chunked(kind, items, (*seed, salt), size=TASK_SIZE):
            tasks.append((f"{split}:{kind}:{label}", task))

    # Redrawn MNIST: grouped per label, so labels need no separate array.
    for _copy in range(recipe.redrawn_per_digit):
        for digit in range(10):
            add("mnist", digit, list(x[y == digit]), 100 * _copy + digit)
    for salt, (kind, count) in enumerate(recipe.conventions.items(), start=1000):
        count = max(1, round(count * scale))
        if kind == "open_four":
            add(kind, 4, [None] * count, salt)
        elif kind in conventions.GENERATED:  # items: the digit each drawing writes
            digits = conventions.GENERATED[kind][0]
            for digit in digits:
                add(kind, digit, [digit] * max(1, round(count / len(digits))), 100 * salt + digit)
        else:
            digit = CONVENTION_DIGIT[kind] if kind in CONVENTION_DIGIT else conventions.MNIST_EDITS[kind][0]
            pool = np.flatnonzero(y == digit)
            add(kind, digit, list(x[rng.choice(pool, count)]), salt)
    count = max(10, round(recipe.font_digits * scale))
    for digit in range(10):
        items = [(font, str(digit)) for font in TRAIN_FONTS]
        add("font", digit, [items[i % len(items)] for i in range(count // 10)], 2000 + digit)
    for salt, (kind, count) in enumerate(recipe.non_digits.items(), start=3000):
        count = max(4, round(count * scale))
        if kind == "font":
            chars = [(font, c) for font in TRAIN_FONTS for c in LETTERS + SYMBOLS]
            items = [chars[i] for i in rng.choice(len(chars), count)]
        elif kind == "letter_hand":
            chars = [(font, c) for font in TRAIN_FONTS for c in letters.hand_letters()]
            items = [chars[i] for i in rng.choice(len(chars), count)]
        elif kind == "pair":
            items = [x[rng.choice(len(x), 2)] for _ in range(count)]
        else:
            items = [None] * count
        add(kind, NOT_A_DIGIT, items, salt)
    return tasks


def _combine(x_train, y_train, x_val, y_val, arrays: dict[str, np.ndarray], recipe: Recipe,
             prepared: dict) -> CanvasData:
    train_x, train_y = [np.asarray(x_train)], [np.asarray(y_train, np.int64)]
    val_x, val_y, val_kind = [np.asarray(x_val)], [np.asarray(y_val, np.int64)], [np.full(len(y_val), "mnist")]
    other, counts = [], {"train": {"mnist": len(y_train)}, "val": {"mnist": len(y_val)}}
    for group in sorted(arrays):
        split, kind, label = group.split(":")
        images, label = arrays[group], int(label)
        name = "redrawn" if kind == "mnist" else kind
        if label == NOT_A_DIGIT:
            name = f"not_a_digit:{kind}"
        counts[split][name] = counts[split].get(name, 0) + len(images)
        if split == "train":
            train_x.append(images)
            train_y.append(np.full(len(images), label, np.int64))
        elif label == NOT_A_DIGIT:
            other.append(images)
        else:
            val_x.append(images)
            val_y.append(np.full(len(images), label, np.int64))
            val_kind.append(np.full(len(images), name))
    # prepared: {"source": "drawn" (this run drew the mix) or "cache", "seconds": wall time}
    summary = {"recipe": recipe.to_dict(), "train_fonts": list(TRAIN_FONTS), "counts": counts, "prepared": prepared,
               "train_images": int(sum(len(part) for part in train_x)),
               "validation_images": int(sum(len(part) for part in val_x)),
               "validation_non_digits": int(sum(len(part) for part in other))}
    return CanvasData(
        x_train=np.concatenate(train_x), y_train=np.concatenate(train_y),
        x_val=np.concatenate(val_x), y_val=np.concatenate(val_y), val_kind=np.concatenate(val_kind),
        x_val_other=np.concatenate(other) if other else np.zeros((0, 28, 28), np.uint8), summary=summary,
    )


# --------------------------------------------------------------------------- cache


def render_cached(description: dict, groups: list[tuple[str, "strokes.Task"]]):
    """Render tasks grouped by name, through the cache: a generator yielding (done, total),
    returning {group: uint8 [N, 28, 28]} (drawings preprocessing refused are left out)."""
    key = _key({"kind": "render_cached", **description})
    cached = _read_cache(key)
    if cached is not None:
        return cached
    rendered = yield from strokes.iter_render([task for _, task in groups])
    parts: dict[str, list[np.ndarray]] = {}
    for (group, _), (images, ok) in zip(groups, rendered):
        parts.setdefault(group, []).append(images[ok])
    arrays = {group: np.concatenate(chunks) for group, chunks in parts.items()}
    _write_cache(key, arrays)
    return arrays


def _cache_dir() -> Path | None:
    setting = os.environ.get(CACHE_ENV)
    if setting == "0":
        return None
    if setting:
        return Path(setting)
    import datadir

    return datadir.cache_dir(CACHE_NAME)


def _cache_key(data, options, recipe: Recipe) -> str:
    """Changes whenever the drawings would: the data, the options that select it, the drawing code."""
    return _key({"mnist": data.sha256, "limit": options.limit, "seed": options.seed, "recipe": recipe.to_dict(),
                 "version": MIX_VERSION, "fast_renderer": fast_canvas.RENDER_VERSION})


def _key(description: dict) -> str:
    """A cache key: the description, the renderer's version and the app's preprocessing (its source:
    a change there changes every model input)."""
    from inference import preprocess

    text = json.dumps({**description, "renderer": strokes.RENDER_VERSION}, sort_keys=True, default=str).encode()
    return hashlib.sha256(text + Path(preprocess.__file__).read_bytes()).hexdigest()[:24]


def _read_cache(key: str) -> dict[str, np.ndarray] | None:
    folder = _cache_dir()
    if folder is None:
        return None
    try:
        with np.load(folder / f"{key}.npz") as archive:
            return {name: archive[name] for name in archive.files}
    except (OSError, ValueError, KeyError):
        return None  # missing or unreadable: draw again


def _write_cache(key: str, arrays: dict[str, np.ndarray]) -> None:
    folder = _cache_dir()
    if folder is None:
        return
    try:
        folder.mkdir(parents=True, exist_ok=True)
        partial = folder / f"{key}.npz.tmp-{os.getpid()}"
        with open(partial, "wb") as handle:
            np.savez(handle, **arrays)
        os.replace(partial, folder / f"{key}.npz")
    except OSError:
        pass  # a read-only checkout trains without a cache
