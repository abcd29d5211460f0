"""The Draw tab's Python side: an upload in, the same answer the page's canvas gets from /predict.

The canvas asks REST /predict itself (ui/static/canvas.js); an uploaded file can only reach
the server through Gradio's upload route, so its answer is made here, through the same
lanes as /predict (inference/lanes.py), and shown by the same page code (ui/static/answers.js).
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from inference.answer import ALL_MODELS
from inference.image_io import ImageInputError, file_data_url, gradio_upload_folder
from inference.lanes import PredictionLanes

UNREADABLE = "That file is not a picture we can read: "
NO_DIGIT = "That picture shows no digit we can find: "


async def upload_answer(lanes: PredictionLanes, path: Path | None) -> dict[str, Any]:
    """The #answers value for an uploaded file: {"status": HTTP-like status, "answer": /predict JSON}.

    Through the lanes REST uses (inference/lanes.py: issue 18 item 5), so a large upload waits its
    turn like a large /predict. Errors are worded for the page (the REST words tell API callers how to
    send a data URL). No file (the upload was cleared) is status 0 with no answer: the page shows its hint.
    """
    if path is None:
        return {"status": 0, "answer": None}
    try:
        data = file_data_url(path)
    except ImageInputError as error:
        status, payload = 400, {"error": str(error)}
    else:
        status, body = await lanes.answer(data, ALL_MODELS, include_input=True)
        payload = json.loads(body)
    if "error" in payload:
        payload = {**payload, "error": in_page_words(status, payload["error"])}
    return {"status": status, "answer": payload}


def in_page_words(status: int, message: str) -> str:
    """A prediction error as the page says it about an uploaded file."""
    if status == 422:  # found no ink: a blank or speck-only picture
        return NO_DIGIT + "upload a picture of one dark or light digit on a plain background."
    if status != 400:  # a model cannot answer (503): its reason is already in plain words
        return message
    if "not an image this app can read" in message:
        reason = "it is not a PNG, JPEG, WebP, GIF or BMP image (or it is damaged)."
    elif "damaged or truncated" in message:
        reason = "the file is damaged or cut short; upload the complete file."
    else:
        reason = message[0].lower() + message[1:] if message else "unknown problem."
    return UNREADABLE + reason


def uploaded_path(upload: Any) -> Path | None:
    """The file behind a raw (not preprocessed) gr.Image / FileData payload, or None.

    Upload events skip Gradio's own image decoding so that a broken file reaches
    preprocess() and becomes a message instead of an error. Gradio accepts only paths
    it uploaded itself; checking its upload folder again costs nothing.
    """
    if not upload:
        return None
    path = Path(upload["path"] if isinstance(upload, dict) else upload.path).resolve()
    if gradio_upload_folder() not in path.parents:
        raise ImageInputError("That file was not uploaded through this page: upload the image again.")
    return path
