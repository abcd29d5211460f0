"""Digit Studio: draw a digit, see two models classify it, train them live.

`python app.py` serves the Gradio UI at / and the REST API beside it
(on $GRADIO_SERVER_NAME:$GRADIO_SERVER_PORT, default 127.0.0.1:7860).
"""
# No `from __future__ import annotations`: gr.api() reads the API functions' type hints
# at runtime to document their inputs and outputs on the "Use via API" page.
import os
from typing import Any

from inference import privacy

privacy.apply()  # before Gradio is imported: no analytics, no telemetry (see inference/privacy.py)

import gradio as gr  # noqa: E402
from gradio.data_classes import FileData
from PIL import Image

from inference.image_io import ImageInputError
from inference.pool import PredictionPool
from inference.predictor import ModelUnavailableError, Predictor
from inference.preprocess import preprocess
from inference.rest import create_api, environment, model_status_report
from training.jobs import JobAlreadyRunningError, JobManager, TrainingUnavailableError
from training.registry import MODELS, ModelSpec
from ui import draw, plots, training, views
from ui.confusion import ConfusionMatrices
import server

# One predictor and one job manager, shared by the UI and the REST API: training
# started from either shows in both, and a finished job is served at once.
predictor = Predictor()
jobs = JobManager(on_success=lambda name, result: predictor.reload(name))
# REST /predict spreads overlapping requests over worker processes (PREDICT_WORKERS; see
# inference/pool.py); they start with the server, not at import.
pool = PredictionPool(predictor.exports_dir)

# =============================================================================
# Gradio UI: the Draw, Train and Models tabs, and the gradio_client API.
# Thin handlers over the shared `predictor` and `jobs`; the work they do is in ui/.
# =============================================================================

TRAIN_TOKEN = os.environ.get("TRAIN_TOKEN") or None  # when set, training (UI and REST) needs it
CANVAS_SIDE = 280  # px; the drawing is reduced to 28x28 anyway
# A white background makes the sketchpad start in draw mode (no "select the draw tool"
# click first) and keeps the black ink visible in dark mode.
BLANK_CANVAS = {"background": Image.new("RGB", (CANVAS_SIDE, CANVAS_SIDE), "white"), "layers": [], "composite": None}
BRUSH_SIZES = (5, 30, 14)  # min, max, default (px on the 280 px canvas)
MODEL_CHOICES = [*[(spec.title, name) for name, spec in MODELS.items()], ("Both, side by side", draw.BOTH)]
DRAW_HINT = "Draw a digit (0–9) in the white box: the models answer as you draw."
UPLOAD_HINT = "Upload a picture of one digit (PNG, JPEG, WebP, GIF or BMP)."
PREDICT_CONCURRENCY = 4  # predictions take milliseconds: several at once keep many users fast
WATCH_EVERY = 2.0  # s: how often an open Train tab looks for a job started elsewhere (REST, another page)

confusions = ConfusionMatrices(predictor)


def brush(size: float) -> gr.Brush:
    return gr.Brush(colors=["#000000"], default_color="#000000", color_mode="fixed", default_size=int(size))


# -- Draw handlers -------------------------------------------------------------

def predict_drawing(drawing: dict | None, invert: bool, choice: str) -> list[Any]:
    return draw.prediction_outputs(predictor, drawing, invert, choice, DRAW_HINT)


def predict_upload(upload: Any, invert: bool, choice: str) -> list[Any]:
    try:
        path = draw.uploaded_path(upload)
    except ImageInputError as error:
        gr.Warning(str(error))
        return draw.empty_outputs(f"**Cannot read that image.** {error}")
    return draw.prediction_outputs(predictor, path, invert, choice, UPLOAD_HINT)


# Invert or the model choice changed: predict again from whichever input is showing.
# Two handlers, because the upload is read raw (preprocess=False) and the drawing is not.
def repredict_drawing(source: str, drawing: Any, invert: bool, choice: str) -> list[Any]:
    return predict_drawing(drawing, invert, choice) if source == "draw" else [gr.skip()] * (2 + 2 * len(MODELS))


def repredict_upload(source: str, upload: Any, invert: bool, choice: str) -> list[Any]:
    return predict_upload(upload, invert, choice) if source == "upload" else [gr.skip()] * (2 + 2 * len(MODELS))


def clear_drawing() -> list[Any]:
    return [BLANK_CANVAS, *draw.empty_outputs(DRAW_HINT)]


# -- Train handlers ------------------------------------------------------------

def make_trainer(spec: ModelSpec):
    def train(epochs: float | None, batch_size: float | None, learning_rate: float | None, limit: float | None,
              token: str | None = ""):
        blocked = training.training_blocked(spec, token, TRAIN_TOKEN)
        if blocked:
            gr.Warning(blocked)
            yield training.training_view(jobs.status(spec.name), f"**Not started.** {blocked}")
            return
        try:
            jobs.start(spec.name, training.options_from_fields(epochs, batch_size, learning_rate, limit))
        except JobAlreadyRunningError as error:
            gr.Info(f"{error}. Showing its progress.")
        except (TrainingUnavailableError, ValueError) as error:
            gr.Warning(str(error))
            yield training.training_view(jobs.status(spec.name), f"**Not started.** {error}")
            return
        yield from training.stream_job(jobs, spec.name)

    train.__doc__ = (f"Train {spec.title} on MNIST and stream its progress: each update is (progress 0-100, "
                     f"status, accuracy curve, loss curve, summary). limit 0 trains on all 60,000 images.")
    return train


def make_canceller(spec: ModelSpec):
    def cancel(token: str | None = "") -> str:
        blocked = training.training_blocked(spec, token, TRAIN_TOKEN) if TRAIN_TOKEN else None
        if blocked:
            gr.Warning(blocked)
            return f"**Not cancelled.** {blocked}"
        if jobs.cancel(spec.name):
            return "Cancelling: the previous model stays in use."
        gr.Info(f"{views.short_title(spec.title)} is not training.")
        return training.training_view(jobs.status(spec.name))[1]

    cancel.__doc__ = f"Cancel the running training of {spec.title}; returns a status message."
    return cancel


def make_watcher(spec: ModelSpec):
    def watch(busy: bool, shown: int):
        """Follow a job started elsewhere (REST, another page) unless this page streams it already.
        `shown`: the job manager's event count this page last showed; a run that started and
        ended between two ticks still gets its final state shown."""
        nothing = [gr.skip()] * 5
        job = jobs.status(spec.name)
        if busy or (not job["running"] and job["seq"] == shown):
            yield (*nothing, busy, shown)
        elif not job["running"]:
            yield (*training.training_view(job), False, job["seq"])
        else:
            for view in training.stream_job(jobs, spec.name):
                yield (*view, True, shown)
            yield (*nothing, False, jobs.status(spec.name)["seq"])

    return watch


def open_train_tab() -> list[Any]:
    """Show each model's current or last job, and start following jobs started elsewhere."""
    return [gr.Timer(active=True), *[value for name in MODELS for value in training.training_view(jobs.status(name))]]


# -- Models handlers and the client API ----------------------------------------

def model_status() -> dict[str, Any]:
    """Every model: trained, serving, test accuracy, when and how long it trained, file sizes, ONNX parity,
    and whether it is training now (the same as GET /model_status)."""
    return model_status_report(predictor, jobs)


def env() -> dict[str, Any]:
    """The runtime environment (the same as GET /env): Python, platform, library versions, TensorFlow,
    prediction workers."""
    return environment(pool)


def predict(image: FileData, model: str = "model2", invert: bool = False) -> tuple[int, list[float]]:
    """Classify a picture of one handwritten digit with "model1" or "model2".
    Returns (digit, probabilities of the digits 0-9)."""
    if model not in MODELS:
        raise gr.Error(f"Unknown model {model!r}: choose one of {', '.join(MODELS)}.")
    try:
        result = predictor.predict(preprocess(draw.uploaded_path(image), invert=bool(invert)), model)
    except ImageInputError as error:
        raise gr.Error(str(error)) from None
    except ModelUnavailableError as error:
        raise gr.Error(f"{model} cannot predict: {error.reason}") from None
    return result.digit, result.probabilities


def refresh_models() -> list[Any]:
    status = model_status()
    return [*[views.model_card(status[name]) for name in MODELS], env()]


def make_confusion(spec: ModelSpec):
    def confusion() -> tuple[Any, str]:
        missing = confusions.mnist_missing_reason()
        if missing:
            return None, missing
        try:
            result = confusions.get(spec.name)
        except ModelUnavailableError as error:
            return None, f"No confusion matrix: {error.reason}."
        title = f"{views.short_title(spec.title)}: {result.accuracy:.2%} of {result.samples:,} correct"
        return (plots.confusion_figure(result.matrix, title),
                f"Measured now through ONNX Runtime on the {result.samples:,} MNIST test images: "
                f"**{result.accuracy:.2%}** correct. Rows: the true digit; columns: what the model read.")

    return confusion


# -- Layout and events -----------------------------------------------------------

UI_THEME = gr.themes.Soft(primary_hue="indigo", secondary_hue="sky")
UI_CSS = """
#verdict p { font-size: 1.25rem; margin: 0.25rem 0; min-height: 1.8em; }
#model-input img { image-rendering: pixelated; }
#model-input .icon-button-wrapper { display: none; }
/* The sketchpad's own "Clear canvas" also drops the white background, after which Gradio asks
   to "select the draw tool" first; the Clear button below resets the canvas properly. */
#sketchpad button[aria-label="Clear canvas"] { display: none; }
.model-caption p { text-align: center; }
"""
# Gradio 6 takes theme and css when mounting (or launching), not in gr.Blocks().
UI_MOUNT_OPTIONS = {"theme": UI_THEME, "css": UI_CSS}
PRIVATE = {"api_visibility": "private"}  # page plumbing: kept out of the documented client API
PREDICT_QUEUE = {"concurrency_limit": PREDICT_CONCURRENCY, "concurrency_id": "predict"}

with gr.Blocks(title="Digit Studio") as demo:
    gr.Markdown("# Digit Studio\n"
                "Draw a digit and two models read it as you draw: a logistic regression and a small CNN. "
                "Train them yourself in **Train**, and compare them in **Models**.")
    # Client API endpoints without a widget of their own, listed first on the "Use via API" page
    # (train_<model> and cancel_<model> are the Train tab's own events).
    gr.api(predict, api_name="predict", **PREDICT_QUEUE)
    gr.api(model_status, api_name="model_status")
    gr.api(env, api_name="env")
    with gr.Tabs():
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

        with gr.Tab("Train", id="train") as train_tab:
            gr.Markdown("Train either model on MNIST right here and watch it learn. When a run finishes, its "
                        "test accuracy is shown and the Draw tab uses the new model at once. "
                        "**Quick run** settings finish in seconds; the defaults give the best accuracy.")
            token = gr.Textbox("", label="Training token", type="password", visible=bool(TRAIN_TOKEN),
                               info="This server protects training: enter its TRAIN_TOKEN to train or cancel.",
                               elem_id="train-token")
            watch_timer = gr.Timer(WATCH_EVERY, active=False)
            train_buttons, train_views = [], []
            with gr.Row(equal_height=False):
                for name, spec in MODELS.items():
                    defaults, quick = spec.defaults(), spec.quick()
                    with gr.Column(variant="panel", min_width=360):
                        gr.Markdown(f"### {spec.title}\n{spec.description}")
                        if spec.unavailable_reason():
                            gr.Markdown(f"**Training is off here.** {spec.unavailable_reason()}")
                        with gr.Row():
                            fields = [
                                gr.Number(defaults.epochs, label="Epochs", precision=0, elem_id=f"epochs-{name}"),
                                gr.Number(defaults.batch_size, label="Batch size", precision=0,
                                          elem_id=f"batch-{name}"),
                                gr.Number(defaults.learning_rate, label="Learning rate", elem_id=f"lr-{name}"),
                                gr.Number(defaults.limit or 0, label="Training images (0 = all 60,000)", precision=0,
                                          elem_id=f"limit-{name}"),
                            ]
                        with gr.Row():
                            quick_btn = gr.Button("Quick run settings", size="sm", elem_id=f"quick-{name}")
                            defaults_btn = gr.Button("Default settings", size="sm", elem_id=f"defaults-{name}")
                        with gr.Row():
                            train_btn = gr.Button(f"Train {views.short_title(spec.title)}", variant="primary",
                                                  interactive=training.can_train(spec, None, TRAIN_TOKEN),
                                                  elem_id=f"train-{name}")
                            cancel_btn = gr.Button("Cancel", variant="stop", elem_id=f"cancel-{name}")
                        view = [
                            gr.Slider(0, 100, value=0, step=0.1, label="Progress", interactive=False, buttons=[],
                                      elem_id=f"progress-{name}"),
                            gr.Markdown("Not started", label="Status", elem_id=f"status-{name}"),
                            gr.LinePlot(plots.empty_curve(plots.ACCURACY_SERIES), x="epoch", y="value",
                                        color="series", color_map=plots.CURVE_COLORS, colors_in_legend=[],
                                        y_lim=[0, 1], title=plots.ACCURACY_TITLE, x_title="Epoch", y_title="Accuracy",
                                        height=220, label="Accuracy curve",
                                        show_label=False, elem_id=f"accuracy-{name}"),
                            gr.LinePlot(plots.empty_curve(plots.LOSS_SERIES), x="epoch", y="value", color="series",
                                        color_map=plots.CURVE_COLORS, colors_in_legend=[], title=plots.LOSS_TITLE,
                                        x_title="Epoch", y_title="Cross-entropy", height=220, label="Loss curve",
                                        show_label=False, elem_id=f"loss-{name}"),
                            gr.Markdown("", label="Summary", elem_id=f"summary-{name}"),
                        ]
                    busy = gr.State(False)  # this page already streams this model's job
                    shown = gr.State(0)  # the job manager's event count this page last showed
                    train_buttons.append(train_btn)
                    train_views += view

                    quick_btn.click(lambda q=quick: training.option_values(q), None, fields, queue=False,
                                    api_name=f"quick_settings_{name}", **PRIVATE)
                    defaults_btn.click(lambda d=defaults: training.option_values(d), None, fields, queue=False,
                                       api_name=f"default_settings_{name}", **PRIVATE)
                    # Lock the button, stream the run (at most one per model: concurrency 1 per model),
                    # then unlock. Only the middle step is the public `train_<model>` endpoint.
                    train_btn.click(lambda: (gr.Button(interactive=False), True), None, [train_btn, busy],
                                    queue=False, show_progress="hidden", api_name=f"lock_{name}", **PRIVATE).then(
                        make_trainer(spec), [*fields, token], view, api_name=f"train_{name}",
                        concurrency_limit=1, concurrency_id=f"train_{name}", show_progress="hidden").then(
                        lambda tok, s=spec: (gr.Button(interactive=training.can_train(s, tok, TRAIN_TOKEN)), False),
                        token, [train_btn, busy], queue=False, show_progress="hidden", api_name=f"unlock_{name}",
                        **PRIVATE)
                    cancel_btn.click(make_canceller(spec), token, view[1], api_name=f"cancel_{name}")
                    watch_timer.tick(make_watcher(spec), [busy, shown], [*view, busy, shown], api_name=f"watch_{name}",
                                     concurrency_limit=None, show_progress="hidden", **PRIVATE)
            token.input(lambda tok: [gr.Button(interactive=training.can_train(s, tok, TRAIN_TOKEN))
                                     for s in MODELS.values()],
                        token, train_buttons, api_name="token_entered", queue=False, **PRIVATE)

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
                shown.then(make_confusion(spec), None, outputs, api_name=f"confusion_{name}", **PRIVATE)

    # Following jobs started elsewhere costs a request every WATCH_EVERY s: only while Train is open.
    train_tab.select(open_train_tab, None, [watch_timer, *train_views], api_name="open_train", show_progress="hidden",
                     **PRIVATE)
    gr.on([draw_tab.select, models_tab.select], lambda: gr.Timer(active=False), None, watch_timer,
          api_name="close_train", queue=False, **PRIVATE)

demo.queue(default_concurrency_limit=PREDICT_CONCURRENCY)

# =============================================================================

# The REST routes first, then Gradio at "/" (routes registered before the mount win).
app = create_api(predictor, jobs, train_token=TRAIN_TOKEN, pool=pool)
app = server.mount_ui(app, demo, exports_dir=predictor.exports_dir, **UI_MOUNT_OPTIONS)

if __name__ == "__main__":
    server.serve(app)
