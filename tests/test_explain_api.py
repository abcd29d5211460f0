"""Explanations through the APIs, against a live `python app.py`: REST /predict with "explain": true,
the gradio_client `explain` endpoint and the MCP tool `explain_digit`; their contract, bad input and
abuse (a flood from one client, from many clients, large images), and that answers never wait."""
from __future__ import annotations

import asyncio
import base64
import concurrent.futures
import io
import json
import threading

import httpx
import numpy as np
import pytest
from PIL import Image

from benchmarks.browser.pen import DIGIT_STROKES, canvas_png
from tests.test_rest import BAD_INPUTS, data_url
from training.registry import MODELS

WAIT = 120  # s: the test machine may be busy


def seven() -> str:
    return data_url(canvas_png(DIGIT_STROKES[7]))


@pytest.fixture(scope="module")
def server(explain_app) -> str:
    return explain_app  # tests/conftest.py: 1 explanation worker, 1 waiting, 2 per client


def post(url: str, body: dict | bytes, headers: dict | None = None, **kwargs) -> httpx.Response:
    if isinstance(body, dict):
        return httpx.post(url + "predict", json=body, headers=headers, timeout=WAIT, **kwargs)
    return httpx.post(url + "predict", content=body, headers={"Content-Type": "application/json", **(headers or {})},
                      timeout=WAIT, **kwargs)


def png_image(data_url_text: str) -> Image.Image:
    assert data_url_text.startswith("data:image/png;base64,")
    return Image.open(io.BytesIO(base64.b64decode(data_url_text.split(",", 1)[1])))


# -- REST contract ---------------------------------------------------------------------

def test_explain_all_adds_each_models_maps_and_leaves_the_answer_as_it_was(server):
    plain = post(server, {"image": seven(), "model": "all"}).json()
    response = post(server, {"image": seven(), "model": "all", "explain": True})
    assert response.status_code == 200, response.text
    explained = response.json()
    assert set(explained["predictions"]) == set(MODELS)
    for name, answer in explained["predictions"].items():
        before = plain["predictions"][name]
        assert "explanation" not in before  # the original contract without "explain"
        assert {key: answer[key] for key in ("prediction", "probabilities", "verdict")} == {
            key: before[key] for key in ("prediction", "probabilities", "verdict")}
        explanation = answer["explanation"]
        maps = explanation["maps"]
        assert [item["digit"] for item in maps] == [answer["prediction"], explanation["runner_up"], answer["prediction"]]
        assert maps[2]["against"] == explanation["runner_up"]
        for item in maps:
            values = np.asarray(item["values"])
            assert values.shape == (28, 28) and np.isfinite(values).all()
            assert abs(values.sum() - item["sum"]) < 1e-4
            assert png_image(item["image"]).size == (28, 28)
        assert png_image(explanation["input"]).size == (28, 28)
        # The map for the digit read is mostly evidence for it.
        assert np.clip(maps[0]["values"], 0, None).sum() > np.clip(np.negative(maps[0]["values"]), 0, None).sum()
    model1 = explained["predictions"]["model1"]["explanation"]
    assert model1["method"] == "exact" and len(model1["templates"]) == 10
    for item in model1["maps"]:  # exact: the JSON numbers add up, with the bias, to the score
        assert abs(np.sum(item["values"]) + item["bias"] - item["score"]) <= 1e-4
    model2 = explained["predictions"]["model2"]["explanation"]
    assert model2["method"] == "integrated_gradients"
    assert [layer["title"] for layer in model2["layers"]] == ["conv 1", "pool 1", "conv 2", "pool 2"]
    assert [layer["channels"] for layer in model2["layers"]] == [32, 32, 64, 64]
    model3 = explained["predictions"]["model3"]["explanation"]
    assert model3["method"] == "rise" and "random masks" in model3["method_text"]  # the registry's choice
    assert [layer["title"] for layer in model3["layers"]][:3] == ["conv 1", "pool 1", "conv 2"]


@pytest.mark.parametrize("model", list(MODELS))
def test_explain_one_model(server, model):
    response = post(server, {"image": seven(), "model": model, "explain": True, "include_input": True})
    assert response.status_code == 200, response.text
    answer = response.json()
    assert answer["model"] == model and answer["explanation"]["model"] == model
    assert answer["model_input"].startswith("data:image/png;base64,")
    assert answer["explanation"]["maps"][0]["digit"] == answer["prediction"]


EXPLAIN_BAD_INPUTS = [case for case in BAD_INPUTS if "json" in case[1] and isinstance(case[1]["json"], dict)]


@pytest.mark.parametrize("kwargs, status, words", [case[1:] for case in EXPLAIN_BAD_INPUTS],
                         ids=[case[0] for case in EXPLAIN_BAD_INPUTS])
def test_bad_input_with_explain_gets_the_same_error_as_predict(server, kwargs, status, words):
    body = {**kwargs["json"], "explain": True}
    response = post(server, body)
    assert response.status_code == status, response.text
    assert words.lower() in response.json()["error"].lower()
    assert response.json() == post(server, kwargs["json"]).json()  # the very same words as without "explain"


@pytest.mark.parametrize("value", ["yes", "true", 1, None, [True]])
def test_explain_takes_json_booleans_only(server, value):
    response = post(server, {"image": seven(), "explain": value})
    assert response.status_code == 422 and "'explain'" in response.json()["error"]


def test_a_body_over_the_limit_with_explain_is_413(server):
    body = b'{"explain": true, "image": "' + b"A" * (5 * 1024 * 1024 + 10) + b'"}'
    response = post(server, body)
    assert response.status_code == 413 and "smaller image" in response.json()["error"]


def test_a_large_photo_is_explained_through_the_large_lane(server):
    photo = Image.open(io.BytesIO(canvas_png(DIGIT_STROKES[3], size=1800, width=90)))
    buffer = io.BytesIO()
    photo.convert("RGB").save(buffer, format="JPEG", quality=90)
    response = post(server, {"image": data_url(buffer.getvalue(), "image/jpeg"), "model": "model2", "explain": True})
    assert response.status_code == 200, response.text
    assert response.json()["explanation"]["top"] == response.json()["prediction"] == 3


# -- abuse: nobody makes the server compute explanations without bound --------------------

def _burst(server: str, count: int, client_of) -> list[httpx.Response]:
    """`count` explanation requests at once; request i comes from address client_of(i)."""
    start = threading.Barrier(count)
    body = {"image": seven(), "model": "all", "explain": True}

    def one(index: int) -> httpx.Response:
        start.wait()
        return post(server, body, headers={"X-Forwarded-For": client_of(index)})

    with concurrent.futures.ThreadPoolExecutor(count) as executor:
        return list(executor.map(one, range(count)))


def test_one_client_gets_at_most_its_share_at_once_and_429_beyond(server):
    responses = _burst(server, 12, lambda index: "10.1.0.1")
    statuses = [response.status_code for response in responses]
    assert set(statuses) <= {200, 429}, statuses
    assert statuses.count(429) >= 1 and statuses.count(200) >= 2, statuses
    refused = next(response for response in responses if response.status_code == 429)
    assert "at most 2 at once" in refused.json()["error"] and refused.headers["retry-after"] == "1"


def test_the_one_shot_gradio_route_refuses_a_flood_as_rest_does_with_retry_after(server):
    """POST /gradio_api/run/explain (what a curl user calls): past one client's share the same 429 in
    words as REST, and REST's Retry-After (before: a 429 with no Retry-After)."""
    client = {"X-Forwarded-For": "10.1.0.9"}
    png = base64.b64decode(seven().split(",", 1)[1])
    uploaded = httpx.post(server + "gradio_api/upload", files={"files": ("seven.png", png)}, headers=client,
                          timeout=WAIT)
    image = {"path": uploaded.json()[0], "meta": {"_type": "gradio.FileData"}}
    start = threading.Barrier(12)

    def one(_: int) -> httpx.Response:
        start.wait()
        return httpx.post(server + "gradio_api/run/explain", json={"data": [image, "model2"]}, headers=client,
                          timeout=WAIT)

    with concurrent.futures.ThreadPoolExecutor(12) as executor:
        responses = list(executor.map(one, range(12)))
    statuses = [response.status_code for response in responses]
    assert set(statuses) <= {200, 429}, statuses
    assert statuses.count(429) >= 1 and statuses.count(200) >= 2, statuses
    refused = next(response for response in responses if response.status_code == 429)
    assert "at most 2 at once" in refused.json()["error"] and refused.headers["retry-after"] == "1"
    assert all("retry-after" not in response.headers for response in responses if response.status_code == 200)


def test_many_clients_get_503_in_words_beyond_the_servers_bound(server):
    responses = _burst(server, 12, lambda index: f"10.2.0.{index + 1}")
    statuses = [response.status_code for response in responses]
    assert set(statuses) <= {200, 503}, statuses
    assert statuses.count(503) >= 1 and statuses.count(200) >= 2, statuses
    busy = next(response for response in responses if response.status_code == 503)
    assert "busy explaining" in busy.json()["error"] and busy.headers["retry-after"] == "1"
    env = httpx.get(server + "env", timeout=WAIT).json()["explanation_workers"]
    assert env["refused"] >= statuses.count(503) and env["admitted_now"] == 0


def test_predictions_are_answered_while_explanations_keep_the_workers_busy(server):
    """Answers never wait behind explanations: they have their own workers. Two pages with the
    Explain view open, each keeping one explanation in flight as the page does, keep the explanation
    worker busy all along; the answers meanwhile all come."""
    stop = threading.Event()
    explained = []

    def page(index: int) -> None:
        while not stop.is_set():
            response = post(server, {"image": seven(), "model": "all", "explain": True},
                            headers={"X-Forwarded-For": f"10.3.0.{index}"})
            explained.append(response.status_code)

    threads = [threading.Thread(target=page, args=(index,), daemon=True) for index in range(2)]
    for thread in threads:
        thread.start()
    try:
        answers = [post(server, {"image": seven(), "model": "all"}) for _ in range(10)]
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=WAIT)
    assert [response.status_code for response in answers] == [200] * 10
    assert all(response.json()["predictions"]["model2"]["prediction"] == 7 for response in answers)
    assert explained.count(200) >= 1 and set(explained) == {200}  # two pages fit: 1 computing, 1 waiting


# -- gradio_client and MCP -------------------------------------------------------------

def test_gradio_client_explain_returns_the_maps_and_the_numbers(server, tmp_path):
    from gradio_client import Client, handle_file

    picture = tmp_path / "seven.png"
    picture.write_bytes(canvas_png(DIGIT_STROKES[7]))
    client = Client(server, verbose=False)
    try:
        top, runner_up, contrast, numbers = client.predict(handle_file(str(picture)), "model1", api_name="/explain")
        assert numbers["prediction"] == 7 and numbers["explanation"]["method"] == "exact"
        for path in (top, runner_up, contrast):
            with Image.open(path) as image:
                assert image.size == (140, 140)  # 28x28, enlarged 5x
        for item in numbers["explanation"]["maps"]:
            assert "image" not in item and abs(np.sum(item["values"]) + item["bias"] - item["score"]) <= 1e-4
        with pytest.raises(Exception, match="Unknown model 'model9'"):
            client.predict(handle_file(str(picture)), "model9", api_name="/explain")
        text = tmp_path / "not-a-picture.png"
        text.write_text("hello")
        with pytest.raises(Exception, match="not an image"):
            client.predict(handle_file(str(text)), "model2", api_name="/explain")
    finally:
        client.close()


def test_mcp_explain_digit_answers_in_words_with_the_map(server):
    from mcp import ClientSession
    from mcp.client.streamable_http import streamable_http_client

    async def session_calls():
        async with streamable_http_client(server + "gradio_api/mcp/") as (read, write, _):
            async with ClientSession(read, write) as session:
                await session.initialize()
                names = [tool.name for tool in (await session.list_tools()).tools]
                good = await session.call_tool("explain_digit", {"image": seven()})
                path = await session.call_tool("explain_digit", {"image": "/etc/passwd"})
                url = await session.call_tool("explain_digit", {"image": "https://example.com/seven.png"})
                blank = await session.call_tool("explain_digit", {"image": data_url(canvas_png([]))})
                return names, good, path, url, blank

    names, good, path, url, blank = asyncio.run(session_calls())
    assert "explain_digit" in names
    words = good.content[0].text
    assert words.startswith("Model 2 reads 7") and "rather than" in words and "Method: integrated gradients" in words
    images = [item for item in good.content if item.type == "image"]
    assert len(images) == 1
    with Image.open(io.BytesIO(base64.b64decode(images[0].data))) as picture:
        assert picture.size == (3 * 140 + 2 * 4, 140)  # the input, the top digit's map, the runner-up's
    assert path.isError and "looks like a file path" in path.content[0].text
    assert url.isError and "looks like a URL" in url.content[0].text
    assert blank.isError and "draw a digit first" in blank.content[0].text.lower()
    assert not any("Traceback" in item.text for result in (path, url, blank) for item in result.content)


def test_env_reports_the_explanation_workers(server):
    workers = httpx.get(server + "env", timeout=WAIT).json()["explanation_workers"]
    assert workers["configured"] == 1 and workers["ready"] == 1 and workers["per_client"] == 2
    assert workers["capacity"] == 2 and workers["answered"] >= 1
    assert json.dumps(workers)  # plain JSON


# -- the lane on its own: no worker ready --------------------------------------------------

def test_without_a_worker_the_lane_explains_in_process_under_the_same_bounds(exports_copy):
    from inference.explain.lane import ExplainLane, ExplainRefused
    from inference.predictor import Predictor

    predictor = Predictor(exports_copy)
    lane = ExplainLane(predictor, exports_copy, workers=0, waiting=0, per_client=1)

    async def scenario():
        await lane.start()  # no workers to start
        try:
            first = asyncio.ensure_future(lane.answer(seven(), "model2", client="a"))
            await asyncio.sleep(0)  # admitted, computing in a thread
            with pytest.raises(ExplainRefused) as same_client:
                await lane.answer(seven(), "model2", client="a")
            with pytest.raises(ExplainRefused) as other_client:
                await lane.answer(seven(), "model2", client="b")
            return await first, same_client.value, other_client.value
        finally:
            await lane.close()

    (status, body), same_client, other_client = asyncio.run(scenario())
    assert status == 200 and json.loads(body)["explanation"]["top"] == 7
    assert same_client.status == 429 and other_client.status == 503
    assert lane.admitted == 0 and lane.describe()["refused"] == 2
