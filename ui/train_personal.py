"""The Train tab's part of issue 12, per model: "Include my drawings (N)", a Fine-tune button, what a run
will replace, and after a run an offer to serve the previous version again.

Thin handlers over training/personal.py (through the job manager's options) and
training/model_versions.py; ui/train_tab.py lays these out in each model's panel.
"""
from dataclasses import dataclass
from typing import Any

import gradio as gr

from drawings.store import StoreError
from ui import followers, training, versions_panel
from ui.context import PRIVATE, AppContext

FINE_TUNE = {"include_drawings": True, "fine_tune": True}


@dataclass
class PersonalControls:
    include: gr.Checkbox
    fine_tune: gr.Button
    replaces: gr.Markdown
    restore: gr.Button
    previous: gr.State  # the version serving when this page started a run


def build(ctx: AppContext, name: str) -> PersonalControls:
    spec = ctx.jobs.models[name]
    # Issue 21 item 5: a model whose trainer does not honour an option shows it disabled, saying so
    # (and the job manager refuses it in words if it is asked anyway, through the API).
    mixes, tunes = "include_drawings" in spec.supports, "fine_tune" in spec.supports
    with gr.Row():
        include = gr.Checkbox(False, label=include_label(ctx), elem_id=f"include-drawings-{name}", interactive=mixes,
                              info="Mix the corrected drawings (Drawings tab) into the training data." if mixes
                              else f"{spec.title}'s trainer does not support mixing in the drawings.")
        fine_tune = gr.Button("Fine-tune on my drawings" if tunes else "Fine-tune: not supported by this trainer",
                              size="sm", elem_id=f"fine-tune-{name}", interactive=tunes)
    replaces = gr.Markdown(elem_id=f"replaces-{name}")
    restore = gr.Button(visible=False, size="sm", variant="secondary", elem_id=f"restore-{name}")
    return PersonalControls(include, fine_tune, replaces, restore, gr.State(None))


def include_label(ctx: AppContext) -> str:
    try:
        count = ctx.drawings.count() if ctx.drawings is not None else 0
    except StoreError:
        count = 0
    return f"Include my drawings ({count})"


def panel_values(ctx: AppContext, name: str) -> list[Any]:
    """(checkbox label, replaces line): refreshed when the tab opens and after each run."""
    return [gr.Checkbox(label=include_label(ctx)), versions_panel.replaces_line(ctx, name)]


def remember_serving(ctx: AppContext, name: str) -> int | None:
    return ctx.versions.serving(name)


def after_run(ctx: AppContext, name: str, previous: int | None) -> list[Any]:
    """Offer to serve the version that served before the run, when the run replaced it."""
    now = ctx.versions.serving(name)
    offer = previous is not None and now is not None and now != previous
    restore = gr.Button(f"Restore version {previous} (the model before this run)" if offer else "", visible=offer)
    return [restore, *panel_values(ctx, name)]


def restore(ctx: AppContext, name: str, previous: int | None, token: str | None) -> list[Any]:
    problem = versions_panel.serve(ctx, name, previous, token)
    if problem is None:
        gr.Info(f"Version {previous} serves again.")
    return [gr.Button(visible=problem is not None), *panel_values(ctx, name)]


def wire(ctx: AppContext, spec, controls: PersonalControls, token: gr.Textbox, view: list[Any],
         train_btn: gr.Button, tab: gr.Tab) -> None:
    """The Fine-tune run (streamed into the same view as Train, one run per model at a time), the
    restore offer, and the panel's refresh when the tab opens."""
    name = spec.name
    panel = [controls.include, controls.replaces]

    async def fine_tune_run(tok: str | None, request: gr.Request = None):  # a coroutine generator: no thread held
        blocked = training.training_blocked(spec, tok, ctx.train_token)
        if blocked:
            gr.Warning(blocked)
            yield training.training_view(ctx.jobs.status(name), f"**Not started.** {blocked}")
            return
        try:
            ctx.jobs.start(name, FINE_TUNE)
        except Exception as error:  # already running, unavailable, bad options: the job manager's words
            gr.Warning(str(error))
            yield training.training_view(ctx.jobs.status(name), f"**Not started.** {error}")
            return
        # Issue 18: like train_<model>'s stream, bounded per visitor and in all (ui/followers.py).
        async for view in followers.held(training.stream_job(ctx.jobs, name), request,
                                         gr.context.LocalContext.blocks.get(None), followers.refused_view(ctx, name),
                                         exempt=followers.trusted(ctx, tok)):
            yield view

    fine_tune_run.__doc__ = (f"Fine-tune the serving {spec.title} on the saved drawings (and an MNIST sample) "
                             "and stream its progress, like train_<model>.")
    controls.fine_tune.click(
        lambda: (gr.Button(interactive=False), gr.Button(interactive=False), remember_serving(ctx, name)),
        None, [controls.fine_tune, train_btn, controls.previous], queue=False, show_progress="hidden",
        api_name=f"lock_fine_tune_{name}", **PRIVATE).then(
        fine_tune_run, token, view, api_name=f"fine_tune_{name}", concurrency_limit=None,
        show_progress="hidden").then(
        lambda tok: (gr.Button(interactive=True), gr.Button(interactive=training.can_train(spec, tok, ctx.train_token))),
        token, [controls.fine_tune, train_btn], queue=False, show_progress="hidden",
        api_name=f"unlock_fine_tune_{name}", **PRIVATE).then(
        lambda previous: after_run(ctx, name, previous), controls.previous, [controls.restore, *panel],
        api_name=f"after_fine_tune_{name}", show_progress="hidden", **PRIVATE)
    controls.restore.click(lambda previous, tok: restore(ctx, name, previous, tok), [controls.previous, token],
                           [controls.restore, *panel], api_name=f"restore_{name}", **PRIVATE)
    tab.select(lambda: panel_values(ctx, name), None, panel, api_name=f"personal_panel_{name}",
               show_progress="hidden", **PRIVATE)
