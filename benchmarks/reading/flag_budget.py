"""What the flag budget trades: Model 1's share of it, or a model's own drawn budget.

    python -m benchmarks.reading.flag_budget                 # shares 0.5, 0.4, 0.3, 0.25, 0.2 (~1 min)
    python -m benchmarks.reading.flag_budget --shares 0.5,0.25
    python -m benchmarks.reading.flag_budget --second-opinion model2   # another model's verdict as the second opinion
    python -m benchmarks.reading.flag_budget --model model3 --drawn-budgets 0.012,0.01,0.008   # ~1 min

With --model, the model's thresholds are refitted on the validation split for each drawn budget
(training/calibration.FLAG_BUDGET's "drawn"; ModelSpec.drawn_flag_budget) exactly as training does, and
its verdicts measured on MNIST test, the drawn sets, letters and scribbles; and the verdicts, as served,
of every model that takes it as a second opinion (Model 1 takes Model 3's), their own thresholds as
shipped. Prints one JSON line per budget; nothing is written.

Without --model (Model 1's share, training/calibration.SECOND_OPINION_BUDGET_SHARE):

Model 1 takes another model's verdict as a second opinion (its registry entry names which; `--second-opinion`
measures another), so its own thresholds get only a share of
FLAG_BUDGET. For each share this refits Model 1's thresholds on the validation split exactly
as training does (calibration.fit_verdict on the shipped ONNX model's calibrated
probabilities), then measures the verdicts as served (with the second opinion's) on MNIST test and the
benchmarks' drawn sets: how many digits are flagged, right ones and wrong ones, and how many
letters and scribbles. Prints one JSON line per share; nothing is written.
"""
from __future__ import annotations

import argparse
import json
import sys

import numpy as np

DEFAULT_SHARES = (0.5, 0.4, 0.3, 0.25, 0.2)
DEFAULT_DRAWN_BUDGETS = (0.012, 0.01, 0.009, 0.008, 0.007, 0.006)


def measure(shares, second_opinion: str | None = None) -> list[dict]:
    from inference.verdict import DIGIT, combine_many, judge_many, thresholds_from
    from training.artifacts import exports_dir, read_metadata
    from training.calibration import fit_verdict, verdict_thresholds
    from training.registry import MODELS

    exports = exports_dir()
    other = second_opinion or MODELS["model1"].second_opinion
    opinion_thresholds = thresholds_from(read_metadata(exports / f"{other}.json"))
    reading = _Reading("model1")  # the validation split Model 1 was fitted on
    second = {name: judge_many(p, opinion_thresholds) for name, p in reading.run(exports / f"{other}.onnx").items()}
    rows = []
    for share in shares:
        thresholds = verdict_thresholds(fit_verdict(reading.validation, reading.canvas.y_val, reading.groups,
                                                    reading.validation_other, share))
        flagged = {name: np.asarray(combine_many(judge_many(p, thresholds), second[name])) != DIGIT
                   for name, p in reading.probabilities.items()}
        rows.append({"share": share, "second_opinion": other, **thresholds,
                     **reading.flag_rates(flagged, reading.probabilities)})
    return rows


def measure_drawn_budgets(model: str, budgets) -> list[dict]:
    """Per drawn budget: `model`'s own verdicts and those of the models taking it as a second opinion."""
    from inference.verdict import DIGIT, combine_many, judge_many, thresholds_from
    from training import calibration
    from training.artifacts import exports_dir, read_metadata
    from training.registry import MODELS

    exports = exports_dir()
    reading = _Reading(model)
    # The models that combine their verdict with this one's, as shipped.
    followers = {name: (reading.run(exports / f"{name}.onnx"), thresholds_from(read_metadata(exports / f"{name}.json")))
                 for name, spec in MODELS.items()
                 if spec.second_opinion == model and (exports / f"{name}.onnx").is_file()}
    rows = []
    for budget in budgets:
        fitted = calibration.fit_verdict(reading.validation, reading.canvas.y_val, reading.groups,
                                         reading.validation_other, calibration.share_of_budget(model),
                                         {**calibration.FLAG_BUDGET, "drawn": budget})
        thresholds = calibration.verdict_thresholds(fitted)
        verdicts = {name: judge_many(p, thresholds) for name, p in reading.probabilities.items()}
        row = {"model": model, "drawn_budget": budget, **thresholds,
               **reading.flag_rates({name: np.asarray(v) != DIGIT for name, v in verdicts.items()},
                                    reading.probabilities)}
        for name, (read, own_thresholds) in followers.items():
            served = {set_name: np.asarray(combine_many(judge_many(p, own_thresholds), verdicts[set_name])) != DIGIT
                      for set_name, p in read.items()}
            row.update(reading.flag_rates(served, read, prefix=f"{name}_served_"))
        rows.append(row)
    return rows


class _Reading:
    """A model's shipped ONNX file on its validation split and on MNIST test and the benchmarks' drawn sets."""

    def __init__(self, model: str):
        from benchmarks.reading.drawn_sets import load_drawn_sets
        from training.artifacts import exports_dir
        from training.calibration import validation_groups
        from training.canvas_data import assemble_training_data
        from training.mnist import load_mnist
        from training.onnx_contract import run_onnx, to_model_input
        from training.registry import MODELS
        from training.strokes import run_to_end

        onnx = (exports_dir() / f"{model}.onnx").read_bytes()
        mnist = load_mnist()
        self.canvas = run_to_end(assemble_training_data(mnist, MODELS[model].defaults()))  # its validation split
        self.validation = run_onnx(onnx, to_model_input(self.canvas.x_val))
        self.validation_other = run_onnx(onnx, to_model_input(self.canvas.x_val_other))
        self.groups = validation_groups(self.canvas)
        self.sets = {"mnist_test": (mnist.x_test, np.asarray(mnist.y_test)),
                     **{name: (drawn.x, drawn.y) for name, drawn in load_drawn_sets(mnist).items()}}
        self.probabilities = self.run(onnx)

    def run(self, onnx) -> dict[str, np.ndarray]:
        """An ONNX model's (bytes, or a file) probabilities on each set."""
        from pathlib import Path

        from training.onnx_contract import run_onnx, to_model_input

        model = onnx.read_bytes() if isinstance(onnx, Path) else onnx
        return {name: run_onnx(model, to_model_input(x)) for name, (x, _) in self.sets.items()}

    def flag_rates(self, flagged: dict, read: dict, prefix: str = "") -> dict[str, float]:
        """Shares flagged (`flagged`: set -> bool per image) of the digits read right and wrong (by `read`'s
        probabilities), and of the letters and scribbles."""
        from benchmarks.reading.drawn_sets import DIGIT_SETS

        right = {name: read[name].argmax(1) == y for name, (_, y) in self.sets.items()}
        drawn_flagged = np.concatenate([flagged[name] for name in DIGIT_SETS])
        drawn_right = np.concatenate([right[name] for name in DIGIT_SETS])

        def share(values) -> float:
            return round(float(np.mean(values)), 5)

        return {f"{prefix}mnist_test_flagged": share(flagged["mnist_test"]),
                f"{prefix}mnist_test_right_flagged": share(flagged["mnist_test"][right["mnist_test"]]),
                f"{prefix}mnist_test_wrong_flagged": share(flagged["mnist_test"][~right["mnist_test"]]),
                f"{prefix}drawn_right_flagged": share(drawn_flagged[drawn_right]),
                f"{prefix}drawn_wrong_flagged": share(drawn_flagged[~drawn_right]),
                f"{prefix}letters_flagged": share(flagged["letters_symbols"]),
                f"{prefix}handwritten_letters_flagged": share(flagged["handwritten_letters"]),
                f"{prefix}scribbles_flagged": share(flagged["scribbles"])}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.reading.flag_budget", description=__doc__.splitlines()[0])
    parser.add_argument("--shares", default=",".join(map(str, DEFAULT_SHARES)),
                        help="comma-separated shares of the flag budget, each in (0, 1]")
    parser.add_argument("--second-opinion", help="the model whose verdict Model 1's is combined with "
                                                   "(default: the one its registry entry names)")
    parser.add_argument("--model", help="refit this model's own thresholds at each of --drawn-budgets instead")
    parser.add_argument("--drawn-budgets", default=",".join(map(str, DEFAULT_DRAWN_BUDGETS)),
                        help="with --model: comma-separated shares of correctly read drawn validation digits "
                             "the verdict may flag, each in (0, 0.1]")
    args = parser.parse_args(argv)
    if args.model is not None:
        from training.registry import MODELS

        if args.model not in MODELS:
            parser.error(f"--model must be one of {', '.join(MODELS)}, got {args.model!r}")
        budgets = _numbers(parser, "--drawn-budgets", args.drawn_budgets, 0.1)
        rows = measure_drawn_budgets(args.model, budgets)
    else:
        rows = measure(_numbers(parser, "--shares", args.shares, 1.0), args.second_opinion)
    for row in rows:
        print(json.dumps(row), flush=True)
    return 0


def _numbers(parser: argparse.ArgumentParser, option: str, text: str, at_most: float) -> list[float]:
    """Comma-separated numbers in (0, at_most], or a usage error naming the option."""
    try:
        values = [float(value) for value in text.split(",") if value.strip()]
    except ValueError:
        parser.error(f"{option} takes numbers, got {text!r}")
    if not values or not all(0 < value <= at_most for value in values):
        parser.error(f"each value of {option} (a share of the budget) must be in (0, {at_most:g}]")
    return values


if __name__ == "__main__":
    sys.exit(main())
