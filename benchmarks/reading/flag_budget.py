"""What Model 1's share of the flag budget trades (training/calibration.SECOND_OPINION_BUDGET_SHARE).

    python -m benchmarks.reading.flag_budget                 # shares 0.5, 0.4, 0.3, 0.25, 0.2 (~1 min)
    python -m benchmarks.reading.flag_budget --shares 0.5,0.25
    python -m benchmarks.reading.flag_budget --second-opinion model2   # another model's verdict as the second opinion

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


def measure(shares, second_opinion: str | None = None) -> list[dict]:
    from benchmarks.reading.drawn_sets import DIGIT_SETS, load_drawn_sets
    from inference.verdict import DIGIT, combine_many, judge_many, thresholds_from
    from training.artifacts import exports_dir, read_metadata
    from training.calibration import fit_verdict
    from training.canvas_data import assemble_training_data
    from training.mnist import load_mnist
    from training.model1_logreg import DEFAULTS
    from training.onnx_contract import run_onnx, to_model_input
    from training.registry import MODELS
    from training.strokes import run_to_end

    exports = exports_dir()
    other = second_opinion or MODELS["model1"].second_opinion
    model1, opinion = ((exports / f"{name}.onnx").read_bytes() for name in ("model1", other))
    opinion_thresholds = thresholds_from(read_metadata(exports / f"{other}.json"))
    mnist = load_mnist()
    canvas = run_to_end(assemble_training_data(mnist, DEFAULTS))  # the validation split Model 1 was fitted on
    validation = run_onnx(model1, to_model_input(canvas.x_val))
    validation_other = run_onnx(model1, to_model_input(canvas.x_val_other))
    groups = np.where(canvas.val_kind == "mnist", "mnist", "drawn")
    sets = {"mnist_test": (mnist.x_test, np.asarray(mnist.y_test)),
            **{name: (drawn.x, drawn.y) for name, drawn in load_drawn_sets(mnist).items()}}
    own_probabilities = {name: run_onnx(model1, to_model_input(x)) for name, (x, _) in sets.items()}
    second = {name: judge_many(run_onnx(opinion, to_model_input(x)), opinion_thresholds) for name, (x, _) in sets.items()}
    rows = []
    for share in shares:
        fitted = fit_verdict(validation, canvas.y_val, groups, validation_other, share)
        thresholds = {key: fitted[key] for key in ("digit_at_least", "pair_at_least")}
        flagged = {name: np.asarray(combine_many(judge_many(p, thresholds), second[name])) != DIGIT
                   for name, p in own_probabilities.items()}
        right = {name: own_probabilities[name].argmax(1) == y for name, (_, y) in sets.items()}
        drawn_flagged = np.concatenate([flagged[name] for name in DIGIT_SETS])
        drawn_right = np.concatenate([right[name] for name in DIGIT_SETS])
        rows.append({
            "share": share, "second_opinion": other, **thresholds,
            "mnist_test_flagged": round(float(flagged["mnist_test"].mean()), 5),
            "mnist_test_right_flagged": round(float(flagged["mnist_test"][right["mnist_test"]].mean()), 5),
            "mnist_test_wrong_flagged": round(float(flagged["mnist_test"][~right["mnist_test"]].mean()), 5),
            "drawn_right_flagged": round(float(drawn_flagged[drawn_right].mean()), 5),
            "drawn_wrong_flagged": round(float(drawn_flagged[~drawn_right].mean()), 5),
            "letters_flagged": round(float(flagged["letters_symbols"].mean()), 5),
            "handwritten_letters_flagged": round(float(flagged["handwritten_letters"].mean()), 5),
            "scribbles_flagged": round(float(flagged["scribbles"].mean()), 5),
        })
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.reading.flag_budget", description=__doc__.splitlines()[0])
    parser.add_argument("--shares", default=",".join(map(str, DEFAULT_SHARES)),
                        help="comma-separated shares of the flag budget, each in (0, 1]")
    parser.add_argument("--second-opinion", help="the model whose verdict Model 1's is combined with "
                                                   "(default: the one its registry entry names)")
    args = parser.parse_args(argv)
    try:
        shares = [float(value) for value in args.shares.split(",") if value.strip()]
    except ValueError:
        parser.error(f"--shares takes numbers, got {args.shares!r}")
    if not shares or not all(0 < share <= 1 for share in shares):
        parser.error("each share must be in (0, 1]")
    for row in measure(shares, args.second_opinion):
        print(json.dumps(row), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
