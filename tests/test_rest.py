"""The REST API contract, route by route, and its answers to bad input."""
from __future__ import annotations

import base64
import importlib.util
import io
import shutil
import struct
import threading
import zlib

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image, ImageDraw

from inference.pool import PredictionPool
from inference.predictor import Predictor
from inference.preprocess import preprocess
from api.app import create_api
from api.errors import MAX_BODY_BYTES
from tests.app_server import wait_for_workers
from tests.fakes import FakeTrainer, fake_progress, fake_result, write_tiny_model
from training.jobs import JobManager
from training.registry import MODELS

WAIT = 10


# -- images -------------------------------------------------------------------

def png_bytes(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def drawn_digit(mode: str = "RGB") -> Image.Image:
    """A '7' drawn with a thick black brush on a white 280x280 canvas."""
    image = Image.new(mode, (280, 280), "white")
    ImageDraw.Draw(image).line([(70, 60), (210, 60), (120, 230)], fill="black", width=22)
    return image


def data_url(data: bytes, mime: str = "image/png") -> str:
    return f"data:{mime};base64,{base64.b64encode(data).decode()}"


DIGIT_PNG = png_bytes(drawn_digit())
GOOD = {"image": data_url(DIGIT_PNG), "model": "model1"}


def huge_png_header(width: int = 100_000, height: int = 100_000) -> bytes:
    """A small PNG file that claims gigapixel dimensions (a decompression bomb's header)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    header = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\x00" * 1024))
            + chunk(b"IEND", b""))


# -- fixtures -------------------------------------------------------------------

@pytest.fixture(scope="session")
def tiny_exports(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tiny_exports")
    write_tiny_model(folder, "model1", seed=11, accuracy=0.8)
    write_tiny_model(folder, "model2", digit=7, accuracy=0.95)  # always answers 7
    for name in list(MODELS)[2:]:  # every further registered model (Model 3, ...): a tiny one each
        write_tiny_model(folder, name, seed=12, accuracy=0.9)
    return folder


@pytest.fixture
def exports(empty_exports, tiny_exports):
    """A fresh copy per test: tests delete and replace exports."""
    for path in tiny_exports.iterdir():
        shutil.copy2(path, empty_exports / path.name)
    return empty_exports


@pytest.fixture
def fakes(monkeypatch):
    """Scripted trainers registered as model1/model2 (the REST routes use the registry names)."""
    monkeypatch.delenv("MNIST_DOWNLOAD", raising=False)
    return {name: FakeTrainer(monkeypatch, name) for name in ("model1", "model2")}


@pytest.fixture
def predictor(exports):
    return Predictor(exports)


@pytest.fixture
def jobs(fakes, predictor):
    manager = JobManager(on_success=lambda name, result: predictor.reload(name),
                         models={name: fake.spec for name, fake in fakes.items()})
    yield manager
    manager.shutdown(WAIT)


@pytest.fixture
def client(request, predictor, jobs):
    """The API in a test client; `@pytest.mark.parametrize("client", WORKERS, indirect=True)`
    runs a test also with prediction worker processes (default: none)."""
    workers = getattr(request, "param", 0)
    pool = PredictionPool(predictor.exports_dir, workers) if workers else None
    with TestClient(create_api(predictor, jobs, pool=pool)) as test_client:
        wait_for_workers(lambda: test_client.get("/env").json(), workers)
        yield test_client


# Answered in the server process only, and also by worker processes where the request
# does not fit inline (not a small PNG): both must give the same answers.
WORKERS = pytest.mark.parametrize("client", [0, 2], indirect=True, ids=["in-process", "2-workers"])


def assert_good_request_works(client):
    response = client.post("/predict", json=GOOD)
    assert response.status_code == 200, response.text
    assert response.json()["prediction"] in range(10)


# -- status routes ---------------------------------------------------------------

@WORKERS
def test_env_describes_the_runtime(client):
    body = client.get("/env").json()
    assert body["python"].startswith("3.") and isinstance(body["arch"], str) and body["arch"]
    assert body["tf_available"] is (importlib.util.find_spec("tensorflow") is not None)
    assert body["cpu_count"] >= 1 and "onnxruntime" in body["versions"] and "fastapi" in body["versions"]
    workers = body["prediction_workers"]
    assert workers["configured"] == workers["ready"] and workers["answered"] == 0
    if workers["configured"]:  # a JPEG is not a small PNG: a worker answers it
        buffer = io.BytesIO()
        drawn_digit().save(buffer, format="JPEG")
        assert client.post("/predict", json={"image": data_url(buffer.getvalue(), "image/jpeg")}).status_code == 200
        assert client.get("/env").json()["prediction_workers"]["answered"] == 1


def test_model_status_per_model(client, exports):
    body = client.get("/model_status").json()
    assert set(body) == set(MODELS)
    model1 = body["model1"]
    assert model1["trained"] and model1["available"] and model1["reason"] is None
    assert model1["accuracy"] == 0.8 and model1["trained_at"] and model1["train_seconds"] == 0.01
    assert model1["training"] is False and model1["trainable"] is True
    assert model1["file_sizes"]["onnx"] == (exports / "model1.onnx").stat().st_size

    # A new export (e.g. from the CLI trainer in another process) shows up without a restart.
    write_tiny_model(exports, "model2", digit=4, accuracy=0.42)
    assert client.get("/model_status").json()["model2"]["accuracy"] == 0.42
    assert client.post("/predict", json={**GOOD, "model": "model2"}).json()["prediction"] == 4

    (exports / "model2.onnx").unlink()
    model2 = client.get("/model_status").json()["model2"]
    assert not model2["trained"] and not model2["available"] and model2["reason"] == "no export yet: train it"


def test_openapi_docs_are_served(client):
    assert client.get("/docs").status_code == 200
    paths = client.get("/openapi.json").json()["paths"]
    assert {"/env", "/model_status", "/train/{model}", "/train/{model}/cancel", "/train_status/{model}",
            "/predict"} <= set(paths)


# -- /predict --------------------------------------------------------------------

def test_predict_matches_the_predictor(client, predictor):
    response = client.post("/predict", json=GOOD)
    assert response.status_code == 200
    body = response.json()
    expected = predictor.predict(preprocess(DIGIT_PNG), "model1")
    assert body["prediction"] == expected.digit and body["model"] == "model1"
    assert len(body["probabilities"]) == 10 and abs(sum(body["probabilities"]) - 1) < 1e-4
    np.testing.assert_allclose(body["probabilities"], expected.probabilities, atol=1e-6)
    assert body["latency_ms"] > 0


@WORKERS
def test_predict_variants(client, predictor):
    # Bare base64 works like a data URL; model2 is the default; invert flips the polarity.
    bare = client.post("/predict", json={"image": base64.b64encode(DIGIT_PNG).decode(), "model": "model1"})
    assert bare.json()["probabilities"] == client.post("/predict", json=GOOD).json()["probabilities"]
    default = client.post("/predict", json={"image": GOOD["image"]}).json()
    assert default["model"] == "model2" and default["prediction"] == 7
    inverted = client.post("/predict", json={**GOOD, "invert": True}).json()
    expected = predictor.predict(preprocess(DIGIT_PNG, invert=True), "model1")
    np.testing.assert_allclose(inverted["probabilities"], expected.probabilities, atol=1e-6)
    everything = client.post("/predict", json={**GOOD, "model": "all"}).json()
    assert set(everything["predictions"]) == set(MODELS) and everything["unavailable"] == {}
    assert everything["predictions"]["model2"]["prediction"] == 7
    # Extra fields from older clients are ignored.
    assert client.post("/predict", json={**GOOD, "client": "v1"}).status_code == 200
    # A JPEG photo of the drawing (not a small PNG: with workers, a worker answers it).
    buffer = io.BytesIO()
    drawn_digit().save(buffer, format="JPEG", quality=90)
    photo = client.post("/predict", json={"image": data_url(buffer.getvalue(), "image/jpeg"), "model": "model1"})
    expected = predictor.predict(preprocess(buffer.getvalue()), "model1")
    np.testing.assert_allclose(photo.json()["probabilities"], expected.probabilities, atol=1e-6)


@WORKERS
def test_include_input_answers_the_28x28_input_the_models_read(client, predictor):
    """What the Draw tab asks: "model": "all" with the model input as a small PNG data URL."""
    for model, jpeg in (("all", False), ("model1", False), ("all", True)):
        image = GOOD["image"]
        if jpeg:  # not a small PNG: with workers, a worker answers it (the flag crosses the pipe)
            buffer = io.BytesIO()
            drawn_digit().save(buffer, format="JPEG", quality=90)
            image = data_url(buffer.getvalue(), "image/jpeg")
        response = client.post("/predict", json={"image": image, "model": model, "include_input": True})
        assert response.status_code == 200, response.text
        body = response.json()
        header, _, data = body["model_input"].partition(",")
        assert header == "data:image/png;base64" and len(data) < 2000  # a few hundred bytes
        preview = Image.open(io.BytesIO(base64.b64decode(data)))
        assert preview.size == (28, 28) and preview.mode == "L"
        decoded = image.partition(",")[2]
        expected = np.round(preprocess(base64.b64decode(decoded))[:, :, 0] * 255).astype(np.uint8)
        np.testing.assert_array_equal(np.asarray(preview), expected)  # exactly the models' input
    # Off by default and when false: the answer stays what REST clients know.
    assert "model_input" not in client.post("/predict", json=GOOD).json()
    assert "model_input" not in client.post("/predict", json={**GOOD, "include_input": False}).json()
    assert "model_input" not in client.post("/predict", json={**GOOD, "model": "all"}).json()


def test_predict_with_an_untrained_model_is_503_with_the_reason(client, exports):
    (exports / "model2.onnx").unlink()
    response = client.post("/predict", json={**GOOD, "model": "model2"})
    assert response.status_code == 503
    assert response.json()["error"] == "model2 cannot predict: no export yet: train it"
    everything = client.post("/predict", json={**GOOD, "model": "all"}).json()
    assert set(everything["predictions"]) == set(MODELS) - {"model2"}
    assert everything["unavailable"] == {"model2": "no export yet: train it"}
    assert_good_request_works(client)


def text_body(content: bytes, content_type: str = "application/json") -> dict:
    return {"content": content, "headers": {"Content-Type": content_type}}


BLANK = data_url(png_bytes(Image.new("RGB", (280, 280), "white")))
TRANSPARENT = data_url(png_bytes(Image.new("RGBA", (280, 280), (0, 0, 0, 0))))

# (id, request kwargs for client.post("/predict"), expected status, words the error must contain)
BAD_INPUTS = [
    ("malformed-json", text_body(b'{"image": "data:image/png;base64,'), 400, "not valid JSON"),
    ("not-an-object", {"json": ["image", "model1"]}, 422, "JSON object"),
    ("empty-body", text_body(b""), 422, "body is missing"),
    ("missing-image", {"json": {"model": "model1"}}, 422, "'image' is missing"),
    ("image-not-a-string", {"json": {"image": 12345}}, 422, "'image'"),
    ("invert-not-a-bool", {"json": {**GOOD, "invert": "sideways"}}, 422, "'invert'"),
    # include_input is strict: only JSON true or false (the page sends true).
    ("include-input-a-string", {"json": {**GOOD, "include_input": "yes"}}, 422, "'include_input'"),
    ("include-input-a-quoted-bool", {"json": {**GOOD, "include_input": "true"}}, 422, "'include_input'"),
    ("include-input-a-number", {"json": {**GOOD, "include_input": 1}}, 422, "'include_input'"),
    ("include-input-a-list", {"json": {**GOOD, "include_input": [True]}}, 422, "'include_input'"),
    ("include-input-null", {"json": {**GOOD, "include_input": None}}, 422, "'include_input'"),
    ("include-input-blank-canvas", {"json": {"image": BLANK, "model": "all", "include_input": True}}, 422,
     "draw a digit first"),
    ("unknown-model", {"json": {**GOOD, "model": "model9"}}, 422, "unknown model 'model9'"),
    ("bad-base64", {"json": {"image": "data:image/png;base64,@@not base64@@"}}, 400, "base64"),
    ("not-an-image", {"json": {"image": data_url(b"hello, this is text")}}, 400, "not an image"),
    ("file-path", {"json": {"image": "/etc/passwd"}}, 400, "never read as a file path"),
    ("model-file-path", {"json": {"image": "exports/model1.onnx"}}, 400, "base64"),
    ("decompression-bomb", {"json": {"image": data_url(huge_png_header())}}, 400, "pixels"),
    ("empty-canvas", {"json": {"image": BLANK}}, 422, "draw a digit first"),
    ("transparent-canvas", {"json": {"image": TRANSPARENT}}, 422, "draw a digit first"),
    ("form-encoded", text_body(b"image=abc", "application/x-www-form-urlencoded"), 422, "Content-Type"),
    ("too-large", text_body(b'{"image": "' + b"A" * (MAX_BODY_BYTES + 10) + b'"}'), 413, "smaller image"),
    ("lone-surrogate", text_body(b'{"image": "\\ud800"}'), 400, "base64"),
    ("huge-model-name", {"json": {**GOOD, "model": "m" * 70_000}}, 422, "unknown model 'mmmmmmmmmm"),
    ("too-large-streamed", {"content": lambda: iter([b'{"image": "'] + [b"A" * 1_000_000] * 6 + [b'"}']),
                            "headers": {"Content-Type": "application/json"}}, 413, "smaller image"),
]


@WORKERS
@pytest.mark.parametrize("kwargs, status, words", [case[1:] for case in BAD_INPUTS],
                         ids=[case[0] for case in BAD_INPUTS])
def test_bad_input_gets_a_clear_4xx_and_the_server_keeps_serving(client, kwargs, status, words):
    if callable(kwargs.get("content")):  # a stream: a fresh one for each run
        kwargs = {**kwargs, "content": kwargs["content"]()}
    response = client.post("/predict", **kwargs)
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) >= {"error"} and words.lower() in body["error"].lower(), body
    assert "Traceback" not in response.text and len(response.content) < 2000  # input is never echoed whole
    assert_good_request_works(client)


def test_wrong_method_is_a_clear_405(client):
    response = client.get("/predict")
    assert response.status_code == 405 and "POST" in response.headers["allow"]
    assert "not allowed" in response.json()["error"]
    assert_good_request_works(client)


# -- training routes ----------------------------------------------------------------

def test_train_start_conflict_status_and_cancel(client, fakes, jobs):
    gate = threading.Event()

    def script(options):
        yield fake_progress(1)
        gate.wait(WAIT)
        yield fake_progress(2)
        yield fake_result("model1")

    fakes["model1"].script = script
    started = client.post("/train/model1", json={"epochs": 2})
    assert started.status_code == 202, started.text
    assert started.json()["started"] is True and started.json()["running"] is True
    assert started.json()["options"]["epochs"] == 2 and started.json()["status_url"] == "/train_status/model1"

    again = client.post("/train/model1")
    assert again.status_code == 409 and "already training" in again.json()["error"]
    assert client.get("/model_status").json()["model1"]["training"] is True
    status = client.get("/train_status/model1").json()
    assert status["running"] is True and status["error"] is None
    assert {"progress", "status", "accuracy", "running", "error", "history"} <= set(status)

    cancelled = client.post("/train/model1/cancel")
    assert cancelled.status_code == 200 and cancelled.json()["cancelled"] is True
    gate.set()
    assert jobs.join("model1", WAIT) and fakes["model1"].exited_early.is_set()
    status = client.get("/train_status/model1").json()
    assert status["state"] == "cancelled" and "Cancelled" in status["status"] and not status["running"]
    assert client.delete("/train/model1").json()["cancelled"] is False  # nothing left to cancel


def test_finished_training_is_served_at_once(client, fakes, jobs, exports):
    def script(options):
        yield fake_progress(1, 1)
        write_tiny_model(exports, "model2", digit=3, accuracy=0.99)  # what the real trainer writes last
        yield fake_result("model2", 0.99)

    fakes["model2"].script = script
    assert client.post("/predict", json={**GOOD, "model": "model2"}).json()["prediction"] == 7
    assert client.post("/train/model2").status_code == 202
    assert jobs.join("model2", WAIT)
    status = client.get("/train_status/model2").json()
    assert status["state"] == "succeeded" and status["accuracy"] == 0.99 and status["progress"] == 100
    assert client.get("/model_status").json()["model2"]["accuracy"] == 0.99
    assert client.post("/predict", json={**GOOD, "model": "model2"}).json()["prediction"] == 3


@pytest.mark.parametrize("method, path", [("post", "/train/model9"), ("post", "/train/model9/cancel"),
                                          ("delete", "/train/model9"), ("get", "/train_status/model9")])
def test_unknown_model_in_training_routes_is_404(client, method, path):
    response = getattr(client, method)(path)
    assert response.status_code == 404 and "Unknown model 'model9'" in response.json()["error"]


@pytest.mark.parametrize("options, words", [({"epochz": 2}, "unknown option(s) epochz"),
                                            ({"epochs": "lots"}, "epochs"),
                                            ({"batch_size": 0}, "batch_size must be between")])
def test_bad_training_options_are_422(client, fakes, options, words):
    response = client.post("/train/model1", json=options)
    assert response.status_code == 422 and words in response.json()["error"]
    assert fakes["model1"].received_options == []


def test_training_unavailable_is_503_with_the_reason(monkeypatch, predictor, tmp_path):
    no_tf = FakeTrainer(monkeypatch, "model2", requires=("surely_not_installed_tensorflow",))
    needs_mnist = FakeTrainer(monkeypatch, "model1")
    jobs = JobManager(models={"model1": needs_mnist.spec, "model2": no_tf.spec})
    with TestClient(create_api(predictor, jobs)) as client:
        response = client.post("/train/model2")
        assert response.status_code == 503
        assert "surely_not_installed_tensorflow is not installed" in response.json()["error"]
        status = client.get("/model_status").json()["model2"]
        assert status["trainable"] is False and "not installed" in status["train_unavailable_reason"]
        assert status["available"] is True  # prediction still works from the export

        monkeypatch.setenv("MNIST_DIR", str(tmp_path))
        monkeypatch.setenv("MNIST_CACHE", str(tmp_path / "cache"))
        monkeypatch.setenv("MNIST_DOWNLOAD", "0")
        response = client.post("/train/model1")
        assert response.status_code == 503 and "MNIST was not found" in response.json()["error"]
    assert needs_mnist.received_options == []


def test_train_token_protects_start_and_cancel(predictor, jobs, fakes):
    with TestClient(create_api(predictor, jobs, train_token="s3cret-token")) as client:
        missing = client.post("/train/model1")
        assert missing.status_code == 401 and missing.headers["www-authenticate"] == "Bearer"
        assert "Authorization: Bearer" in missing.json()["error"]
        wrong = client.post("/train/model1", headers={"Authorization": "Bearer guess"})
        assert wrong.status_code == 403 and "Wrong training token" in wrong.json()["error"]
        assert client.post("/train/model1", headers={"Authorization": "Basic czNjcmV0"}).status_code == 401
        assert client.post("/train/model1/cancel").status_code == 401
        assert client.delete("/train/model1", headers={"Authorization": "Bearer nope"}).status_code == 403
        assert fakes["model1"].received_options == []

        ok = client.post("/train/model1", headers={"Authorization": "Bearer s3cret-token"})
        assert ok.status_code == 202
        # Reading status and predicting stay open.
        assert client.get("/train_status/model1").status_code == 200
        assert_good_request_works(client)


class RecordingPool:
    """A stand-in pool that is always ready and records how many requests it works on at once."""

    ready_workers = 3
    waiting = 0

    def __init__(self):
        self.busy = self.most = 0

    async def start(self):
        pass

    async def close(self):
        pass

    def describe(self):
        return {"configured": 3, "ready": 3, "answered": 0}

    async def answer(self, image, model, invert, *, include_input=False):
        import asyncio
        self.busy += 1
        self.most = max(self.most, self.busy)
        await asyncio.sleep(0.05)
        self.busy -= 1
        return 200, b'{"prediction":1}'


def test_large_images_take_at_most_one_worker_at_a_time(predictor, jobs):
    """Four clients sending images that declare 2000x2000 (allowed, ~100 ms each to decode) share one
    lane; normal-sized JPEGs beside them are not held up by it."""
    import asyncio

    import httpx

    pool = RecordingPool()
    app = create_api(predictor, jobs, pool=pool)
    big = Image.new("L", (2000, 2000), 255)
    large = {"image": data_url(png_bytes(big)), "model": "model1"}
    buffer = io.BytesIO()
    drawn_digit().save(buffer, format="JPEG")
    normal = {"image": data_url(buffer.getvalue(), "image/jpeg"), "model": "model1"}

    async def scenario():
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as client:
            large_calls = [client.post("/predict", json=large) for _ in range(4)]
            answers = await asyncio.gather(*large_calls)
            most_large = pool.most
            pool.most = 0
            mixed = await asyncio.gather(*[client.post("/predict", json=large) for _ in range(2)],
                                         *[client.post("/predict", json=normal) for _ in range(4)])
            return answers + list(mixed), most_large, pool.most

    answers, most_large, most_mixed = asyncio.run(scenario())
    assert all(answer.status_code == 200 for answer in answers)
    assert most_large == 1  # the four large ones one after another
    assert most_mixed >= 3  # the normal ones ran beside the large one
