"""An explanation in words, for an AI assistant (the MCP tool explain_digit) or a screen reader.

    describe("Model 2", prediction, explanation)
    # "Model 2 reads 7 (99% sure). The evidence for 7 lies mostly in the top and the right side;
    #  what makes it 7 rather than 1: the top left; what argues for 1 instead: the centre. ..."

Works on the JSON a /predict answer carries (a prediction with its "verdict", "candidates"
and "explanation"), so every interface describes the same numbers. Places are named on a
3x3 grid over the drawing's extent in the map (the cells holding most of the evidence, at
most three, until they hold MAIN_SHARE of it).
"""
from __future__ import annotations

from typing import Any, Mapping

import numpy as np

CELL_NAMES = (("top left", "top", "top right"), ("left side", "centre", "right side"),
              ("bottom left", "bottom", "bottom right"))
MAIN_SHARE = 0.6  # name cells until they hold this share of the evidence
MAX_PLACES = 3
NOTABLE = 0.15  # evidence against is mentioned when it is at least this share of the evidence for


def places(values: np.ndarray, support: np.ndarray | None = None) -> str:
    """Where the positive mass of `values` lies, in words ("the top and the right side")."""
    values = np.clip(np.asarray(values, np.float64), 0.0, None)
    total = values.sum()
    if total <= 0:
        return "nowhere in particular"
    rows, cols = _extent(support if support is not None else values)
    masses = np.array([[values[np.ix_(r, c)].sum() for c in cols] for r in rows])
    order = np.argsort(-masses, axis=None)
    chosen, held = [], 0.0
    for index in order[:MAX_PLACES]:
        row, col = divmod(int(index), 3)
        chosen.append(CELL_NAMES[row][col])
        held += masses[row, col] / total
        if held >= MAIN_SHARE:
            break
    named = [f"the {name}" for name in chosen]
    return named[0] if len(named) == 1 else ", ".join(named[:-1]) + " and " + named[-1]


def _extent(values: np.ndarray) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Three row bands and three column bands over the box where the map is not ~0."""
    magnitude = np.abs(np.asarray(values, np.float64))
    mask = magnitude > 0.01 * magnitude.max() if magnitude.max() > 0 else np.ones_like(magnitude, bool)
    row_index, col_index = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    rows = np.array_split(np.arange(row_index[0], row_index[-1] + 1), 3)
    cols = np.array_split(np.arange(col_index[0], col_index[-1] + 1), 3)
    return [r if r.size else rows[0] for r in rows], [c if c.size else cols[0] for c in cols]


def describe(title: str, prediction: Mapping[str, Any], explanation: Mapping[str, Any]) -> str:
    """Why `title` (e.g. "Model 2") reads the drawing as it does, in a few sentences."""
    if "error" in explanation:
        return f"{title}: {explanation['error']}."
    maps = explanation["maps"]
    top, runner_up, contrast = (np.asarray(item["values"], np.float64) for item in maps[:3])
    support = np.abs(top) + np.abs(runner_up)
    digit, other = explanation["top"], explanation["runner_up"]
    probabilities = prediction.get("probabilities") or [0.0] * 10
    verdict = prediction.get("verdict", "digit")
    sentences = []
    if verdict == "unsure":
        sentences.append(f"{title} is not sure: {digit} or {other}? What makes it a {digit}: {places(top, support)}; "
                         f"what makes it a {other}: {places(runner_up, support)}.")
    else:
        opening = (f"{title} sees no digit (its best guess: {digit}, {probabilities[digit]:.0%})"
                   if verdict == "not_a_digit" else f"{title} reads {digit} ({probabilities[digit]:.0%} sure)")
        sentences.append(f"{opening}. The evidence for {digit} lies mostly in {places(top, support)}"
                         + _against(top, digit, support) + ".")
    sentences.append(f"What makes it {digit} rather than {other}: {places(contrast, support)}"
                     + (f"; what argues for {other} instead: {places(-contrast, support)}"
                        if np.clip(-contrast, 0, None).sum() >= NOTABLE * np.clip(contrast, 0, None).sum() else "")
                     + ".")
    sentences.append(f"Method: {explanation['method_text']}.")
    return " ".join(sentences)


def _against(values: np.ndarray, digit: int, support: np.ndarray) -> str:
    positive, negative = np.clip(values, 0, None).sum(), np.clip(-values, 0, None).sum()
    if negative < NOTABLE * positive:
        return ""
    return f"; the strongest evidence against {digit} is in {places(-values, support)}"
