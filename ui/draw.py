"""The Draw tab's work: one image in, what the page shows out."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import gradio as gr

from inference.image_io import EmptyImageError, ImageInputError, gradio_upload_folder
from inference.predictor import ModelUnavailableError, Predictor
from inference.preprocess import preprocess
from training.registry import MODELS
from ui import views

BOTH = "both"  # the model choice that shows every model side by side


def chosen_models(choice: str) -> list[str]:
    return list(MODELS) if choice == BOTH else [choice]


def empty_outputs(hint: str) -> list[Any]:
    """[verdict, (probabilities, caption) per model, model input] with nothing predicted."""
    return [hint, *[None, ""] * len(MODELS), None]


def prediction_outputs(predictor: Predictor, image: Any, invert: bool, choice: str, empty_hint: str) -> list[Any]:
    """[verdict, (probabilities, caption) per model, model input preview] for one image.

    A blank canvas gets `empty_hint` (a hint, not an error); an unusable image gets a
    gr.Warning saying how to fix it; an untrained model says why it cannot answer.
    """
    try:
        x = preprocess(image, invert=bool(invert))
    except EmptyImageError:
        return empty_outputs(empty_hint)
    except ImageInputError as error:
        gr.Warning(str(error))
        return empty_outputs(f"**Cannot read that image.** {error}")
    outputs, digits = [], {}
    for name in MODELS:
        if name not in chosen_models(choice):
            outputs += [None, ""]
            continue
        try:
            result = predictor.predict(x, name)
        except ModelUnavailableError as error:
            outputs += [None, f"Not available: {error.reason}"]
            continue
        digits[name] = result.digit
        outputs += [views.probabilities_label(result.probabilities),
                    views.prediction_caption(result.digit, result.probabilities, result.latency_ms)]
    titles = {name: spec.title for name, spec in MODELS.items()}
    return [views.verdict(digits, titles), *outputs, views.model_input_preview(x)]


def uploaded_path(upload: Any) -> Path | None:
    """The file behind a raw (not preprocessed) gr.Image / FileData payload, or None.

    Upload events skip Gradio's own image decoding so that a broken file reaches
    preprocess() and becomes a warning instead of an error. Gradio accepts only paths
    it uploaded itself; checking its upload folder again costs nothing.
    """
    if not upload:
        return None
    path = Path(upload["path"] if isinstance(upload, dict) else upload.path).resolve()
    if gradio_upload_folder() not in path.parents:
        raise ImageInputError("That file was not uploaded through this page: upload the image again.")
    return path
