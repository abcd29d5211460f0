"""Text for the page: model cards and training summaries (the Draw tab's answers are worded by
ui/static/answers.js, from the /predict JSON)."""
from __future__ import annotations

import datetime as _dt
from typing import Any


def short_title(title: str) -> str:
    """ "Model 1: logistic regression" -> "Model 1"."""
    return title.split(":", 1)[0]


def format_bytes(size: int | None) -> str:
    if size is None:
        return "–"
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1024 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024


def format_seconds(seconds: float | None) -> str:
    if seconds is None:
        return "–"
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, rest = divmod(seconds, 60)
    return f"{int(minutes)} min {rest:.0f} s"


def format_when(iso: str | None) -> str:
    """An ISO timestamp as a short UTC date and time."""
    if not iso:
        return "–"
    try:
        moment = _dt.datetime.fromisoformat(iso)
    except ValueError:
        return iso
    if moment.tzinfo is not None:
        moment = moment.astimezone(_dt.timezone.utc)
    return moment.strftime("%Y-%m-%d %H:%M UTC")


def format_percent(value: float | None, digits: int = 2) -> str:
    return "–" if value is None else f"{value:.{digits}%}"


def format_sure(probability: float) -> str:
    """A probability as a percentage that never rounds to a certainty it is not: 0.9998 -> ">99.9%"."""
    value = float(probability)
    if value >= 0.9995:
        return ">99.9%" if value < 1.0 else "100%"
    if 0 < value < 0.0005:
        return "<0.1%"
    return f"{value:.1%}"


def parity_text(parity: dict[str, Any] | None) -> str:
    """The measured agreement between the ONNX export and the native model."""
    if not parity:
        return "not measured"
    parts = []
    if parity.get("argmax_agreement") is not None:
        images = f" of {parity['samples']:,} test images" if parity.get("samples") else ""
        parts.append(f"same digit on {parity['argmax_agreement']:.1%}{images}")
    if parity.get("max_abs_diff") is not None:
        parts.append(f"probabilities within {parity['max_abs_diff']:.1e}")
    return ", ".join(parts)


def native_parity_text(parity: dict[str, Any] | None) -> str:
    """The native file, loaded as a learner would, against the served ONNX file."""
    if not parity:
        return "not measured (a native file from before the calibration was folded in: uncalibrated)"
    folded = parity.get("temperature_folded")
    how = f" ({parity['loaded_with']})" if parity.get("loaded_with") else ""
    return parity_text(parity) + how + (f"; temperature {folded:g} folded in" if folded is not None else "")


def calibration_text(calibration: dict[str, Any] | None) -> str:
    """ECE before -> after temperature scaling, on MNIST test and on the drawn digits."""
    if not calibration:
        return "not calibrated"
    parts = []
    for key, label in (("mnist_test", "MNIST test"), ("drawn_test", "drawn digits")):
        ece = calibration.get(key) or {}
        if ece.get("before") is not None and ece.get("after") is not None:
            parts.append(f"{label} {ece['before']:.1%} → {ece['after']:.1%}")
    return ("expected calibration error " + ", ".join(parts)) if parts else "calibrated (no figures recorded)"


def drawn_digits_text(drawn: dict[str, Any] | None) -> str:
    """Accuracy on the canvas-drawn evaluation digits, pooled and per set."""
    pooled = (drawn or {}).get("all_digit_sets")
    if not pooled:
        return "not measured"
    sets = ", ".join(f"{name.replace('_', ' ')} {figures['accuracy']:.1%}"
                     for name, figures in drawn.get("sets", {}).items() if "accuracy" in figures)
    return f"{pooled['accuracy']:.2%} of {pooled['images']:,}" + (f" ({sets})" if sets else "")


def verdict_text(status: dict[str, Any]) -> str:
    """How the model's verdict is made: its thresholds, and whose second opinion it takes."""
    thresholds = status.get("verdict_thresholds") or {}
    if not thresholds:
        return "not fitted"
    text = (f"a digit from {thresholds['digit_at_least']:.0%} on the top answer, \"not sure\" from "
            f"{thresholds['pair_at_least']:.0%} on the top two, else \"not a digit\"")
    if status.get("second_opinion"):
        text += (f"; also unsure or not a digit whenever {status['second_opinion']} says so "
                 "(a linear model cannot tell a letter from a digit)")
    return text


def model_card(status: dict[str, Any]) -> str:
    """Markdown for one model on the Models tab, from model_status() (Predictor.status() plus training keys)."""
    if status.get("available"):
        state = "**Serving predictions** through ONNX Runtime."
    elif status.get("trained"):
        state = f"**Not serving:** {status.get('reason')}"
    else:
        state = "**Not trained yet:** train it in the Train tab."
    if status.get("training"):
        state += " A training run is in progress."
    sizes = status.get("file_sizes") or {}
    files = ", ".join(f"{kind} {format_bytes(size)}" for kind, size in sizes.items()) or "none"
    options = status.get("options") or {}
    settings = ", ".join(f"{key.replace('_', ' ')} {value}" for key, value in options.items()
                         if key != "seed" and value is not None)
    lines = [
        f"### {status['title']}",
        status.get("description", ""),
        "",
        state,
        "",
        f"- **Test accuracy:** {format_percent(status.get('accuracy'))}",
        *([f"- **Version:** {status['version']} (see Versions below)"] if status.get("version") else []),
        *([f"- **Held-out drawings:** {format_percent(status['drawings_accuracy'], 0)} when it was trained"]
          if status.get("drawings_accuracy") is not None else []),
        f"- **Drawn digits:** {drawn_digits_text(status.get('drawn_digits'))}",
        f"- **Calibration:** {calibration_text(status.get('calibration'))}",
        f"- **Verdict:** {verdict_text(status)}",
        f"- **Trained:** {format_when(status.get('trained_at'))}, in {format_seconds(status.get('train_seconds'))}"
        + (f" (and {format_seconds(status['data_seconds'])} preparing the data)"
           if status.get("data_seconds") is not None else ""),
        f"- **Settings:** {settings or '–'}",
        f"- **ONNX export vs native model:** {parity_text(status.get('onnx_parity'))}",
        f"- **Native file as loaded vs what is served:** {native_parity_text(status.get('native_parity'))}",
        f"- **Files:** {files}",
    ]
    if status.get("train_unavailable_reason"):
        lines += ["", f"Training is off here: {status['train_unavailable_reason']}"]
    return "\n".join(lines)


def training_status_line(job: dict[str, Any]) -> str:
    """The status text under a progress bar, from JobManager.status()."""
    text = job.get("status") or ""
    if job.get("error"):
        text += f"\n\n**Error:** {job['error']}"
    return text


def training_summary(job: dict[str, Any]) -> str:
    """What a finished run achieved; empty while nothing has finished."""
    result = job.get("result")
    if job.get("state") == "succeeded" and result:
        return (f"**Test accuracy {result['test_accuracy']:.2%}** on the 10,000 MNIST test images · "
                f"trained in {format_seconds(result['train_seconds'])}"
                + (f" (and {format_seconds(result['data_seconds'])} preparing the data)"
                   if result.get("data_seconds") is not None else "") + " · "
                f"the Draw tab uses the new model now." + personal_summary(result.get("metadata") or {}))
    if job.get("state") == "cancelled":
        return "Cancelled: the previous model is still in use."
    if job.get("state") == "failed":
        return "Training failed: the previous model is still in use."
    return ""


def personal_summary(metadata: dict[str, Any]) -> str:
    """Issue 12: before/after on MNIST test and on the held-out drawings, from a run's metadata."""
    personal = metadata.get("personal") or {}
    before, after = personal.get("before") or {}, personal.get("after") or {}
    if not personal or (after.get("drawings") is None and not personal.get("drawings_trained_on")):
        return ""
    held = personal.get("drawings_held_out", 0)
    return (f"\n\n**Your drawings:** trained on {personal.get('drawings_trained_on', 0)}"
            f"{' (fine-tune)' if personal.get('fine_tune') else ''}; on the {held} held out: "
            f"{format_percent(before.get('drawings'), 0)} before → **{format_percent(after.get('drawings'), 0)}** "
            f"after · MNIST test {format_percent(before.get('mnist_test'))} → {format_percent(after.get('mnist_test'))}")
