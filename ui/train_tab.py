"""The Train tab: per model, options, a Train button streaming the run, Cancel, live curves.

Thin handlers over the shared job manager; the work they do is in ui/training.py. While the
tab is open, one long-lived coroutine per model (`watch_<model>`) follows the job manager: a
run started anywhere (this page, another page, REST) is streamed and the Train button follows
it. It is woken by the job manager only, never by a timer: a hundred open tabs cost nothing
while nothing trains.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import gradio as gr

from training import lineup
from training.jobs import JobAlreadyRunningError, TrainingUnavailableError
from training.registry import MODELS, ModelSpec
from ui import followers, plots, train_personal, training, views
from ui.context import PRIVATE, AppContext

FOLLOW_HEARTBEAT = 20.0  # s: an idle follower sends an empty update this often; Gradio ends it there once the page is gone
# A tab following a run gets its progress and status every WATCH_STREAM_INTERVAL s and its curves
# and summary every WATCH_CURVES_EVERY s (and at the end). Gradio postprocesses and sends every
# update of every open tab: full views every 0.3 s (what the Train click's own stream sends) to a
# hundred tabs kept the server busy.
WATCH_STREAM_INTERVAL = 2.0  # s
WATCH_CURVES_EVERY = 10.0  # s


@dataclass
class TrainTab:
    tab: gr.Tab
    views: list[Any]  # (progress, status, accuracy, loss, summary) per model, in registry order
    buttons: list[gr.Button]  # each model's Train button, in registry order
    token: gr.Textbox

    def follow_while_open(self, ctx: AppContext, other_tabs: list[gr.Tab]) -> None:
        """Show every model's job when this tab opens and follow it until another tab is selected
        (or the page closes)."""
        per_model = [[*self.views[5 * i:5 * i + 5], button] for i, button in enumerate(self.buttons)]
        blocks = gr.context.Context.root_block  # the page being built: its queue tells whether a follower is read
        opened = self.tab.select(lambda tok: open_train_tab(ctx, tok), self.token,
                                 [output for outputs in per_model for output in outputs],
                                 api_name="open_train", show_progress="hidden", **PRIVATE)
        # No concurrency limit: coroutines holding no thread (api/server.py lets the queue run many).
        watchers = [opened.then(make_follower(spec, ctx, blocks), self.token, outputs, api_name=f"watch_{name}",
                                 concurrency_limit=None, show_progress="hidden", **PRIVATE)
                     for (name, spec), outputs in zip(MODELS.items(), per_model)]
        gr.on([tab.select for tab in other_tabs], None, None, None, cancels=watchers, api_name="close_train",
              queue=False, **PRIVATE)


def make_trainer(spec: ModelSpec, ctx: AppContext):
    # A coroutine generator: it streams on the event loop and holds no worker thread for the run.
    async def train(epochs: float | None, batch_size: float | None, learning_rate: float | None,
                    limit: float | None, token: str | None = "", include_drawings: bool = False,
                    request: gr.Request = None):
        blocked = training.training_blocked(spec, token, ctx.train_token)
        if blocked:
            gr.Warning(blocked)
            yield training.training_view(ctx.jobs.status(spec.name), f"**Not started.** {blocked}")
            return
        try:
            options = training.options_from_fields(epochs, batch_size, learning_rate, limit)
            ctx.jobs.start(spec.name, {**options, "include_drawings": True} if include_drawings else options)
        except JobAlreadyRunningError as error:
            # Started on another page (or by REST) a moment ago: follow that run; never queue another.
            gr.Info(f"{error}. Showing its progress.")
        except (TrainingUnavailableError, ValueError) as error:
            gr.Warning(str(error))
            yield training.training_view(ctx.jobs.status(spec.name), f"**Not started.** {error}")
            return
        # Issue 18: a stream holds a queue slot for the whole run: bounded per visitor and in all.
        async for view in followers.held(training.stream_job(ctx.jobs, spec.name), request,
                                         gr.context.LocalContext.blocks.get(None), followers.refused_view(ctx, spec.name),
                                         exempt=followers.trusted(ctx, token)):
            yield view

    train.__doc__ = (f"Train {spec.title} on MNIST and stream its progress: each update is (progress 0-100, "
                     f"status, accuracy curve, loss curve, summary). limit 0 trains on all 60,000 images; "
                     f"include_drawings mixes in the saved corrections.")
    return train


def make_canceller(spec: ModelSpec, ctx: AppContext):
    def cancel(token: str | None = "") -> str:
        blocked = training.training_blocked(spec, token, ctx.train_token) if ctx.train_token else None
        if blocked:
            gr.Warning(blocked)
            return f"**Not cancelled.** {blocked}"
        if ctx.jobs.cancel(spec.name):
            return "Cancelling: the previous model stays in use."
        job = ctx.jobs.status(spec.name)
        if job["running"]:  # its files are already saved (training/jobs.py): the cancel came too late
            gr.Info("Too late to cancel: the new model is already saved and in use.")
            return "**Too late to cancel:** the new model is already saved and in use."
        gr.Info(f"{views.short_title(spec.title)} is not training.")
        return training.training_view(job)[1]

    cancel.__doc__ = f"Cancel the running training of {spec.title}; returns a status message."
    return cancel


def train_button(spec: ModelSpec, ctx: AppContext, job: dict[str, Any], token: str | None) -> gr.Button:
    """The Train button as the job manager says: off while this model trains (from any page or REST)."""
    return gr.Button(interactive=not job["running"] and training.can_train(spec, token, ctx.train_token))


def make_follower(spec: ModelSpec, ctx: AppContext, blocks: Any = None):
    async def follow(token: str | None = "", request: gr.Request = None):
        """While the Train tab is open: stream this model's runs (started anywhere) and keep the Train
        button in step with the job manager. Outputs: the five views and the Train button."""
        nothing = [gr.skip()] * 5
        # Issue 18: at most followers.PER_CLIENT per visitor and TOTAL in all; it ends once no page reads it.
        async for update in followers.held(_follow(token, nothing, request), request, blocks, (*nothing, gr.skip()),
                                           exempt=followers.trusted(ctx, token)):
            yield update

    async def _follow(token: str | None, nothing: list, request: Any):
        shown = ctx.jobs.seq(spec.name)  # open_train_tab has just shown this state
        while True:
            if ctx.jobs.is_running(spec.name):
                yield (*nothing, gr.Button(interactive=False))
                curves_shown = 0.0
                async for view in training.stream_job(ctx.jobs, spec.name, WATCH_STREAM_INTERVAL):
                    now = time.monotonic()
                    if now - curves_shown >= WATCH_CURVES_EVERY or not ctx.jobs.is_running(spec.name):
                        curves_shown = now
                        yield (*view, gr.skip())
                    else:  # progress and status only: a slider value and a line of text
                        yield (*view[:2], *nothing[2:], gr.skip())
                job = ctx.jobs.status(spec.name)
                yield (*nothing, train_button(spec, ctx, job, token))
                shown = job["seq"]
            latest = await ctx.jobs.wait_for_change_async(spec.name, shown, FOLLOW_HEARTBEAT, while_idle=True)
            if latest == shown:
                # The heartbeat: where Gradio stops this once the page closed its stream, and where
                # followers.held ends it when no page ever read it (joined by fn_index and left).
                yield (*nothing, gr.skip())
            elif not ctx.jobs.is_running(spec.name):  # a run started and ended between two looks
                job = ctx.jobs.status(spec.name)
                yield (*training.training_view(job), train_button(spec, ctx, job, token))
                shown = job["seq"]

    return follow


def open_train_tab(ctx: AppContext, token: str | None = "") -> list[Any]:
    """Show each model's current or last job and its Train button's state (the followers go on from here)."""
    outputs: list[Any] = []
    for name, spec in MODELS.items():
        job = ctx.jobs.status(name)
        outputs += [*training.training_view(job), train_button(spec, ctx, job, token)]
    return outputs


def build(ctx: AppContext) -> TrainTab:
    """Lay out the Train tab inside the current gr.Blocks and wire its events."""
    with gr.Tab("Train", id="train") as train_tab:
        gr.Markdown(f"Train any of the {lineup.count_words(len(MODELS))} on MNIST right here and watch it learn. "
                    "When a run finishes, its "
                    "test accuracy is shown and the Draw tab uses the new model at once. "
                    "**Quick run** settings finish in seconds; the defaults give the best accuracy.")
        token = gr.Textbox("", label="Training token", type="password", visible=bool(ctx.train_token),
                           info="This server protects training: enter its TRAIN_TOKEN to train or cancel.",
                           elem_id="train-token")
        train_buttons, train_views = [], []
        with gr.Row(equal_height=False):
            for name, spec in MODELS.items():
                train_buttons.append(_model_panel(ctx, name, spec, token, train_views, train_tab))
        token.input(lambda tok: [gr.Button(interactive=training.can_train(s, tok, ctx.train_token))
                                 for s in MODELS.values()],
                    token, train_buttons, api_name="token_entered", queue=False, **PRIVATE)
    return TrainTab(tab=train_tab, views=train_views, buttons=train_buttons, token=token)


def _model_panel(ctx: AppContext, name: str, spec: ModelSpec, token: gr.Textbox,
                 train_views: list[Any], tab: gr.Tab) -> gr.Button:
    """One model's options, buttons, progress and curves; returns its Train button."""
    defaults, quick = spec.defaults(), spec.quick()
    with gr.Column(variant="panel", min_width=360):
        gr.Markdown(f"### {spec.title}\n{spec.description}")
        if spec.unavailable_reason():
            gr.Markdown(f"**Training is off here.** {spec.unavailable_reason()}")
        with gr.Row():
            fields = [
                gr.Number(defaults.epochs, label="Epochs", precision=0, elem_id=f"epochs-{name}"),
                gr.Number(defaults.batch_size, label="Batch size", precision=0, elem_id=f"batch-{name}"),
                gr.Number(defaults.learning_rate, label="Learning rate", elem_id=f"lr-{name}"),
                gr.Number(defaults.limit or 0, label="Training images (0 = all 60,000)", precision=0,
                          elem_id=f"limit-{name}"),
            ]
        with gr.Row():
            quick_btn = gr.Button("Quick run settings", size="sm", elem_id=f"quick-{name}")
            defaults_btn = gr.Button("Default settings", size="sm", elem_id=f"defaults-{name}")
        with gr.Row():
            train_btn = gr.Button(f"Train {views.short_title(spec.title)}", variant="primary",
                                  interactive=training.can_train(spec, None, ctx.train_token),
                                  elem_id=f"train-{name}")
            cancel_btn = gr.Button("Cancel", variant="stop", elem_id=f"cancel-{name}")
        # Issue 12: "Include my drawings (N)", Fine-tune, what a run replaces, restore (ui/train_personal.py).
        personal = train_personal.build(ctx, name) if ctx.versions is not None else None
        view = [
            gr.Slider(0, 100, value=0, step=0.1, label="Progress", interactive=False, buttons=[],
                      elem_id=f"progress-{name}"),
            gr.Markdown("Not started", label="Status", elem_id=f"status-{name}"),
            gr.LinePlot(plots.empty_curve(plots.ACCURACY_SERIES), x="epoch", y="value",
                        color="series", color_map=plots.CURVE_COLORS, colors_in_legend=[],
                        y_lim=[0, 1], title=plots.ACCURACY_TITLE, x_title="Epoch", y_title="Accuracy",
                        height=220, label="Accuracy curve", show_label=False, elem_id=f"accuracy-{name}"),
            gr.LinePlot(plots.empty_curve(plots.LOSS_SERIES), x="epoch", y="value", color="series",
                        color_map=plots.CURVE_COLORS, colors_in_legend=[], title=plots.LOSS_TITLE,
                        x_title="Epoch", y_title="Cross-entropy", height=220, label="Loss curve",
                        show_label=False, elem_id=f"loss-{name}"),
            gr.Markdown("", label="Summary", elem_id=f"summary-{name}"),
        ]
    train_views += view

    quick_btn.click(lambda q=quick: training.option_values(q), None, fields, queue=False,
                    api_name=f"quick_settings_{name}", **PRIVATE)
    defaults_btn.click(lambda d=defaults: training.option_values(d), None, fields, queue=False,
                       api_name=f"default_settings_{name}", **PRIVATE)
    # Lock the button, stream the run, then unlock. Only the middle step is the public `train_<model>`
    # endpoint. No concurrency limit: the job manager runs one job per model, and a click while the
    # model trains (another page, REST) follows that job at once. A limit of 1 queued such a click
    # behind the running stream, and it started a second, unwanted run when the first ended.
    # The stream is a coroutine generator: it holds no worker thread.
    run = train_btn.click(lambda: gr.Button(interactive=False), None, train_btn,
                          queue=False, show_progress="hidden", api_name=f"lock_{name}", **PRIVATE).then(
        make_trainer(spec, ctx), [*fields, token, *([personal.include] if personal else [])], view,
        api_name=f"train_{name}", concurrency_limit=None, show_progress="hidden").then(
        lambda tok, s=spec: train_button(s, ctx, ctx.jobs.status(s.name), tok),
        token, train_btn, queue=False, show_progress="hidden", api_name=f"unlock_{name}", **PRIVATE)
    if personal is not None:
        train_btn.click(lambda: train_personal.remember_serving(ctx, name), None, personal.previous, queue=False,
                        api_name=f"remember_version_{name}", **PRIVATE)
        run.then(lambda previous: train_personal.after_run(ctx, name, previous), personal.previous,
                 [personal.restore, personal.include, personal.replaces], api_name=f"after_train_{name}",
                 show_progress="hidden", **PRIVATE)
        train_personal.wire(ctx, spec, personal, token, view, train_btn, tab)
    cancel_btn.click(make_canceller(spec, ctx), token, view[1], api_name=f"cancel_{name}")
    return train_btn
