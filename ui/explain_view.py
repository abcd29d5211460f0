"""The Draw tab's Explain view: why each model reads the drawing as it does (issue 19).

A `<details>` element of our own inside a gr.HTML (#explain-view): closed by default, one click or
tap on its summary opens it. While it is closed the page asks for nothing more than before. Open,
it follows the drawing like the answers do, but never delays them (ui/static/explain.js): after
each answer the canvas publishes, it POSTs the same image to /predict with "explain": true (one
request in flight; the newest drawing next), and draws per model what the answer's "explanation"
holds: the maps for the top digit, the runner-up and the one rather than the other; the two
candidates side by side when the model is not sure; a linear model's ten weight images with the
drawing's score against each; a CNN's layer activations. Every model of the registry gets a
section; what a section shows comes from its explanation, never from the model's name.
"""
from __future__ import annotations

import html

import gradio as gr

from training.registry import MODELS
from ui import views
from ui.assets import static_text, template

SUMMARY = "Explain: why does each model read this digit?"
CLOSED_HINT = "Draw a digit: each model's evidence shows here."
LEGEND = ('<span class="ds-swatch ds-for"></span> blue: the drawing argues <b>for</b> the digit · '
          '<span class="ds-swatch ds-against"></span> orange: it argues <b>against</b> · grey: the ink the model read')


def explain_template() -> str:
    sections = "".join(
        f'<section class="ds-explain-model" data-model="{html.escape(name)}" '
        f'data-short="{html.escape(views.short_title(spec.title))}" data-version="-1">'
        f'<h3>{html.escape(spec.title)}</h3>'
        f'<p class="ds-explain-caption" aria-live="polite"></p>'
        f'<div class="ds-explain-maps"></div><div class="ds-explain-extra"></div>'
        f'<p class="ds-explain-method"></p></section>'
        for name, spec in MODELS.items())
    return template(
        f'<details id="explain" class="ds-explain"><summary>{html.escape(SUMMARY)}</summary>'
        f'<p class="ds-explain-status" data-hint="{html.escape(CLOSED_HINT)}">{html.escape(CLOSED_HINT)}</p>'
        f'<p class="ds-legend">{LEGEND}</p>{sections}</details>')


def build() -> gr.HTML:
    """The view, inside the current layout (the Draw tab's answers column)."""
    return gr.HTML(None, html_template=explain_template(), js_on_load=static_text("explain.js"),
                   apply_default_css=False, head=f"<style>{static_text('explain.css')}</style>",
                   elem_id="explain-view")
