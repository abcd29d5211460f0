"""The Models tab: a card per model, its confusion matrix on MNIST test, and the environment."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import gradio as gr

from inference.predictor import ModelUnavailableError
from inference.status import environment, model_status_report
from training.registry import MODELS, ModelSpec
from ui import plots, versions_panel, views
from ui.context import PRIVATE, AppContext


@dataclass
class ModelsTab:
    tab: gr.Tab


def make_confusion(spec: ModelSpec, ctx: AppContext):
    def confusion() -> tuple[Any, str]:
        missing = ctx.confusions.mnist_missing_reason()
        if missing:
            return None, missing
        try:
            result = ctx.confusions.get(spec.name)
        except ModelUnavailableError as error:
            return None, f"No confusion matrix: {error.reason}."
        title = f"{views.short_title(spec.title)}: {result.accuracy:.2%} of {result.samples:,} correct"
        return (plots.confusion_figure(result.matrix, title),
                f"Measured now through ONNX Runtime on the {result.samples:,} MNIST test images: "
                f"**{result.accuracy:.2%}** correct. Rows: the true digit; columns: what the model read.")

    return confusion


def build(ctx: AppContext) -> ModelsTab:
    """Lay out the Models tab inside the current gr.Blocks and wire its events."""

    def refresh_models() -> list[Any]:
        status = model_status_report(ctx.predictor, ctx.jobs)
        return [*[views.model_card(status[name]) for name in MODELS], environment(ctx.pool, ctx.explain_lane)]

    with gr.Tab("Models", id="models") as models_tab:
        gr.Markdown("How each model was trained and how well it does. The confusion matrices run the "
                    "10,000 MNIST test images through the same ONNX models that serve the Draw tab.")
        cards, confusion_outputs = [], []
        with gr.Row(equal_height=False):
            for name, spec in MODELS.items():
                with gr.Column(variant="panel", min_width=360):
                    cards.append(gr.Markdown(elem_id=f"card-{name}"))
                    confusion_outputs.append([gr.Plot(show_label=False, elem_id=f"confusion-{name}"),
                                              gr.Markdown(elem_id=f"confusion-note-{name}")])
        with gr.Accordion("Environment (the same as GET /env)", open=False):
            environment_json = gr.JSON(show_label=False)
        refresh_btn = gr.Button("Refresh", size="sm")
        shown = gr.on([models_tab.select, refresh_btn.click], refresh_models, None, [*cards, environment_json],
                      api_name="refresh_models", **PRIVATE)
        for (name, spec), outputs in zip(MODELS.items(), confusion_outputs):
            shown.then(make_confusion(spec, ctx), None, outputs, api_name=f"confusion_{name}", **PRIVATE)
        if ctx.versions is not None:  # issue 12: each model's kept versions, a Serve button per version
            versions_panel.build_models_section(ctx, models_tab, refresh_btn, cards)
    return ModelsTab(tab=models_tab)
