"""The app's Model Context Protocol tools: read a digit from an image, and the models' status.

Gradio serves them at /gradio_api/mcp/ (streamable HTTP) when app.py mounts the Blocks
with `mcp_server=True`. Gradio would make every public endpoint a tool; `serve_only`
narrows the server to TOOLS, so the gradio_client endpoints that take a FileData (which
Gradio's MCP layer fills from an http(s) URL, i.e. a fetch of an outside host) and the
training endpoints stay off MCP, and the page's private events never were tools.

An image arrives as its bytes in base64 (a data URL or bare): never as a file path (the
server reads none of its files for a client) and never as a URL (the app calls no
outside host). Both are refused with an error that says what to send instead.

No `from __future__ import annotations`: gr.api() reads the tools' type hints at runtime.
"""
import json
import re
from typing import Any

import gradio as gr
from fastapi import FastAPI
from gradio.data_classes import FileData

from inference.explain.words import describe
from inference.image_io import HOW_TO_SEND, ImageInputError
from inference.status import model_status_report
from inference.answer import DEFAULT_MODEL
from training import lineup
from training.registry import MODELS
from ui import explain_api
from ui.context import AppContext
from ui.refusals import Refused

MCP_PATH = "/gradio_api/mcp"  # where Gradio serves the MCP endpoint (streamable HTTP at MCP_PATH + "/")
# MCP tool name -> the Gradio endpoint behind it.
TOOLS = {"recognize_digit": "/recognize_digit", "explain_digit": "/explain_digit", "model_status": "/mcp_model_status"}
# What a string that is not image data may be, to say so instead of "not valid base64".
_URL = re.compile(r"^[a-z][a-z0-9+.-]*://", re.I)
_PATH = re.compile(r"^(~|\.{0,2}/|[a-z]:[\\/])|\\|\.(png|jpe?g|webp|gif|bmp)$", re.I)


def _reading(payload: dict[str, Any], model: str) -> dict[str, Any]:
    """One model's answer as the tool returns it."""
    return {"digit": payload["prediction"], "probabilities": payload["probabilities"], "verdict": payload["verdict"],
            "model": model, "latency_ms": payload["latency_ms"], "candidates": payload.get("candidates")}


def register(ctx: AppContext) -> None:
    """Add the tools' endpoints to the Blocks being built (they are gradio_client endpoints too)."""

    async def recognize_digit(image: str, model: str = "model2", invert: bool = False) -> str:
        if not isinstance(model, str) or (model not in MODELS and model != lineup.ALL):
            raise gr.Error(f"Unknown model {str(model)[:40]!r}: choose one of {', '.join([*MODELS, lineup.ALL])}.")
        try:
            text = _image_text(image)
        except ImageInputError as error:
            raise gr.Error(str(error)) from None
        # Issue 18 item 5: through the lanes REST uses (inference/lanes.py): the header is checked before
        # decoding, a large image waits its turn in the one-at-a-time lane, the work runs in the worker
        # processes, so 120 parallel 2048x2048 PNGs no longer decode in 40 of this process's threads.
        status, body = await ctx.lanes.answer(text, model, bool(invert))
        payload = json.loads(body)
        if status != 200:
            # Decided only after the string failed as image data: bare base64 may start with "/" too.
            if status == 400 and len(text) < 1024 and _PATH.search(text):
                raise gr.Error(f"image looks like a file path ({text[:60]!r}): the server reads none of its "
                               f"files for a client; {HOW_TO_SEND}.")
            raise gr.Error(payload["error"])
        if model == lineup.ALL:  # issue 21 item 4: one answer per model, as REST's "model": "all"
            return json.dumps({"model": lineup.ALL, "latency_ms": payload["latency_ms"],
                               "predictions": {name: _reading(answer, name)
                                               for name, answer in payload["predictions"].items()},
                               "unavailable": payload.get("unavailable", {})})
        return json.dumps(_reading(payload, model))

    # The description names every registered model (and "all"): it said "model2 or model1" until Model 3.
    recognize_digit.__doc__ = (
        "Read the handwritten digit (0-9) in a picture, such as a digit drawn on a white canvas. The picture "
        "goes in as its data, base64-encoded; it is never read from a file path or fetched from a URL.\n\n"
        "        Args:\n"
        "            image: the picture itself, as a data URL ('data:image/png;base64,...') or bare base64 of a PNG, "
        "JPEG, WebP, GIF or BMP (at most 5 MB), one digit, dark on light or light on dark. Not a file path or URL.\n"
        f"            model: {lineup.described_choices(MODELS, DEFAULT_MODEL)}.\n"
        "            invert: true to flip the detected ink and background (rarely needed: polarity is detected).\n"
        "        Returns:\n"
        '            JSON: {"digit": the most likely digit, "probabilities": 10 floats for the digits 0-9, '
        '"verdict": "digit", "unsure" or "not_a_digit", "model", "latency_ms"}; with model \'all\': '
        '{"model": "all", "predictions": {model: that JSON}, "unavailable": {model: why}, "latency_ms"}.\n')

    async def explain_digit(image: str, model: str = "model2", request: gr.Request = None) -> tuple[str, FileData]:
        """Explain why a model reads the handwritten digit in a picture as it does: where the drawing argues for the digit it reads and where for its runner-up, in words, plus a picture of it. The picture goes in as its data, base64-encoded; it is never read from a file path or fetched from a URL.

        Args:
            image: the picture itself, as a data URL ('data:image/png;base64,...') or bare base64 of a PNG, JPEG, WebP, GIF or BMP (at most 5 MB), one digit. Not a file path or URL.
            model: 'model2' (the CNN: the default), 'model1' (logistic regression, explained exactly) or another model the server has.
        Returns:
            The explanation in words, then a picture: left to right, the 28x28 image the model read, where it argues for its digit (blue) and against (orange), and the same for its runner-up.
        """
        text = _image_text(image)
        try:
            answer = await explain_api.explained(ctx, text, model, request)
        except Refused as error:
            # Decided only after the string failed as image data (400), as in recognize_digit.
            if error.status == 400 and len(text) < 1024 and _PATH.search(text):
                raise gr.Error(f"image looks like a file path ({text[:60]!r}): the server reads none of its "
                               f"files for a client; {HOW_TO_SEND}.") from None
            raise
        explanation = answer["explanation"]
        words = describe(MODELS[model].title.split(":", 1)[0], answer, explanation)
        picture = explain_api.panels([explanation["input"], *(item["image"] for item in explanation["maps"][:2])],
                                     f"{model}-explained.png")
        return words, picture

    def model_status() -> str:
        """Which digit models this server has: for each, whether it is trained and serving, its MNIST test accuracy, when and how long it trained, its file sizes, ONNX parity, and whether it is training now.

        Returns:
            JSON: {"model1": {...}, "model2": {...}}, the same as the REST API's GET /model_status.
        """
        return json.dumps(model_status_report(ctx.predictor, ctx.jobs))  # plain JSON, as REST sends it

    # queue=False: Gradio's MCP layer then calls the function in-process, not through an HTTP
    # loopback to this same server (predictions take milliseconds).
    gr.api(recognize_digit, api_name=TOOLS["recognize_digit"].lstrip("/"), queue=False)
    gr.api(explain_digit, api_name=TOOLS["explain_digit"].lstrip("/"), queue=False)
    gr.api(model_status, api_name=TOOLS["model_status"].lstrip("/"), queue=False)


def _image_text(image: Any) -> str:
    """The image data as a string; a URL is refused, and said to be one (no host is ever fetched)."""
    if not isinstance(image, str):
        raise ImageInputError(f"image must be a string: {HOW_TO_SEND}.")
    text = image.strip()
    if _URL.match(text):
        raise ImageInputError(f"image looks like a URL ({text[:60]!r}): this server fetches nothing from other "
                              f"hosts; {HOW_TO_SEND}.")
    return text


def serve_only(demo: gr.Blocks, app: FastAPI) -> None:
    """After gr.mount_gradio_app(app, demo, ..., mcp_server=True): make TOOLS the MCP server's only
    tools (their request bodies are limited with every Gradio route's: api/server.GradioBodyLimit)."""
    server = getattr(demo, "mcp_server_obj", None)
    if server is None:  # mounted without mcp_server=True, or Gradio could not start it (demo.mcp_error)
        return
    # The map both list_tools and call_tool use: a name not in it is "Unknown tool", listed or not.
    server.tool_to_endpoint = {server.tool_prefix + name: endpoint for name, endpoint in TOOLS.items()}
