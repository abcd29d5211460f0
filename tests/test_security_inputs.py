"""Issue 18 items 5 and 13, performed against a live `python app.py` the tests start.

- Item 5: every path into the predictor gets REST's limits. 120 parallel MCP `recognize_digit` calls with
  a 2048x2048 PNG used to decode in up to 40 of Gradio's threads inside the server process (7 of 11 `/env`
  probes over 1 s); now they go through the same lanes as /predict (inference/lanes.py): the header is
  read first, large images wait in a one-at-a-time lane and decode in the worker processes.
- Item 13: digits that are not ASCII ("²", "³", "¹": str.isdigit() says yes, int() says no) in paths and
  queries were a 500 and a reset keep-alive connection; now a 422 with {"error"}. gradio_client's
  `serve_version` took "1", 1.5 and true as version 1; now whole numbers only, as in REST.
"""
from __future__ import annotations

import asyncio
import base64
import http.client
import io
import json
import statistics
import threading
import time
import urllib.parse
import uuid

import pytest
from PIL import Image, ImageDraw

from tests.app_server import copy_exports, running_app, wait_for_workers

pytestmark = pytest.mark.slow

TOKEN = "train-token-" + uuid.uuid4().hex
PARALLEL_CALLS = 120  # as in the attack


@pytest.fixture(scope="module")
def target(tmp_path_factory, exports_copy, shipped_models_available):
    if not shipped_models_available:
        pytest.skip("exports/ has no shipped models")
    root = tmp_path_factory.mktemp("inputs")
    with running_app(copy_exports(exports_copy, root / "exports"), root / "server.log", TRAIN_TOKEN=TOKEN,
                     PREDICT_WORKERS="2") as app:
        wait_for_workers(lambda: json.loads(_get(app.url + "env")[1]), 2)
        yield app


def _get(url: str, method: str = "GET", headers: dict | None = None) -> tuple[int, bytes]:
    parts = urllib.parse.urlsplit(url)
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
    try:
        connection.request(method, parts.path + (f"?{parts.query}" if parts.query else ""), headers=headers or {})
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


def big_digit_png(side: int = 2048) -> str:
    """A 7 on a side x side canvas: a few KB of PNG that decodes to side*side pixels."""
    image = Image.new("L", (side, side), 255)
    ImageDraw.Draw(image).line([(side // 4, side // 4), (3 * side // 4, side // 4), (side // 2, 7 * side // 8)],
                               fill=0, width=side // 14)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


def peak_rss_mb(pid: int, reset: bool = False) -> float:
    """The process's peak RSS (VmHWM); `reset` starts a new peak from now (Linux: clear_refs 5)."""
    if reset:
        with open(f"/proc/{pid}/clear_refs", "w") as handle:
            handle.write("5")
    with open(f"/proc/{pid}/status") as handle:
        for line in handle:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    raise AssertionError("no VmHWM")


class EnvProbe(threading.Thread):
    """GET /env every 0.25 s while an attack runs; `times` holds each answer's seconds."""

    def __init__(self, url: str):
        super().__init__(daemon=True)
        self.url, self.times, self.done = url, [], threading.Event()

    def run(self):
        while not self.done.is_set():
            start = time.monotonic()
            status, _ = _get(self.url + "env")
            assert status == 200
            self.times.append(time.monotonic() - start)
            self.done.wait(0.25)


# -- item 5: MCP and gradio_client take the large-image lane ---------------------------------------------

def test_parallel_large_images_over_mcp_stay_out_of_the_server_process(target):
    """The attack of item 5 through the MCP tool: every call answers (a 7), /env keeps answering (before:
    probe medians 0.48-1.01 s, 1-2 probes over 1 s per run, up to 2.2 s; now median 3 ms, max 0.49 s), and
    the server process's memory stays bounded (+69-82 MB before, +20 MB now)."""
    mcp = pytest.importorskip("mcp", reason="the mcp package is missing (pip install -r requirements-serve.txt)")
    from mcp.client.streamable_http import streamable_http_client

    image = big_digit_png()

    async def attack():
        async with streamable_http_client(target.url + "gradio_api/mcp/") as (read, write, _):
            async with mcp.ClientSession(read, write) as session:
                await session.initialize()
                return await asyncio.gather(*(session.call_tool("recognize_digit", {"image": image})
                                              for _ in range(PARALLEL_CALLS)))

    before = peak_rss_mb(target.pid, reset=True)
    probe = EnvProbe(target.url)
    probe.start()
    try:
        results = asyncio.run(attack())
    finally:
        probe.done.set()
        probe.join()
    grown = peak_rss_mb(target.pid) - before
    print(f"\n{PARALLEL_CALLS} MCP calls: /env probes {len(probe.times)}, median {statistics.median(probe.times):.3f} s, "
          f"max {max(probe.times):.3f} s, over 1 s: {sum(t > 1 for t in probe.times)}; server peak RSS +{grown:.0f} MB; "
          f"{[round(t, 3) for t in probe.times]}")
    answers = [json.loads("".join(part.text for part in result.content if part.type == "text")) for result in results]
    assert all(not result.isError for result in results)
    assert [answer["digit"] for answer in answers].count(7) >= PARALLEL_CALLS * 0.9, answers[:3]
    assert grown < 80, f"the server process grew {grown:.0f} MB"
    assert probe.times and statistics.median(probe.times) < 0.25, probe.times
    # Measured on the 2-core VMs: max 0.49 s (2026-12-05), 0.40-0.90 s on a slower one (2026-12-06) and once 1.74 s
    # there in a full CI run, 1.49 and 1.29 s (two probes) with the suite on two workers sharing the 2 cores
    # (2026-12-07); before: probe medians 0.48-1.01 s, 1-2 probes a run over 1 s, up to 2.2 s. The median above
    # tells the two apart; here no stall, and slow probes stay rare (at most one, or a tenth of them).
    slow = sum(t > 1.0 for t in probe.times)
    assert max(probe.times) < 3.0 and slow <= max(1, len(probe.times) // 10), probe.times


def test_a_large_image_through_gradio_client_takes_the_same_lane(target):
    """gradio_client's `predict` (a FileData upload) answers a large picture through the lanes too, and a
    picture that declares more pixels than allowed is refused before it is decoded, in words."""
    from gradio_client import Client, handle_file

    client = Client(target.url, verbose=False)
    path = _write_png(big_digit_png())
    digit, probabilities, verdict = client.predict(handle_file(str(path)), "model2", False, api_name="/predict")
    assert digit == 7 and abs(sum(probabilities) - 1) < 1e-4 and verdict in ("digit", "unsure")

    huge = Image.new("1", (5000, 5000), 1)  # 25 M pixels declared in a few KB: over MAX_PIXELS
    buffer = io.BytesIO()
    huge.save(buffer, format="PNG")
    with pytest.raises(Exception, match="pixels|too large|limit"):
        client.predict(handle_file(str(_write_bytes(buffer.getvalue()))), "model2", False, api_name="/predict")


def _write_png(data_url: str):
    return _write_bytes(base64.b64decode(data_url.partition(",")[2]))


def _write_bytes(data: bytes):
    import tempfile
    from pathlib import Path

    path = Path(tempfile.mkdtemp()) / "digit.png"
    path.write_bytes(data)
    return path


# -- item 13: digits that are not ASCII -------------------------------------------------------------------

UNICODE_DIGIT_REQUESTS = [
    ("GET", "drawings?limit=%C2%B2"),          # limit=²
    ("GET", "drawings?offset=%C2%B3"),         # offset=³
    ("GET", "drawings?label=%D9%A3"),          # label=٣ (Arabic-Indic three: int() would take it)
    ("GET", "drawings/%C2%B2/image"),          # /drawings/²/image
    ("DELETE", "drawings/%C2%B3"),             # DELETE /drawings/³
    ("POST", "models/model1/versions/%C2%B9/serve"),  # serve version ¹
]


@pytest.mark.parametrize("method, path", UNICODE_DIGIT_REQUESTS)
def test_unicode_digits_are_a_422_and_the_connection_stays_open(target, method, path):
    parts = urllib.parse.urlsplit(target.url)
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
    auth = {"Authorization": f"Bearer {TOKEN}"}
    try:
        connection.request(method, "/" + path, headers=auth)
        response = connection.getresponse()
        body = json.loads(response.read())
        assert response.status == 422, (response.status, body)
        assert "error" in body and "0-9" in body["error"], body
        # The same keep-alive connection answers the next request (a 500 used to reset it).
        connection.request("GET", "/drawings?limit=1", headers=auth)
        follow = connection.getresponse()
        assert follow.status == 200 and "drawings" in json.loads(follow.read())
    finally:
        connection.close()


def test_ascii_ids_that_do_not_exist_are_still_404(target):
    status, body = _get(target.url + "drawings/987654321/image", headers={"Authorization": f"Bearer {TOKEN}"})
    assert status == 404 and "error" in json.loads(body)


@pytest.mark.parametrize("version", ["1", 1.5, True])
def test_serve_version_through_gradio_client_takes_whole_numbers_only(target, version):
    from gradio_client import Client

    client = Client(target.url, verbose=False)
    with pytest.raises(Exception, match="whole number"):
        client.predict("model1", version, TOKEN, api_name="/serve_version")
    served = client.predict("model1", 1, TOKEN, api_name="/serve_version")  # a real whole number still works
    assert served["version"] == 1
