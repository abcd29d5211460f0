"""The documented gradio_client endpoints without a widget of their own: predict, explain, model_status, env.

No `from __future__ import annotations`: gr.api() reads these functions' type hints at
runtime to document their inputs and outputs on the "Use via API" page.
"""
import base64
import json
from typing import Any

import gradio as gr
from gradio.data_classes import FileData

from inference.image_io import ImageInputError, file_data_url
from inference.status import environment, model_status_report
from training import lineup
from training.registry import MODELS
from ui import draw, explain_api, mcp_tools
from ui.context import PREDICT_QUEUE, AppContext
from ui.refusals import Refused, refused


EXPLAIN_CONCURRENCY = 2


def register(ctx: AppContext) -> None:
    """Add the endpoints to the Blocks being built (listed first on the "Use via API" page)."""

    async def predict(image: FileData, model: str = "model2", invert: bool = False) -> tuple[int, list[float], str]:
        """Classify a picture of one handwritten digit with one of the models (named below, from the registry).
        Returns (digit, probabilities of the digits 0-9, verdict): the verdict is "digit", "unsure"
        (the top two are close: look at the probabilities) or "not_a_digit" (letters, scribbles, lines)."""
        if not isinstance(model, str) or model not in MODELS:
            raise Refused(f"Unknown model {str(model)[:40]!r}: choose one of {', '.join(MODELS)}.", 422)
        try:
            path = draw.uploaded_path(image)
        except ImageInputError as error:
            raise refused(error) from None
        if path is None:
            raise Refused("No image was given: send a picture of one digit.", 422)
        # Issue 18 item 5: through the lanes REST uses (inference/lanes.py), header checked before decoding
        # and a large image in the one-at-a-time lane. Uploads are at most 5 MB (server.mount_ui).
        try:
            data = file_data_url(path)
        except ImageInputError as error:
            raise refused(error) from None
        status, body = await ctx.lanes.answer(data, model, bool(invert))
        payload = json.loads(body)
        if status != 200:
            raise Refused(payload["error"], status)
        return payload["prediction"], payload["probabilities"], payload["verdict"]

    async def explain(image: FileData, model: str = "model2", request: gr.Request = None
                      ) -> tuple[FileData, FileData, FileData, dict[str, Any]]:
        """Why a model reads a picture of one digit as it does. Returns three maps over the 28x28 image the
        model read (PNG, enlarged 5x; blue argues for the digit, orange against): its top digit, its runner-up,
        and the top digit rather than the runner-up; then the numbers, as REST /predict answers with
        "explain": true (each map's 28x28 "values", positive = evidence for the digit, and what they sum to)."""
        try:
            path = draw.uploaded_path(image)
        except ImageInputError as error:
            raise refused(error) from None
        if path is None:
            raise Refused("Send a picture of one digit.", 422)
        # Uploads are at most 5 MB (server.mount_ui's max_file_size): the lane takes the image as REST does.
        data = "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode("ascii")
        answer = await explain_api.explained(ctx, data, model, request)
        maps = answer["explanation"]["maps"]
        names = (f"{model}-{maps[0]['digit']}.png", f"{model}-{maps[1]['digit']}.png",
                 f"{model}-{maps[2]['digit']}-not-{maps[2]['against']}.png")
        return (*(explain_api.png_file(item["image"], name) for item, name in zip(maps, names)),
                explain_api.without_images(answer))

    def model_status() -> dict[str, Any]:
        """Every model: trained, serving, test accuracy, when and how long it trained, file sizes, ONNX parity,
        and whether it is training now (the same as GET /model_status)."""
        return model_status_report(ctx.predictor, ctx.jobs)

    def env() -> dict[str, Any]:
        """The runtime environment (the same as GET /env): Python, platform, library versions, TensorFlow,
        prediction workers."""
        return environment(ctx.pool, ctx.explain_lane, ctx.drawings)

    # The models named from the registry (issue 21 item 4: it said "model1" or "model2" until Model 3).
    predict.__doc__ = predict.__doc__.replace("one of the models (named below, from the registry)",
                                              lineup.model_choices(MODELS, with_all=False))
    gr.api(predict, api_name="predict", **PREDICT_QUEUE)
    # The lane (inference/explain/lane.py) bounds explanations; this only keeps them off the predictions' slots.
    gr.api(explain, api_name="explain", concurrency_limit=EXPLAIN_CONCURRENCY, concurrency_id="explain")
    gr.api(model_status, api_name="model_status")
    gr.api(env, api_name="env")
    mcp_tools.register(ctx)  # recognize_digit and the MCP model_status (ui/mcp_tools.py)
