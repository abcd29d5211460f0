"""Is it a digit, which two it might be, or no digit at all: from calibrated probabilities alone.

    verdict, candidates = judge(probabilities, thresholds)

- "digit":       the top probability reaches `digit_at_least`; candidates = [top]
- "unsure":      it does not, but the top two together reach `pair_at_least`
                 (the model hesitates between two digits: "4 or 9?"); candidates = [top, second]
- "not_a_digit": the probability is spread over many digits; candidates = []

Models 2 and 3 are trained to spread their output evenly over the ten digits for letters,
scribbles, lines and several digits (outlier exposure, training/canvas_data.py); Model 1,
a linear model, gained nothing from that and is not: alone it flags 6% of letters.
Whether a drawing is a digit at all is a question about the drawing, so a model whose
registry entry names a `second_opinion` (Model 1: Model 3) takes the more doubtful of
its own verdict and that model's (`with_second_opinion`): a letter the CNN calls "not
a digit" is not a digit for Model 1 either, while Model 1's digit and its candidates stay
its own (measured on the shipped models with Model 2's opinion: letters flagged 6% -> 93%,
scribbles 3% -> 95%; with Model 3's, 97% and 97%: the benchmarks' `drawn` section).
Every model's probabilities are temperature-calibrated, so the top
probability says how sure the model is and the top-two mass says whether it hesitates
or does not recognise a digit at all. The thresholds are fitted per model at training time
(training/calibration.py) and carried in the export's metadata ("verdict"), so
this module has no per-model code. Costs ~2 us per prediction (a partial sort of 10).
"""
from __future__ import annotations

from typing import Any, Mapping, Sequence

DIGIT, UNSURE, NOT_A_DIGIT = "digit", "unsure", "not_a_digit"

# For an export that carries no fitted thresholds (trained before verdicts existed):
# plain softmax models are over-confident, so these only flag clear cases.
DEFAULT_THRESHOLDS = {"digit_at_least": 0.6, "pair_at_least": 0.8}


def thresholds_from(metadata: Mapping[str, Any] | None) -> dict[str, float]:
    """The verdict thresholds a model's metadata carries, else DEFAULT_THRESHOLDS."""
    fitted = (metadata or {}).get("verdict")
    if isinstance(fitted, Mapping):
        try:
            return {key: float(fitted[key]) for key in DEFAULT_THRESHOLDS}
        except (KeyError, TypeError, ValueError):
            pass
    return dict(DEFAULT_THRESHOLDS)


def judge(probabilities: Sequence[float], thresholds: Mapping[str, float] = DEFAULT_THRESHOLDS
          ) -> tuple[str, list[int]]:
    """(verdict, candidate digits) for one row of ten probabilities."""
    first = second = -1
    p_first = p_second = -1.0
    for digit, p in enumerate(probabilities):
        if p > p_first:
            second, p_second = first, p_first
            first, p_first = digit, p
        elif p > p_second:
            second, p_second = digit, p
    if p_first >= thresholds["digit_at_least"]:
        return DIGIT, [first]
    if p_first + p_second >= thresholds["pair_at_least"]:
        return UNSURE, [first, second]
    return NOT_A_DIGIT, []


_DOUBT = {DIGIT: 0, UNSURE: 1, NOT_A_DIGIT: 2}


def with_second_opinion(own: tuple[str, list[int]], probabilities: Sequence[float], other: str | None
                        ) -> tuple[str, list[int]]:
    """The more doubtful of a model's own (verdict, candidates) and another model's verdict on the
    same drawing (None: no second opinion). Candidates always come from the model's own
    probabilities: "unsure" names its own top two."""
    verdict, candidates = own
    if other is None or _DOUBT[other] <= _DOUBT[verdict]:
        return verdict, candidates
    if other == NOT_A_DIGIT:
        return NOT_A_DIGIT, []
    ranked = sorted(range(len(probabilities)), key=lambda digit: probabilities[digit], reverse=True)
    return UNSURE, ranked[:2]


def combine_many(own: Sequence[str], other: Sequence[str] | None) -> list[str]:
    """with_second_opinion()'s verdicts for a batch (benchmarks and measurements)."""
    if other is None:
        return list(own)
    return [a if _DOUBT[a] >= _DOUBT[b] else b for a, b in zip(own, other)]


def shares(verdicts) -> dict[str, float]:
    """The share of each verdict in a batch of verdicts (a sequence or numpy array); zeros when empty."""
    import numpy as np

    verdicts = np.asarray(verdicts)
    if len(verdicts) == 0:
        return {DIGIT: 0.0, UNSURE: 0.0, NOT_A_DIGIT: 0.0}
    return {name: float(np.mean(verdicts == name)) for name in (DIGIT, UNSURE, NOT_A_DIGIT)}


def judge_many(probabilities, thresholds: Mapping[str, float] = DEFAULT_THRESHOLDS) -> list[str]:
    """Verdicts for a batch [N, 10] (numpy), vectorised: benchmarks and threshold fitting."""
    import numpy as np

    ordered = np.sort(np.asarray(probabilities, dtype=np.float64), axis=1)
    top, pair = ordered[:, -1], ordered[:, -1] + ordered[:, -2]
    out = np.where(top >= thresholds["digit_at_least"], DIGIT,
                   np.where(pair >= thresholds["pair_at_least"], UNSURE, NOT_A_DIGIT))
    return out.tolist()
