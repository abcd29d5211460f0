"""The MCP server (Gradio's, at /gradio_api/mcp/), driven by the `mcp` package's streamable-HTTP
client against a live `python app.py`: the tool list, a drawn digit read right, and bad or
abusive input refused with a clear tool error while the server keeps answering.
"""
from __future__ import annotations

import asyncio
import base64
import io
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest
from PIL import Image

from tests.app_server import ROOT, copy_exports, free_port, running_app
from training.registry import MODELS

mcp = pytest.importorskip("mcp", reason="the mcp package is missing (pip install -r requirements-serve.txt)")
from mcp import ClientSession  # noqa: E402
from mcp.client.streamable_http import streamable_http_client  # noqa: E402

pytestmark = pytest.mark.slow

DIGIT_PNG = ROOT / "examples" / "digit.png"  # a drawn 3
TOOLS = {"recognize_digit", "explain_digit", "model_status"}  # explain_digit: tests/test_explain_api.py


def data_url(data: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(data).decode()


@pytest.fixture(scope="module")
def server(tmp_path_factory, exports_copy, shipped_models_available):
    if not shipped_models_available:
        pytest.skip("exports/ has no shipped models")
    folder = tmp_path_factory.mktemp("mcp")
    with running_app(copy_exports(exports_copy, folder / "exports"), folder / "app.log", PREDICT_WORKERS="0") as app:
        yield app.url + "gradio_api/mcp/"


def with_session(url: str, work):
    """Run `await work(session)` in an initialised MCP client session; returns its result."""
    async def main():
        async with streamable_http_client(url) as (read, write, _):
            async with ClientSession(read, write) as session:
                await session.initialize()
                return await work(session)

    return asyncio.run(main())


def text_of(result) -> str:
    return "".join(part.text for part in result.content if part.type == "text")


def test_only_the_three_tools_are_listed_with_clear_descriptions(server):
    listed = with_session(server, lambda session: session.list_tools()).tools
    tools = {tool.name: tool for tool in listed}
    # Neither the page's private events (predict_drawing, lock_model1, ...) nor the gradio_client
    # endpoints that take a FileData or start training are tools.
    assert set(tools) == TOOLS
    recognize = tools["recognize_digit"]
    assert "base64" in recognize.description and "never read from a file path" in recognize.description
    assert "verdict" in recognize.description
    properties = recognize.inputSchema["properties"]
    assert properties["image"]["type"] == "string" and "data URL" in properties["image"]["description"]
    assert "format" not in properties["image"]  # a plain string, not Gradio's "a http or https url to a file"
    assert recognize.inputSchema["required"] == ["image"]
    assert properties["invert"]["type"] == "boolean"
    # Every registered model is named, with what it is, and "all" (issue 21: it said "model2 or model1").
    described = properties["model"]["description"]
    assert all(f"'{name}' ({MODELS[name].title.split(': ', 1)[1]}" in described for name in MODELS), described
    assert "'all' (every model at once" in described and "both" not in described.lower()
    assert "/model_status" in tools["model_status"].description
    explain = tools["explain_digit"]
    assert "never read from a file path" in explain.description and "in words" in explain.description
    assert explain.inputSchema["required"] == ["image"] and "format" not in explain.inputSchema["properties"]["image"]


def test_recognize_digit_reads_the_drawn_example_with_every_model(server):
    image = data_url(DIGIT_PNG.read_bytes())

    async def work(session):
        return [await session.call_tool("recognize_digit", {"image": image, "model": model}) for model in MODELS]

    for result, model in zip(with_session(server, work), MODELS):
        assert not result.isError, text_of(result)
        answer = json.loads(text_of(result))
        assert answer["digit"] == 3 and answer["model"] == model
        assert len(answer["probabilities"]) == 10 and abs(sum(answer["probabilities"]) - 1) < 1e-4
        assert max(answer["probabilities"]) == answer["probabilities"][3]
        assert answer["verdict"] in ("digit", "unsure", "not_a_digit")
        assert answer["latency_ms"] > 0
    # "all": one answer per model, as REST's "model": "all".
    everything = with_session(server, lambda s: s.call_tool("recognize_digit", {"image": image, "model": "all"}))
    assert not everything.isError, text_of(everything)
    answer = json.loads(text_of(everything))
    assert answer["model"] == "all" and set(answer["predictions"]) == set(MODELS) and answer["unavailable"] == {}
    assert all(reading["digit"] == 3 and reading["model"] == name for name, reading in answer["predictions"].items())
    # Bare base64 works too.
    bare = with_session(server, lambda s: s.call_tool("recognize_digit", {"image": image.split(",", 1)[1]}))
    assert json.loads(text_of(bare))["digit"] == 3


def test_model_status_tool_reports_every_model(server):
    result = with_session(server, lambda session: session.call_tool("model_status", {}))
    assert not result.isError, text_of(result)
    status = json.loads(text_of(result))
    assert set(status) == set(MODELS)
    assert all(status[name]["trained"] and status[name]["available"] for name in status)


class _CountingHandler(BaseHTTPRequestHandler):
    hits: list[str] = []

    def do_GET(self):
        self.hits.append(self.path)
        body = DIGIT_PNG.read_bytes()
        self.send_response(200)
        self.send_header("Content-Type", "image/png")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def image_host():
    """An HTTP server holding digit.png that counts every request: the app must send it none."""
    _CountingHandler.hits = []
    http = ThreadingHTTPServer(("127.0.0.1", free_port()), _CountingHandler)
    thread = threading.Thread(target=http.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{http.server_address[1]}/digit.png", _CountingHandler.hits
    finally:
        http.shutdown()
        http.server_close()


def blank_png() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (280, 280), "white").save(buffer, format="PNG")
    return buffer.getvalue()


def test_bad_input_is_a_clear_tool_error_and_no_file_or_url_is_read(server, image_host):
    url, hits = image_host
    cases = {
        "not an image": (base64.b64encode(b"just some text, not a picture").decode(), "not an image"),
        "relative path": ("examples/digit.png", "looks like a file path"),
        "absolute path": (str(DIGIT_PNG), "looks like a file path"),
        "server file": ("/etc/passwd", "looks like a file path"),
        "outside URL": (url, "looks like a URL"),
        "file URL": (DIGIT_PNG.as_uri(), "looks like a URL"),
        "empty": ("", "empty"),
        "blank canvas": (data_url(blank_png()), "draw a digit first"),
        "broken data URL": ("data:image/png;base64", "no ','"),
    }

    async def work(session):
        answers = {name: await session.call_tool("recognize_digit", {"image": image})
                   for name, (image, _) in cases.items()}
        answers["unknown model"] = await session.call_tool(
            "recognize_digit", {"image": data_url(DIGIT_PNG.read_bytes()), "model": "model9" * 30})
        # The gradio_client endpoint that takes a FileData (Gradio's MCP layer would fill it from a
        # URL) and the training endpoints are not tools, listed or not.
        answers["FileData endpoint"] = await session.call_tool("predict", {"image": url})
        answers["training"] = await session.call_tool("train", {})
        answers["still answers"] = await session.call_tool("model_status", {})
        return answers

    answers = with_session(server, work)
    for name, (_, expected) in cases.items():
        assert answers[name].isError, name
        message = text_of(answers[name])
        assert expected in message, (name, message)
        assert "Traceback" not in message and len(message) < 400, (name, message)
        if "looks like" in expected:  # says what to send instead
            assert "data:image/png;base64," in message, (name, message)
    unknown = text_of(answers["unknown model"])
    assert answers["unknown model"].isError and f"choose one of {', '.join(MODELS)}, all" in unknown and len(unknown) < 200
    for name in ("FileData endpoint", "training"):
        assert answers[name].isError and "Unknown tool" in text_of(answers[name]), name
    assert not answers["still answers"].isError
    assert hits == [], f"the app fetched an outside URL: {hits}"


def test_an_oversized_mcp_request_is_refused_before_it_is_read(server):
    image = "A" * (6 * 1024 * 1024)  # over the 5 MB limit REST has too
    body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "tools/call",
                       "params": {"name": "recognize_digit", "arguments": {"image": image}}})
    headers = {"Content-Type": "application/json", "Accept": "application/json, text/event-stream"}
    response = httpx.post(server, content=body, headers=headers, timeout=60)
    assert response.status_code == 413 and "larger than 5 MB" in response.json()["error"]

    def chunks():  # no Content-Length: counted as it streams in
        for start in range(0, len(body), 1 << 20):
            yield body[start:start + (1 << 20)].encode()

    response = httpx.post(server, content=chunks(), headers=headers, timeout=60)
    assert response.status_code == 413
    # The server is fine afterwards.
    assert not with_session(server, lambda session: session.call_tool("model_status", {})).isError
