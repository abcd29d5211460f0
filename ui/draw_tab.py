"""The Draw tab: a canvas or an upload in, both models' answers and the 28x28 model input out.

Thin handlers over the shared predictor; the work they do is in ui/draw.py.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import gradio as gr
from PIL import Image

from inference.image_io import ImageInputError
from training.registry import MODELS
from ui import draw
from ui.context import PREDICT_QUEUE, PRIVATE, AppContext

CANVAS_SIDE = 280  # px; the drawing is reduced to 28x28 anyway
# A white background makes the sketchpad start in draw mode (no "select the draw tool"
# click first) and keeps the black ink visible in dark mode.
BLANK_CANVAS = {"background": Image.new("RGB", (CANVAS_SIDE, CANVAS_SIDE), "white"), "layers": [], "composite": None}
BRUSH_SIZES = (5, 30, 14)  # min, max, default (px on the 280 px canvas)
MODEL_CHOICES = [*[(spec.title, name) for name, spec in MODELS.items()], ("Both, side by side", draw.BOTH)]
DRAW_HINT = "Draw a digit (0–9) in the white box: the models answer as you draw."
UPLOAD_HINT = "Upload a picture of one digit (PNG, JPEG, WebP, GIF or BMP)."


@dataclass
class DrawTab:
    tab: gr.Tab


def brush(size: float) -> gr.Brush:
    return gr.Brush(colors=["#000000"], default_color="#000000", color_mode="fixed", default_size=int(size))


def build(ctx: AppContext) -> DrawTab:
    """Lay out the Draw tab inside the current gr.Blocks and wire its events."""

    def predict_drawing(drawing: dict | None, invert: bool, choice: str) -> list[Any]:
        return draw.prediction_outputs(ctx.predictor, drawing, invert, choice, DRAW_HINT)

    def predict_upload(upload: Any, invert: bool, choice: str) -> list[Any]:
        try:
            path = draw.uploaded_path(upload)
        except ImageInputError as error:
            gr.Warning(str(error))
            return draw.empty_outputs(f"**Cannot read that image.** {error}")
        return draw.prediction_outputs(ctx.predictor, path, invert, choice, UPLOAD_HINT)

    # Invert or the model choice changed: predict again from whichever input is showing.
    # Two handlers, because the upload is read raw (preprocess=False) and the drawing is not.
    def repredict_drawing(source: str, drawing: Any, invert: bool, choice: str) -> list[Any]:
        return predict_drawing(drawing, invert, choice) if source == "draw" else [gr.skip()] * (2 + 2 * len(MODELS))

    def repredict_upload(source: str, upload: Any, invert: bool, choice: str) -> list[Any]:
        return predict_upload(upload, invert, choice) if source == "upload" else [gr.skip()] * (2 + 2 * len(MODELS))

    def clear_drawing() -> list[Any]:
        return [BLANK_CANVAS, *draw.empty_outputs(DRAW_HINT)]

    with gr.Tab("Draw", id="draw") as draw_tab:
        source = gr.State("draw")  # which input the results come from: "draw" or "upload"
        with gr.Row(equal_height=False):
            with gr.Column(scale=5, min_width=320):
                with gr.Tabs():
                    with gr.Tab("Draw", id="draw-input") as draw_input_tab:
                        sketch = gr.Sketchpad(
                            value=BLANK_CANVAS, canvas_size=(CANVAS_SIDE, CANVAS_SIDE), type="numpy",
                            brush=brush(BRUSH_SIZES[2]), layers=False, transforms=(), show_label=False,
                            buttons=[], elem_id="sketchpad")
                        with gr.Row():
                            brush_size = gr.Slider(*BRUSH_SIZES[:2], value=BRUSH_SIZES[2], step=1, scale=3,
                                                   label="Brush size (px)", buttons=[], elem_id="brush-size")
                            clear_btn = gr.Button("Clear", scale=1, elem_id="clear")
                    with gr.Tab("Upload", id="upload-input") as upload_input_tab:
                        upload = gr.Image(type="filepath", image_mode=None, sources=["upload", "clipboard"],
                                          label="A picture of one digit", height=CANVAS_SIDE + 60,
                                          elem_id="upload")
                choice = gr.Radio(MODEL_CHOICES, value=draw.BOTH, label="Models", elem_id="model-choice")
                invert = gr.Checkbox(False, label="Invert colours (when the ink is lighter than the "
                                                  "background and the answer looks wrong)", elem_id="invert")
                predict_btn = gr.Button("Predict", variant="primary", elem_id="predict")
            with gr.Column(scale=6, min_width=320):
                verdict = gr.Markdown(DRAW_HINT, elem_id="verdict")
                result_outputs, result_columns = [], []
                with gr.Row(equal_height=True):
                    for name, spec in MODELS.items():
                        with gr.Column(min_width=200) as column:
                            result_outputs.append(gr.Label(num_top_classes=3, label=spec.title,
                                                           elem_id=f"probabilities-{name}"))
                            result_outputs.append(gr.Markdown(elem_id=f"caption-{name}",
                                                              elem_classes="model-caption"))
                        result_columns.append(column)
                gr.Markdown("**What the models see:** the 28×28 input, enlarged (white ink on black, "
                            "centred like the MNIST training images).")
                model_input = gr.Image(show_label=False, interactive=False, height=224, width=224, buttons=[],
                                       format="png", elem_id="model-input")  # lossless: crisp pixels
        draw_outputs = [verdict, *result_outputs, model_input]

        # Live after every stroke; "always_last" lets strokes made during a prediction
        # collapse into one more call instead of queueing up.
        sketch.input(predict_drawing, [sketch, invert, choice], draw_outputs, api_name="predict_drawing",
                     trigger_mode="always_last", show_progress="hidden", **PREDICT_QUEUE, **PRIVATE)
        predict_btn.click(predict_drawing, [sketch, invert, choice], draw_outputs, api_name="predict_button",
                          show_progress="minimal", **PREDICT_QUEUE, **PRIVATE)
        # Raw payload (preprocess=False): a broken file becomes a warning from our checks.
        upload.upload(predict_upload, [upload, invert, choice], draw_outputs, api_name="predict_upload",
                      preprocess=False, **PREDICT_QUEUE, **PRIVATE)
        gr.on([clear_btn.click, sketch.clear], clear_drawing, None, [sketch, *draw_outputs], api_name="clear",
              queue=False, show_progress="hidden", **PRIVATE)
        brush_size.change(lambda size: gr.Sketchpad(brush=brush(size)), brush_size, sketch, api_name="brush_size",
                          queue=False, show_progress="hidden", **PRIVATE)
        draw_input_tab.select(lambda: "draw", None, source, api_name="show_drawing", queue=False, **PRIVATE).then(
            predict_drawing, [sketch, invert, choice], draw_outputs, show_progress="hidden", **PREDICT_QUEUE,
            **PRIVATE)
        upload_input_tab.select(lambda: "upload", None, source, api_name="show_upload", queue=False,
                                **PRIVATE).then(
            predict_upload, [upload, invert, choice], draw_outputs, preprocess=False, show_progress="hidden",
            **PREDICT_QUEUE, **PRIVATE)
        choice.change(lambda ch: [gr.Column(visible=name in draw.chosen_models(ch)) for name in MODELS], choice,
                      result_columns, api_name="show_models", queue=False, **PRIVATE)
        gr.on([invert.change, choice.change], repredict_drawing, [source, sketch, invert, choice], draw_outputs,
              api_name="repredict_drawing", show_progress="hidden", **PREDICT_QUEUE, **PRIVATE)
        gr.on([invert.change, choice.change], repredict_upload, [source, upload, invert, choice], draw_outputs,
              api_name="repredict_upload", preprocess=False, show_progress="hidden", **PREDICT_QUEUE, **PRIVATE)
    return DrawTab(tab=draw_tab)
