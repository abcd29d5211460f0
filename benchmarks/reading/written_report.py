"""Per convention and per letter: how models read the evaluation's written conventions and letters.

    MNIST_DIR=../shared/mnist python -m benchmarks.reading.written_report [EXPORTS_DIR ...]

The drawn benchmark (benchmarks/reading/drawn.py) pools benchmarks/reading/written_conventions.py's drawings
by digit; this prints each convention's accuracy and, for the handwritten letters
(benchmarks/reading/handwritten_letters.py), the share each model's own verdict flags and the letters
it accepts most, for every model export folder given (default: the shipped exports/). The
drawings (90 per convention, 10 writers per letter, a fixed seed) are drawn the long way with
the evaluation pens and cached like the drawn sets.
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from training import strokes

SEED = 20_261_204
PER_CONVENTION = 90
PER_LETTER = 10


def drawings():
    """(uint8 [N, 28, 28], names [N] ("four_cursive", ..., "letter:D"), labels [N]) through the cache."""
    from benchmarks.reading import handwritten_letters, written_conventions
    from training.canvas_data import render_cached

    rng = np.random.default_rng(SEED)
    groups = []

    def add(name: str, items: list, salt: int):
        for index, pen in enumerate(written_conventions.EVAL_PENS):
            for task in strokes.chunked("strokes", items[index::3], (SEED, salt, index)):
                groups.append((name, strokes.Task(task.kind, task.items, task.seed,
                                                  written_conventions.EVAL_DISTORTION, pen)))

    for salt, name in enumerate(written_conventions.CONVENTIONS):
        add(f"{name}:{written_conventions.CONVENTIONS[name][0]}", written_conventions.written(name, PER_CONVENTION, rng),
            salt)
    by_letter: dict[str, list] = {}
    for letter, drawing in handwritten_letters.letters(PER_LETTER, rng):
        by_letter.setdefault(letter, []).append(drawing)
    for salt, (letter, items) in enumerate(by_letter.items(), start=100):
        add(f"letter_{letter}:-1", items, salt)
    arrays = strokes.run_to_end(render_cached({"kind": "written_report", "seed": SEED, "per_convention": PER_CONVENTION,
                                               "per_letter": PER_LETTER}, groups))
    names, labels, images = [], [], []
    for group, x in arrays.items():
        name, label = group.rsplit(":", 1)
        images.append(x)
        names += [name.replace("letter_", "letter:")] * len(x)
        labels += [int(label)] * len(x)
    return np.concatenate(images), np.array(names), np.array(labels)


def main(argv: list[str]) -> int:
    from benchmarks.context import as_model_input, onnx_probabilities, onnx_session
    from inference.verdict import judge_many, thresholds_from
    from training.artifacts import read_metadata
    from training.registry import MODELS

    folders = [Path(folder) for folder in argv] or [Path(__file__).resolve().parents[2] / "exports"]
    x, names, labels = drawings()
    columns = {}
    for folder in folders:
        for model in MODELS:
            if (folder / f"{model}.onnx").is_file():
                probabilities = onnx_probabilities(onnx_session(folder / f"{model}.onnx"), as_model_input(x))
                verdicts = np.asarray(judge_many(probabilities, thresholds_from(read_metadata(folder / f"{model}.json") or {})))
                columns[f"{model} ({folder})"] = (probabilities.argmax(1), verdicts)
    letters = np.char.startswith(names.astype(str), "letter:")
    print("| convention | " + " | ".join(columns) + " |")
    print("| --- |" + " --- |" * len(columns))
    for name in dict.fromkeys(names[~letters]):
        chosen = names == name
        print(f"| {name} | " + " | ".join(f"{np.mean(read[chosen] == labels[chosen]):.1%}"
                                         for read, _ in columns.values()) + " |")
    print(f"| all conventions | " + " | ".join(f"{np.mean(read[~letters] == labels[~letters]):.1%}"
                                             for read, _ in columns.values()) + " |")
    print(f"| letters flagged (the model's own verdict) | " + " | ".join(
        f"{np.mean(verdicts[letters] != 'digit'):.1%}" for _, verdicts in columns.values()) + " |")
    for column, (_, verdicts) in columns.items():
        accepted = {name[7:]: float(np.mean(verdicts[names == name] == "digit")) for name in dict.fromkeys(names[letters])}
        top = sorted(accepted.items(), key=lambda item: -item[1])[:10]
        print(f"\n{column}: letters accepted most (of {PER_LETTER} writers): "
              + ", ".join(f"{letter} {round(share * PER_LETTER)}" for letter, share in top))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
