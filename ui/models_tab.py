"""The Models tab: a card per model with, for the version being served, its confusion matrix on
MNIST test, what it has learned (weight images or first-layer filters) and the test digits it gets
most confidently wrong (ui/learned_view.py); and the environment."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import gradio as gr

from inference.status import environment, model_status_report
from training.registry import MODELS, ModelSpec
from ui import learned_view, versions_panel, views
from ui.context import PRIVATE, AppContext


@dataclass
class ModelsTab:
    tab: gr.Tab


def make_figures(spec: ModelSpec, rendered: learned_view.RenderedFigures) -> Callable[[], list[Any]]:
    def model_figures() -> list[Any]:
        shown = rendered.get(spec)
        return [gr.Image(shown.confusion, visible=shown.confusion is not None), shown.confusion_note,
                gr.Image(shown.learned, visible=shown.learned is not None), shown.learned_note,
                gr.Image(shown.mistakes, visible=shown.mistakes is not None), shown.mistakes_note]

    return model_figures


def figure_image(elem_id: str) -> gr.Image:
    """A drawn figure: PNG (its thin lines and pixel tiles stay sharp), enlarged on demand, not editable."""
    return gr.Image(show_label=False, type="pil", format="png", interactive=False,
                    buttons=["download", "fullscreen"], elem_id=elem_id)


def build(ctx: AppContext) -> ModelsTab:
    """Lay out the Models tab inside the current gr.Blocks and wire its events."""

    def refresh_models() -> list[Any]:
        status = model_status_report(ctx.predictor, ctx.jobs)
        return [*[views.model_card(status[name]) for name in MODELS], environment(ctx.pool, ctx.explain_lane, ctx.drawings)]

    with gr.Tab("Models", id="models") as models_tab:
        gr.Markdown("How each model was trained, how well it does and what it has learned, for the version being "
                    "served. The confusion matrices and mistakes come from running the ONNX files that serve the "
                    "Draw tab on the 10,000 MNIST test images.")
        cards, figure_outputs = [], {}
        with gr.Row(equal_height=False):
            for name, spec in MODELS.items():
                with gr.Column(variant="panel", min_width=360):
                    cards.append(gr.Markdown(elem_id=f"card-{name}"))
                    figure_outputs[name] = [
                        figure_image(f"confusion-{name}"), gr.Markdown(elem_id=f"confusion-note-{name}"),
                        figure_image(f"learned-{name}"), gr.Markdown(elem_id=f"learned-note-{name}"),
                        figure_image(f"mistakes-{name}"), gr.Markdown(elem_id=f"mistakes-note-{name}"),
                    ]
        with gr.Accordion("Environment (the same as GET /env)", open=False):
            environment_json = gr.JSON(show_label=False)
        refresh_btn = gr.Button("Refresh", size="sm", elem_id="models-refresh")
        shown = gr.on([models_tab.select, refresh_btn.click], refresh_models, None, [*cards, environment_json],
                      api_name="refresh_models", **PRIVATE)
        rendered = learned_view.RenderedFigures(ctx.insights)
        refreshers = {name: (make_figures(spec, rendered), figure_outputs[name]) for name, spec in MODELS.items()}
        for name, (refresh, outputs) in refreshers.items():
            shown.then(refresh, None, outputs, api_name=f"figures_{name}", **PRIVATE)
        if ctx.versions is not None:  # issue 12: each model's kept versions, a Serve button per version
            versions_panel.build_models_section(ctx, models_tab, refresh_btn, cards, refreshers)
    return ModelsTab(tab=models_tab)
