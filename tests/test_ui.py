"""The Gradio UI: its helpers in-process, then the real app server driven through gradio_client.

The server tests start `python app.py` on a free 127.0.0.1 port with a private copy of
the session's exports (training here must not change the models other tests see).
"""
from __future__ import annotations

import asyncio
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw

from tests.app_server import ROOT, copy_exports, run_python, running_app
from tests.fakes import FakeTrainer, fake_progress, fake_result, write_tiny_model
from training.jobs import JobManager
from training.options import TrainOptions
from training.registry import MODELS, ModelSpec
from ui import draw, plots, training, views

PUBLIC_ENDPOINTS = {"/predict", *(f"/{verb}_{name}" for name in MODELS for verb in ("train", "cancel", "fine_tune")),
                    "/model_status", "/env",
                    # issue 12: corrections, fine-tuning (above, per model), model versions
                    "/save_drawing", "/serve_version",
                    "/recognize_digit", "/mcp_model_status",  # the MCP tools (ui/mcp_tools.py)
                    "/explain", "/explain_digit"}  # issue 19: gradio_client's and MCP's explanations


def stroke_image(points: list[tuple[int, int]], size: int = 280, width: int = 22) -> Image.Image:
    """Black strokes on white, like a drawing on the sketchpad."""
    image = Image.new("RGB", (size, size), "white")
    ImageDraw.Draw(image).line(points, fill="black", width=width, joint="curve")
    return image


def collect(updates) -> list:
    """Every update of a coroutine generator handler (the Train tab's streams)."""
    async def gather():
        return [update async for update in updates]

    return asyncio.run(gather())


ONE = [(140, 40), (140, 240)]
SEVEN = [(70, 60), (210, 60), (120, 240)]


# -- in-process: formatting, plots, the Draw and Train logic -------------------

def test_training_curves_place_events_by_epoch_and_name_every_series():
    history = [{"progress": 0.0, "status": "Starting"}]
    history += [{"epoch": 1, "epochs": 2, "batch": b, "batches": 4, "loss": 2.0 / b, "accuracy": 0.2 * b}
                for b in range(1, 5)]
    history += [{"epoch": 1, "epochs": 2, "val_accuracy": 0.9},
                {"progress": 100.0, "status": "Done", "state": "succeeded", "accuracy": 0.95}]
    accuracy, loss = plots.training_curves(history)

    training_rows = accuracy[accuracy.series == plots.TRAIN_ACCURACY]
    assert training_rows.epoch.tolist() == [0.25, 0.5, 0.75, 1.0]
    assert training_rows.value.tolist() == pytest.approx([0.2, 0.4, 0.6, 0.8])
    validation = accuracy[accuracy.series == plots.VAL_ACCURACY]
    assert validation.epoch.tolist() == [1.0] and validation.value.tolist() == [0.9]
    assert 0.95 not in accuracy.value.tolist()  # the terminal event's test accuracy is no curve point
    assert loss.value.tolist() == pytest.approx([2.0, 1.0, 2 / 3, 0.5])


def test_training_curves_keep_every_series_before_data_and_thin_long_runs():
    accuracy, loss = plots.training_curves([])
    # Placeholders (NaN, not drawn) fix the plot's colour domain from the first frame on.
    assert set(accuracy.series) == set(plots.ACCURACY_SERIES) and accuracy.value.isna().all()
    assert set(loss.series) == set(plots.LOSS_SERIES)

    history = [{"epoch": 1, "epochs": 1, "batch": b, "batches": 5000, "loss": 1.0, "accuracy": b / 5000}
               for b in range(1, 5001)]
    accuracy, _ = plots.training_curves(history, limit=100)
    curve = accuracy[accuracy.series == plots.TRAIN_ACCURACY]
    assert len(curve) == 100
    assert curve.epoch.iloc[0] == pytest.approx(1 / 5000) and curve.epoch.iloc[-1] == 1.0  # both ends kept
    assert curve.epoch.is_monotonic_increasing


def test_model_card_says_what_a_user_needs():
    card = views.model_card({
        "title": "Model 1: logistic regression", "description": "d", "trained": True, "available": True,
        "accuracy": 0.9234, "trained_at": "2026-01-02T03:04:05+00:00", "train_seconds": 75.0,
        "onnx_parity": {"samples": 1000, "max_abs_diff": 2e-7, "argmax_agreement": 1.0},
        "native_parity": {"samples": 1000, "max_abs_diff": 3e-6, "argmax_agreement": 1.0,
                          "loaded_with": "joblib.load", "temperature_folded": 0.995},
        "options": {"epochs": 3, "batch_size": 1000, "seed": 0}, "file_sizes": {"onnx": 31_744, "native": 2048},
    })
    for expected in ("Serving predictions", "92.34%", "2026-01-02 03:04 UTC", "1 min 15 s", "epochs 3",
                     "same digit on 100.0% of 1,000 test images", "2.0e-07", "onnx 31.0 KB", "native 2.0 KB",
                     "within 3.0e-06 (joblib.load); temperature 0.995 folded in"):
        assert expected in card
    broken = views.model_card({"title": "Model 2: CNN", "trained": True, "available": False,
                               "reason": "exports/model2.onnx is not a valid ONNX model"})
    assert "Not serving" in broken and "not a valid ONNX model" in broken
    assert "Not trained yet" in views.model_card({"title": "Model 2: CNN", "trained": False, "available": False})


@pytest.fixture
def tiny_predictor(empty_exports):
    """A predictor serving a model1 that always answers 7, and no model2."""
    from inference.predictor import Predictor

    write_tiny_model(empty_exports, "model1", digit=7)
    return Predictor(empty_exports)


def upload_answer(predictor, path):
    """The Draw tab's upload answer, through the lanes every prediction path shares (inference/lanes.py)."""
    import asyncio

    from inference.lanes import PredictionLanes

    return asyncio.run(draw.upload_answer(PredictionLanes(predictor), path))


def test_cleared_upload_gets_the_hint_not_an_answer(tiny_predictor):
    assert upload_answer(tiny_predictor, None) == {"status": 0, "answer": None}


def test_upload_gets_the_same_answer_as_the_canvas_with_the_input_it_saw(tiny_predictor, tmp_path):
    import base64
    import io

    from inference.answer import predict_answer

    picture = tmp_path / "one.png"
    stroke_image(ONE).save(picture)
    value = upload_answer(tiny_predictor, picture)
    assert value["status"] == 200
    answer = value["answer"]
    # Exactly what the page's canvas gets from POST /predict {"model": "all", "include_input": true}.
    _, rest = predict_answer(tiny_predictor, picture, "all", include_input=True)
    for payload in (answer, rest):
        payload.pop("latency_ms")
        for prediction in payload["predictions"].values():
            prediction.pop("latency_ms")
    assert answer == rest
    assert answer["predictions"]["model1"]["prediction"] == 7  # the tiny model always answers 7
    assert "model2" in answer["unavailable"] and "train it" in answer["unavailable"]["model2"]
    header, _, data = answer["model_input"].partition(",")
    assert header == "data:image/png;base64"
    preview = Image.open(io.BytesIO(base64.b64decode(data)))
    assert preview.size == (28, 28) and preview.mode == "L"
    pixels = np.asarray(preview)
    assert pixels.max() == 255 and pixels[0, 0] == 0  # white ink on black, like MNIST


@pytest.mark.parametrize("content, words", [
    (b"this is not a picture", "That file is not a picture we can read: it is not a PNG, JPEG"),
    (b"\x89PNG\r\n\x1a\n but not really", "That file is not a picture we can read: it is not a PNG"),
])
def test_unreadable_upload_is_said_in_the_pages_words(tiny_predictor, tmp_path, content, words):
    path = tmp_path / "broken.png"
    path.write_bytes(content)
    value = upload_answer(tiny_predictor, path)
    assert value["status"] == 400
    message = value["answer"]["error"]
    assert message.startswith(words), message
    assert "data URL" not in message and "base64" not in message  # REST callers' words, not the page's


def test_blank_upload_says_no_digit_was_found(tiny_predictor, tmp_path):
    path = tmp_path / "blank.png"
    Image.new("RGB", (200, 200), "white").save(path)
    value = upload_answer(tiny_predictor, path)
    assert value["status"] == 422 and value["answer"]["error"].startswith("That picture shows no digit we can find")


def test_draw_tab_templates_keep_the_ids_and_nothing_gradio_would_evaluate():
    from ui import assets, draw_tab

    canvas = assets.template(assets.static_text("canvas.html"))
    for element_id in ("brush-size", "eraser", "undo", "clear", "invert", "predict"):
        assert f'id="{element_id}"' in canvas
    assert canvas.count("<canvas") == 1
    answers = draw_tab.answers_template()
    for element_id in ("verdict", "model-input", *[f"{kind}-{name}" for name in MODELS
                                                   for kind in ("caption", "probabilities")]):
        assert f'id="{element_id}"' in answers
    for bad in ("<b>${value}</b>", "{{value}}", "`x`"):
        with pytest.raises(ValueError, match="Gradio would evaluate"):
            assets.template(bad)
    assert "touch-action: none" in assets.static_text("canvas.css")


def test_upload_outside_gradios_folder_is_refused(tmp_path):
    outside = tmp_path / "digit.png"
    stroke_image(ONE).save(outside)
    with pytest.raises(draw.ImageInputError, match="upload the image again"):
        draw.uploaded_path({"path": str(outside)})
    assert draw.uploaded_path(None) is None


def test_training_is_blocked_with_a_reason():
    trainable = ModelSpec(name="m", title="M", description="", module="x", native_format="joblib")
    assert training.training_blocked(trainable, "", None) is None
    assert "enter the training token" in training.training_blocked(trainable, "", "s3cret")
    assert "Wrong training token" in training.training_blocked(trainable, "guess", "s3cret")
    assert training.training_blocked(trainable, "s3cret", "s3cret") is None
    assert not training.can_train(trainable, "", "s3cret") and training.can_train(trainable, "x", "s3cret")

    no_backend = ModelSpec(name="m", title="M", description="", module="x", native_format="keras",
                           requires=("package_that_is_not_installed_xyz",))
    assert "is not installed" in training.training_blocked(no_backend, "s3cret", "s3cret")
    assert not training.can_train(no_backend, "s3cret", None)


def test_option_fields_round_trip():
    fields = training.option_values(TrainOptions(epochs=2, batch_size=200, learning_rate=0.1, limit=None))
    assert fields == [2, 200, 0.1, 0]  # 0 = all images
    assert training.options_from_fields(*fields) == {"epochs": 2, "batch_size": 200, "learning_rate": 0.1,
                                                     "limit": None}
    assert training.options_from_fields(None, None, None, 2000) == {"limit": 2000}


def test_stream_follows_a_job_to_its_end(monkeypatch):
    fake = FakeTrainer(monkeypatch, "fake")
    release = threading.Event()

    def script(options):
        for step in (1, 2):
            yield fake_progress(step, 3)
        release.wait(10)  # the stream must show the first events before the job ends
        yield fake_progress(3, 3)
        yield fake_result("fake", accuracy=0.93)

    fake.script = script
    jobs = JobManager(models={"fake": fake.spec})
    jobs.start("fake")
    views_seen = []

    async def follow():
        async for view in training.stream_job(jobs, "fake"):
            views_seen.append(view)
            if view[0] > 0:
                release.set()

    asyncio.run(follow())
    progress = [view[0] for view in views_seen]
    assert progress == sorted(progress) and progress[-1] == 100.0
    assert any(0 < p < 100 for p in progress)  # updates arrived while it ran
    final_progress, status, accuracy, loss, summary = views_seen[-1]
    assert "93.00%" in status and "**Test accuracy 93.00%**" in summary
    assert len(accuracy[accuracy.series == plots.TRAIN_ACCURACY]) == 3


def test_events_have_stable_api_names_and_queue_limits():
    import app

    functions = {fn.api_name: fn for fn in app.demo.fns.values()}
    public = {name for name, fn in functions.items() if fn.api_visibility == "public"}
    assert public == {name.lstrip("/") for name in PUBLIC_ENDPOINTS}
    for name in MODELS:
        # No queue behind a running stream: a second page's click follows the running job
        # (the job manager allows one per model) instead of waiting to start another run.
        assert functions[f"train_{name}"].concurrency_limit is None
        assert functions[f"watch_{name}"].concurrency_limit is None
    for name in ("predict", "predict_upload"):
        assert functions[name].concurrency_limit > 1 and functions[name].concurrency_id == "predict"
    # Every event has a name of its own (the canvas itself asks REST /predict, not an event).
    assert all(fn.api_name for fn in app.demo.fns.values())
    assert "predict_drawing" not in functions


def test_train_token_is_required_when_the_server_sets_one(monkeypatch):
    import app

    from ui import train_tab

    monkeypatch.setattr(app.ctx, "train_token", "s3cret")
    spec = MODELS["model1"]
    for token, problem in (("", "enter the training token"), ("guess", "Wrong training token")):
        with pytest.warns(UserWarning, match=problem):
            updates = collect(train_tab.make_trainer(spec, app.ctx)(1, 200, 0.1, 1000, token))
        assert len(updates) == 1 and updates[0][1].startswith("**Not started.**") and problem in updates[0][1]
        with pytest.warns(UserWarning, match=problem):
            assert train_tab.make_canceller(spec, app.ctx)(token).startswith("**Not cancelled.**")
    assert not app.jobs.is_running("model1")
    # The right token is accepted: with nothing to cancel, the answer is the job's status.
    assert train_tab.make_canceller(spec, app.ctx)("s3cret") == app.jobs.status("model1")["status"]


INSPECT_UI = """
import asyncio, json, sys, warnings
import app
from training.registry import MODELS
from ui.train_tab import make_trainer
from gradio.components import Button, Markdown
async def collect(updates):
    return [update async for update in updates]
buttons = {b.elem_id: b.interactive for b in app.demo.blocks.values() if isinstance(b, Button)}
notes = [b.value for b in app.demo.blocks.values() if isinstance(b, Markdown) and "Training is off" in (b.value or "")]
tensorflow = sys.modules.get("tensorflow") is not None
status, caught = None, []
if MODELS["model2"].unavailable_reason():  # only then: otherwise this would really train
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        status = asyncio.run(collect(make_trainer(MODELS["model2"], app.ctx)(1, 128, 0.001, 1000, "")))[-1][1]
print(json.dumps({"buttons": buttons, "notes": notes, "status": status, "tensorflow": tensorflow,
                  "warnings": [str(w.message) for w in caught]}))
"""


def inspect_ui(exports: Path, prefix: str = "") -> dict:
    """Import app.py in a fresh interpreter (after `prefix`) and report on its Train tab."""
    import json

    result = run_python(prefix + INSPECT_UI, timeout=300, env={"MNIST_DOWNLOAD": "0", "EXPORTS_DIR": str(exports)})
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


@pytest.mark.slow
@pytest.mark.tensorflow  # with TensorFlow installed, Model 2's Train button is on
def test_the_app_starts_without_importing_tensorflow(empty_exports):
    ui = inspect_ui(empty_exports, "import sys\nsys.modules.pop('tensorflow', None)\n")
    assert ui["tensorflow"] is False  # prediction and the UI never need it
    assert ui["buttons"]["train-model2"] is not False and ui["notes"] == []


@pytest.mark.slow
def test_without_tensorflow_model2_training_is_off_and_says_why(empty_exports):
    ui = inspect_ui(empty_exports, "import sys\nsys.modules['tensorflow'] = None  # import fails, as without TensorFlow\n")
    assert ui["buttons"]["train-model2"] is False and ui["buttons"]["train-model1"] is not False
    assert ui["buttons"]["train-model3"] is False  # Model 3 trains with TensorFlow too
    keras_models = [spec for spec in MODELS.values() if "tensorflow" in spec.requires]
    assert len(ui["notes"]) == len(keras_models) and all("TensorFlow is not installed" in note for note in ui["notes"])
    assert any(note.startswith("**Training is off here.** TensorFlow is not installed, so Model 3") for note in ui["notes"])
    assert ui["status"].startswith("**Not started.** TensorFlow is not installed")
    assert any("TensorFlow is not installed" in warning for warning in ui["warnings"])  # the gr.Warning


def test_models_tab_figures_are_cached_per_export(empty_exports):
    from inference.predictor import Predictor
    from ui.model_insights import ModelInsights

    write_tiny_model(empty_exports, "model1", digit=7)
    insights = ModelInsights(Predictor(empty_exports))
    first = insights.get("model1")
    matrix = np.asarray(first.results["confusion_matrix"])
    assert matrix.sum() == 16 and matrix[:, 7].sum() == 16  # always answers 7 (the recorded figures)
    assert insights.get("model1") is first  # same export: nothing read or measured again

    write_tiny_model(empty_exports, "model1", digit=3)
    assert np.asarray(insights.get("model1").results["confusion_matrix"])[:, 3].sum() == 16


# -- the real server, through gradio_client --------------------------------------------------------

@pytest.fixture(scope="module")
def ui_server(exports_copy, tmp_path_factory):
    exports = copy_exports(exports_copy, tmp_path_factory.mktemp("ui_exports"))
    log = tmp_path_factory.mktemp("ui_server") / "app.log"
    with running_app(exports, log) as (url, _pid):
        yield url, exports


@pytest.fixture(scope="module")
def client(ui_server):
    from gradio_client import Client

    client = Client(ui_server[0], verbose=False)
    yield client
    client.close()  # its heartbeat stream would hold the server's graceful shutdown open


def train_via_client(client, model: str = "model1", **options):
    """Run a training through the streaming endpoint; returns every update (progress, status, ...)."""
    settings = {"epochs": 2, "batch_size": 200, "learning_rate": 0.1, "limit": 2000, **options}
    job = client.submit(settings["epochs"], settings["batch_size"], settings["learning_rate"], settings["limit"],
                        "", api_name=f"/train_{model}")
    return list(job), job


@pytest.fixture(scope="module")
def served_model1(ui_server, client, request):
    """model1 is being served: shipped with the repo, or trained here once (needs MNIST)."""
    if not (ui_server[1] / "model1.onnx").is_file():
        request.getfixturevalue("mnist_dir")
        train_via_client(client)
    assert (ui_server[1] / "model1.onnx").is_file()


@pytest.fixture(scope="module")
def one_png(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("digits") / "one.png"
    stroke_image(ONE).save(path)
    return path


@pytest.mark.slow
def test_use_via_api_lists_the_documented_endpoints(client):
    named = client.view_api(print_info=False, return_format="dict")["named_endpoints"]
    assert set(named) == PUBLIC_ENDPOINTS  # UI plumbing (drawing, timers, buttons) stays private
    assert [p["parameter_name"] for p in named["/predict"]["parameters"]] == ["image", "model", "invert"]
    assert [p["parameter_name"] for p in named["/train_model1"]["parameters"]] == [
        "epochs", "batch_size", "learning_rate", "limit", "token", "include_drawings"]


@pytest.mark.slow
def test_train_model1_streams_progress_to_100(ui_server, client, mnist_dir):
    before = client.predict(api_name="/model_status")["model1"]
    updates, job = train_via_client(client, "model1")
    progress = [update[0] for update in updates]
    assert progress == sorted(progress), "progress never goes back"
    assert progress[-1] == 100.0
    assert len({p for p in progress if 0 < p < 100}) >= 2, f"no streamed progress: {progress}"
    final_status, summary = updates[-1][1], updates[-1][4]
    assert final_status.startswith("Done: test accuracy") and "**Test accuracy" in summary
    accuracy_curve = updates[-1][2]  # gr.LinePlot data: {"columns": [epoch, value, series], "data": rows}
    assert any(series == plots.TRAIN_ACCURACY and value is not None for _, value, series in accuracy_curve["data"])

    after = client.predict(api_name="/model_status")["model1"]
    assert after["available"] and after["trained_at"] != before.get("trained_at")
    assert f"{after['accuracy']:.2%}" in final_status  # the new model is the one being served


@pytest.mark.slow
def test_predict_returns_the_digit_and_probabilities(client, served_model1, one_png):
    from gradio_client import handle_file

    digit, probabilities, verdict = client.predict(handle_file(str(one_png)), "model1", False, api_name="/predict")
    assert verdict == "digit"
    assert digit == 1
    assert len(probabilities) == 10 and sum(probabilities) == pytest.approx(1, abs=1e-4)
    assert max(range(10), key=probabilities.__getitem__) == 1


@pytest.mark.slow
def test_predict_explains_bad_input(client, served_model1, tmp_path, one_png):
    from gradio_client import handle_file

    not_an_image = tmp_path / "notes.png"
    not_an_image.write_text("hello")
    with pytest.raises(Exception, match="not an image"):
        client.predict(handle_file(str(not_an_image)), "model1", False, api_name="/predict")
    with pytest.raises(Exception, match="Unknown model 'model9'"):
        client.predict(handle_file(str(one_png)), "model9", False, api_name="/predict")
    blank = tmp_path / "blank.png"
    Image.new("RGB", (280, 280), "white").save(blank)
    with pytest.raises(Exception, match="draw a digit"):
        client.predict(handle_file(str(blank)), "model1", False, api_name="/predict")


@pytest.mark.slow
def test_model_status_and_env_match_the_rest_api(ui_server, client, served_model1):
    import httpx

    status = client.predict(api_name="/model_status")
    assert set(status) == set(MODELS)
    assert status["model1"]["trained"] and status["model1"]["available"]
    rest_status = httpx.get(ui_server[0] + "model_status", timeout=30).json()
    for name in MODELS:
        for key in ("trained", "available", "accuracy", "trained_at", "file_sizes", "trainable"):
            assert status[name][key] == rest_status[name][key]
    assert client.predict(api_name="/env") == httpx.get(ui_server[0] + "env", timeout=30).json()


@pytest.mark.slow
@pytest.mark.parametrize("transport", ["gradio_client", "rest"])
def test_examples_client_predicts_a_png(ui_server, served_model1, one_png, transport):
    command = [sys.executable, "examples/client.py", str(one_png), "--url", ui_server[0], "--model", "model1"]
    if transport == "rest":
        command.append("--rest")
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("one.png: 1 (model1, ")
    assert "top 3: 1 " in result.stdout


@pytest.mark.slow
def test_predictions_stay_fast_while_a_training_runs_and_cancel_keeps_the_model(
        ui_server, client, served_model1, mnist_dir, one_png):
    from gradio_client import Client, handle_file

    onnx_file = ui_server[1] / "model1.onnx"
    served = onnx_file.stat().st_mtime_ns
    # A full-size run (all 60,000 images): it is still going while the predictions below are made.
    job = client.submit(3, 1000, 0.1, 0, "", api_name="/train_model1")
    deadline = time.monotonic() + 120
    while not any(0 < update[0] for update in job.outputs()) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not job.done(), "the training ended before the test could predict during it"

    answers = []

    def predict_once():
        user = Client(ui_server[0], verbose=False)  # each thread is another user
        try:
            answers.append(user.predict(handle_file(str(one_png)), "model1", False, api_name="/predict")[0])
        finally:
            user.close()

    users = [threading.Thread(target=predict_once) for _ in range(6)]
    for thread in users:
        thread.start()
    for thread in users:
        thread.join(timeout=120)
    assert answers == [1] * 6
    assert not job.done(), "predictions waited for the training to finish"

    message = client.predict("", api_name="/cancel_model1")
    assert message.startswith("Cancelling")
    job.result(timeout=120)  # the stream ends once the job has stopped
    assert job.outputs()[-1][1].startswith("Cancelled")
    assert onnx_file.stat().st_mtime_ns == served  # the served model was not touched
    assert client.predict(handle_file(str(one_png)), "model1", False, api_name="/predict")[0] == 1


def test_readme_starts_with_hugging_face_space_front_matter():
    import yaml

    text = (ROOT / "README.md").read_text()
    assert text.startswith("---\n")
    front = yaml.safe_load(text.split("---\n")[1])
    # requirements.txt installs requirements-serve.txt, which pins Gradio (with its MCP extra).
    pinned = next(line.split("==")[1].split()[0] for line in (ROOT / "requirements-serve.txt").read_text().splitlines()
                  if line.startswith(("gradio==", "gradio[mcp]==")))
    assert front["sdk"] == "gradio" and front["sdk_version"] == pinned
    assert (ROOT / front["app_file"]).is_file() and front["python_version"] == "3.11"
    assert front["title"] and front["emoji"] and front["colorFrom"] and front["colorTo"]
    assert len(front.get("short_description", "")) <= 60  # the Hub's limit
