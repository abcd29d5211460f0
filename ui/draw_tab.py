"""The Draw tab: a canvas of our own (gr.HTML) that asks REST /predict itself, and an upload.

Why not a Gradio event per stroke: the Sketchpad path cost 960 ms from pen-up to answer
(21 file uploads per stroke, then a queue join and an event stream) and ~26 ms of server
CPU per prediction. The canvas (ui/static/canvas.js) POSTs its 280x280 PNG as a data URL
to /predict with "model": "all" and "include_input": true, a few KB in one request that
the server spreads over its prediction workers (inference/pool.py), and the page renders
both answers itself (ui/static/answers.js): see benchmarks/browser/draw_tab.py for the figures.

Components and their values (what Python events get as input):
- `sketch` (gr.HTML #sketchpad): {"image": PNG data URL of the 280x280 canvas, or None when
  blank, "answer": the /predict JSON for that image (or None), "version": the drawing's
  version (it grows with every change)}; None before the first stroke. The image comes
  from the browser: a handler must treat it as untrusted input (inference/image_io.py).
- `answers` (gr.HTML #answers): {"status": HTTP-like status, "answer": /predict JSON}; an
  event that outputs this shape (the upload does) is shown like a canvas answer.
- `corrections` (gr.Row #corrections): right under the answers, the "Right" / "Wrong? It's a ..."
  buttons (ui/corrections.py), whose event saves `sketch` with its label.
"""
from __future__ import annotations

import html
from dataclasses import dataclass
from typing import Any

import gradio as gr

from inference.image_io import ImageInputError
from training.registry import MODELS
from ui import corrections as corrections_ui
from ui import draw, explain_view, views
from ui.assets import static_text, template
from ui.context import PREDICT_QUEUE, PRIVATE, AppContext

DRAW_HINT = "Draw a digit (0–9) in the box: the models answer as you draw."
PREVIEW_TEXT = ("What the models see: the 28×28 input, enlarged (white ink on black, "
                "centred like the MNIST training images).")


@dataclass
class DrawTab:
    tab: gr.Tab


def _title_parts(title: str) -> str:
    """"Model 1: logistic regression" as its short part and the rest, so a phone can show "Model 1" only
    (canvas.css): the whole title wrapped to three lines in a third of 390 px and pushed the digit down."""
    short = views.short_title(title)
    return (f'<span class="ds-title-short">{html.escape(short)}</span>'
            f'<span class="ds-title-rest">{html.escape(title[len(short):])}</span>')


def answers_template() -> str:
    """The verdict line, one card per model of the registry, and the model-input preview."""
    cards = "".join(
        f'<section class="ds-card" data-model="{html.escape(name)}" '
        f'data-short="{html.escape(views.short_title(spec.title))}">'
        f'<header><span class="ds-digit" aria-label="top digit">–</span><h3>{_title_parts(spec.title)}</h3></header>'
        f'<p id="caption-{html.escape(name)}" class="ds-caption" data-version="0"></p>'
        f'<div id="probabilities-{html.escape(name)}" class="ds-probabilities" '
        f'aria-label="probability of each digit"></div></section>'
        for name, spec in MODELS.items())
    return template(
        f'<div class="ds-answers"><div id="verdict" class="ds-verdict" aria-live="polite" '
        f'data-hint="{html.escape(DRAW_HINT)}">{html.escape(DRAW_HINT)}</div>'
        f'<div class="ds-cards">{cards}</div>'
        f'<figure id="model-input"><img alt="The 28×28 image the models read" data-version="0">'
        f'<figcaption>{html.escape(PREVIEW_TEXT)}</figcaption></figure></div>')


def build(ctx: AppContext) -> DrawTab:
    """Lay out the Draw tab inside the current gr.Blocks and wire its events."""

    async def predict_upload(upload: Any) -> dict[str, Any]:
        try:
            path = draw.uploaded_path(upload)
        except ImageInputError as error:
            message = draw.UNREADABLE + str(error)
            gr.Warning(message)
            return {"status": 400, "answer": {"error": message}}
        value = await draw.upload_answer(ctx.lanes, path)
        if value["answer"] and "error" in value["answer"]:
            gr.Warning(value["answer"]["error"])
        return value

    with gr.Tab("Draw", id="draw") as draw_tab:
        with gr.Row(equal_height=False, elem_id="draw-row"):
            with gr.Column(scale=5, min_width=300):
                # The CSS of both panels goes into <head> once, with the canvas.
                sketch = gr.HTML(None, html_template=template(static_text("canvas.html")),
                                 js_on_load=static_text("canvas.js"), apply_default_css=False,
                                 head=f"<style>{static_text('canvas.css')}</style>", elem_id="sketchpad")
            with gr.Column(scale=6, min_width=300):
                answers = gr.HTML(None, html_template=answers_template(), js_on_load=static_text("answers.js"),
                                  apply_default_css=False, elem_id="answers")
                with gr.Row(elem_id="corrections"):
                    corrections_ui.build(ctx, sketch)  # "Right" / "Wrong? It's a ...": ui/corrections.py
                explain_view.build()  # "Explain": closed until opened (ui/explain_view.py, issue 19)
                with gr.Accordion("Or upload a picture of one digit", open=False, elem_id="upload-panel"):
                    upload = gr.Image(type="filepath", image_mode=None, sources=["upload", "clipboard"],
                                      label="A picture of one digit (PNG, JPEG, WebP, GIF or BMP)", height=240,
                                      elem_id="upload")
        # Raw payload (preprocess=False): a broken file becomes a message in the page's words.
        upload.upload(predict_upload, upload, answers, api_name="predict_upload", preprocess=False,
                      show_progress="minimal", **PREDICT_QUEUE, **PRIVATE)
        upload.clear(lambda: {"status": 0, "answer": None}, None, answers, api_name="clear_upload", queue=False,
                     **PRIVATE)
    return DrawTab(tab=draw_tab)
