"""Explanations for gradio_client (`explain`) and MCP (`explain_digit`), through the same lane as REST.

Both ask inference/explain/lane.py for the /predict answer with "explain": true, so the limits
(per client, server-wide), the workers and the numbers are REST's. Images go back as PNG files
in Gradio's cache (where its own outputs live, cleaned by age: server.CACHE_MAX_AGE), enlarged
5x so a client that shows them as they are sees more than 28 pixels.
"""
from __future__ import annotations

import base64
import io
import json
from typing import Any

import gradio as gr
from gradio import processing_utils
from gradio.data_classes import FileData
from PIL import Image

from inference.explain.lane import ExplainRefused
from inference.explain.render import enlarged
from inference.image_io import gradio_upload_folder
from training.registry import MODELS
from ui.context import AppContext
from ui.refusals import Refused

ENLARGE = 5
PANEL_GAP = 4  # px between the panels of explain_digit's picture


async def explained(ctx: AppContext, image: str, model: str, request: gr.Request | None) -> dict[str, Any]:
    """The /predict answer for `model` with its "explanation"; gr.Error in the interface's words otherwise."""
    if model not in MODELS:
        raise Refused(f"Unknown model {model[:40]!r}: choose one of {', '.join(MODELS)}.", 422)
    if ctx.explain_lane is None:
        raise Refused("This server does not compute explanations.", 503)
    client = request.client.host if request is not None and request.client else None
    try:
        status, body = await ctx.explain_lane.answer(image, model, client=client)
    except ExplainRefused as refused:
        raise Refused(refused.message, refused.status, refused.retry_after) from None
    payload = json.loads(body)
    if status != 200:
        raise Refused(payload.get("error") or "The server could not explain this image.", status)
    if "error" in payload["explanation"]:
        raise Refused(payload["explanation"]["error"], 503)
    return payload


def png_file(data_url: str, name: str, factor: int = ENLARGE) -> FileData:
    """A PNG data URL of ours as an enlarged PNG file in Gradio's cache."""
    image = Image.open(io.BytesIO(base64.b64decode(data_url.split(",", 1)[1])))
    return _cached(enlarged(image, factor), name)


def panels(data_urls: list[str], name: str, factor: int = ENLARGE) -> FileData:
    """Several of our PNGs side by side, enlarged, as one PNG file in Gradio's cache."""
    images = [enlarged(Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1]))).convert("RGB"), factor)
              for url in data_urls]
    width = sum(image.width for image in images) + PANEL_GAP * (len(images) - 1)
    sheet = Image.new("RGB", (width, max(image.height for image in images)), (255, 255, 255))
    left = 0
    for image in images:
        sheet.paste(image, (left, 0))
        left += image.width + PANEL_GAP
    return _cached(sheet, name)


def _cached(image: Image.Image, name: str) -> FileData:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", compress_level=1)
    path = processing_utils.save_bytes_to_cache(buffer.getvalue(), name, str(gradio_upload_folder()))
    return FileData(path=path, orig_name=name, mime_type="image/png")


def without_images(value: Any) -> Any:
    """The answer's numbers only: every PNG data URL left out (they come back as files)."""
    if isinstance(value, dict):
        return {key: without_images(item) for key, item in value.items()
                if not (isinstance(item, str) and item.startswith("data:image/"))}
    if isinstance(value, list):
        return [without_images(item) for item in value]
    return value
