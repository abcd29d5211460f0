"""(2b) Reading real drawings: drawn digits, calibration and the verdict, from the shipped ONNX models.

The evaluation drawings (benchmarks/reading/drawn_sets.py: MNIST test digits redrawn as pen
strokes, writers' conventions, stroke fonts not used in training, scikit-learn's
digits of 43 writers; letters, scribbles, lines, two digits) go through each shipped
ONNX model. The served probabilities are the calibrated ones; the uncalibrated ones
are recovered exactly from them with the temperature in the model's metadata
(softmax(T log p)), for the ECE before/after. Verdicts use the thresholds in the
metadata, through inference/verdict.py as the predictor does, with the registry's second
opinion (Model 1 takes Model 2's); rows of their own show Model 1's verdict alone.
"""
from __future__ import annotations

import numpy as np

from benchmarks.context import Context, as_model_input, onnx_probabilities, onnx_session
from benchmarks.outcome import INFO, SectionResult, pct, status
from training.artifacts import read_metadata
from training.registry import MODELS

NAME = "drawn"
TITLE = "Reading real drawings: drawn digits, calibration, verdict (shipped ONNX models)"

DRAWN_TARGETS = {"model1": 0.93, "model2": 0.985, "model3": 0.985}  # accuracy on the drawn digit sets, pooled
MAX_ECE = 0.015  # on MNIST test and on the drawn digits, after calibration
MIN_NON_DIGIT_FLAGGED = 0.90  # of letters and of scribbles: unsure or not_a_digit
MAX_MNIST_FLAGGED = 0.01  # of MNIST test digits
MAX_DRAWN_FLAGGED = 0.02  # of correctly read drawn digits
TARGET_NON_DIGITS = ("letters_symbols", "handwritten_letters", "scribbles")


def run(ctx: Context) -> SectionResult:
    from benchmarks.reading.drawn_sets import DIGIT_SETS, FULL_SIZE, QUICK_SIZE, load_drawn_sets
    from inference.verdict import combine_many, judge_many, shares, thresholds_from
    from training.calibration import expected_calibration_error, temper

    result = SectionResult(NAME, TITLE)
    sets = load_drawn_sets(ctx.mnist, QUICK_SIZE if ctx.config.quick else FULL_SIZE)
    mnist_x, mnist_y = as_model_input(ctx.mnist.x_test), np.asarray(ctx.mnist.y_test)
    inputs = {"mnist_test": mnist_x, **{set_name: as_model_input(drawn.x) for set_name, drawn in sets.items()}}
    # Every model's served probabilities and own verdicts first: a model's verdict as served may
    # take another model's into account (registry second_opinion, as inference/predictor.py does).
    served, own, metadatas = {}, {}, {}
    for name in MODELS:
        session = onnx_session(ctx.exports / f"{name}.onnx")
        metadatas[name] = read_metadata(ctx.exports / f"{name}.json") or {}
        thresholds = thresholds_from(metadatas[name])
        served[name] = {key: onnx_probabilities(session, x) for key, x in inputs.items()}
        own[name] = {key: np.asarray(judge_many(p, thresholds)) for key, p in served[name].items()}
    digit_rows, other_rows, summary_rows = [], [], []
    for name, spec in MODELS.items():
        metadata = metadatas[name]
        temperature = float(metadata.get("temperature") or 1.0)
        thresholds = thresholds_from(metadata)
        partner = spec.second_opinion if spec.second_opinion in own else None
        verdicts = {key: np.asarray(combine_many(v, own[partner][key] if partner else None))
                    for key, v in own[name].items()}
        data: dict = {"temperature": temperature, "thresholds": thresholds, "second_opinion": partner, "sets": {}}
        if partner:
            data["own_verdict_flagged"] = {key: float(np.mean(v != "digit")) for key, v in own[name].items()}

        def score(key, y):
            calibrated = served[name][key]
            before = temper(calibrated, 1.0 / temperature)  # the uncalibrated model's output, exactly
            correct = calibrated.argmax(1) == y
            return calibrated, before, correct

        calibrated, before, correct = score("mnist_test", mnist_y)
        mnist = {"accuracy": float(correct.mean()), "ece_before": expected_calibration_error(before, mnist_y),
                 "ece_after": expected_calibration_error(calibrated, mnist_y),
                 "flagged": float(np.mean(verdicts["mnist_test"] != "digit")),
                 "correct_flagged": float(np.mean(verdicts["mnist_test"][correct] != "digit")),
                 "images": int(len(mnist_y))}
        data["mnist_test"] = mnist
        mnist_ok = mnist["ece_after"] <= MAX_ECE and mnist["flagged"] <= MAX_MNIST_FLAGGED
        digit_rows.append([spec.title, "MNIST test (reference)", f"{len(mnist_y):,}", pct(mnist["accuracy"]),
                           pct(mnist["ece_before"]), pct(mnist["ece_after"]), f"{pct(mnist['flagged'])} of all ({pct(mnist['correct_flagged'])} of correct)",
                           f"ECE <= {pct(MAX_ECE, 1)}, flagged <= {pct(MAX_MNIST_FLAGGED, 0)}", status(mnist_ok)])
        pooled = {"calibrated": [], "before": [], "labels": [], "verdicts": []}
        for set_name, drawn in sets.items():
            if drawn.is_digits:
                calibrated, before, correct = score(set_name, drawn.y)
                rates = shares(verdicts[set_name][correct])
                figures = {"images": int(len(drawn.y)), "accuracy": float(correct.mean()),
                           "ece_before": expected_calibration_error(before, drawn.y),
                           "ece_after": expected_calibration_error(calibrated, drawn.y),
                           "correct_flagged": 1.0 - rates["digit"]}
                for key, value in (("calibrated", calibrated), ("before", before), ("labels", drawn.y),
                                   ("verdicts", verdicts[set_name])):
                    pooled[key].append(value)
                digit_rows.append([spec.title, drawn.description, f"{len(drawn.y):,}", pct(figures["accuracy"]),
                                   pct(figures["ece_before"]), pct(figures["ece_after"]),
                                   pct(figures["correct_flagged"]) + " of correct", INFO, INFO])
            else:
                rates = shares(verdicts[set_name])
                figures = {"images": int(len(drawn.y)), **rates, "flagged": rates["unsure"] + rates["not_a_digit"]}
                targeted = set_name in TARGET_NON_DIGITS
                other_rows.append([spec.title, drawn.description, f"{len(drawn.y):,}", pct(rates["not_a_digit"], 1),
                                   pct(rates["unsure"], 1), pct(rates["digit"], 1),
                                   f"flagged >= {pct(MIN_NON_DIGIT_FLAGGED, 0)}" if targeted else INFO,
                                   status(figures["flagged"] >= MIN_NON_DIGIT_FLAGGED) if targeted else INFO])
                if partner:  # what the model's own verdict alone would say (not served)
                    alone = shares(own[name][set_name])
                    other_rows.append([f"{spec.title}, alone (without {MODELS[partner].title}'s second opinion)",
                                       drawn.description, f"{len(drawn.y):,}", pct(alone["not_a_digit"], 1),
                                       pct(alone["unsure"], 1), pct(alone["digit"], 1), INFO, INFO])
            data["sets"][set_name] = figures
        labels = np.concatenate(pooled["labels"])
        calibrated, before = np.concatenate(pooled["calibrated"]), np.concatenate(pooled["before"])
        correct = calibrated.argmax(1) == labels
        drawn_all = {"images": int(len(labels)), "accuracy": float(correct.mean()),
                     "ece_before": expected_calibration_error(before, labels),
                     "ece_after": expected_calibration_error(calibrated, labels),
                     "correct_flagged": float(np.mean(np.concatenate(pooled["verdicts"])[correct] != "digit"))}
        data["drawn_digits"] = drawn_all
        target = DRAWN_TARGETS.get(name)
        drawn_ok = (drawn_all["accuracy"] >= target and drawn_all["ece_after"] <= MAX_ECE
                    and drawn_all["correct_flagged"] <= MAX_DRAWN_FLAGGED)
        digit_rows.append([spec.title, f"all {len(DIGIT_SETS)} drawn digit sets", f"{len(labels):,}",
                           pct(drawn_all["accuracy"]), pct(drawn_all["ece_before"]), pct(drawn_all["ece_after"]),
                           pct(drawn_all["correct_flagged"]) + " of correct",
                           f"accuracy >= {pct(target, 1)}, ECE <= {pct(MAX_ECE, 1)}, "
                           f"flagged <= {pct(MAX_DRAWN_FLAGGED, 0)}", status(drawn_ok)])
        result.data[name] = data

        result.check(f"{spec.title}: drawn digits read correctly", f">= {pct(target, 1)}", pct(drawn_all["accuracy"]),
                     drawn_all["accuracy"], drawn_all["accuracy"] >= target if target else None,
                     why=f"{pct(drawn_all['accuracy'])} on {len(labels):,} drawn digits")
        for label, ece in (("MNIST test", mnist["ece_after"]), ("drawn digits", drawn_all["ece_after"])):
            result.check(f"{spec.title}: calibration error (ECE) on {label}", f"<= {pct(MAX_ECE, 1)}", pct(ece),
                         ece, ece <= MAX_ECE)
        for set_name in TARGET_NON_DIGITS:
            if set_name in data["sets"]:
                flagged = data["sets"][set_name]["flagged"]
                result.check(f"{spec.title}: {set_name.replace('_', ' ')} called unsure or not a digit",
                             f">= {pct(MIN_NON_DIGIT_FLAGGED, 0)}", pct(flagged, 1), flagged,
                             flagged >= MIN_NON_DIGIT_FLAGGED)
        result.check(f"{spec.title}: MNIST test digits called unsure or not a digit", f"<= {pct(MAX_MNIST_FLAGGED, 0)}",
                     pct(mnist["flagged"]), mnist["flagged"], mnist["flagged"] <= MAX_MNIST_FLAGGED)
        result.check(f"{spec.title}: correctly read drawn digits called unsure or not a digit",
                     f"<= {pct(MAX_DRAWN_FLAGGED, 0)}", pct(drawn_all["correct_flagged"]), drawn_all["correct_flagged"],
                     drawn_all["correct_flagged"] <= MAX_DRAWN_FLAGGED)
        summary_rows.append([spec.title, f"{temperature:.3f}", f"{thresholds['digit_at_least']:.3f}",
                             f"{thresholds['pair_at_least']:.3f}", INFO, INFO])
    result.table("Digits: accuracy, calibration error before/after temperature scaling, share flagged",
                 ["Model", "Set", "Images", "Accuracy", "ECE before", "ECE after", "Flagged unsure / not a digit",
                  "Target", "Status"], digit_rows)
    result.table("Non-digits: verdicts", ["Model", "Set", "Images", "not_a_digit", "unsure", "digit", "Target",
                                          "Status"], other_rows)
    result.table("Fitted at training time (validation split)", ["Model", "Temperature", "digit at least",
                                                                 "top two at least", "Target", "Status"],
                 summary_rows)
    if ctx.config.quick:
        result.note("Quick run: small drawn sets, figures not representative.")
    return result

