"""Three replicas behave as one app behind a plain round-robin balancer (issue 20, item 3's last bullet).

Three live `python app.py` share one database (a SQLite file in one DATA_DIR), each with REPLICA_URL,
behind benchmarks/replicas/proxy.py, which sends every request to the next replica in turn (no
stickiness, one request per connection). Gradio keeps a session in the process that took it; the
app's own cookie affinity (api/affinity.py) brings each visitor's Gradio requests back to that
process. Tested here: without the cookie a queue event split over replicas is lost (the problem),
with it the same event works; gradio_client (upload, predict, save_drawing), MCP (both transports)
and the page in Chromium (draw, Right, stored) all work through the proxy; forged cookies (a URL,
an unknown id) are served where they land and never reach out; an oversized forwarded body is
refused; and after kill -9 of a replica, a new visitor and one whose cookie named it are served by
the others. The forwarder's bounds (time, count, size) are in tests/test_affinity.py.
"""
from __future__ import annotations

import asyncio
import base64
import http.cookiejar
import json
import os
import signal
import socket
import sqlite3
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import NamedTuple

import httpx
import pytest

from api.affinity import COOKIE, FORWARDED_HEADER, SERVED_BY_HEADER
from benchmarks.browser.pen import DIGIT_STROKES, draw_mouse
from benchmarks.replicas.proxy import RoundRobinProxy, running_proxy
from tests.app_server import ROOT, RunningApp, copy_exports, free_port, running_apps
from tests.test_browser import WAIT, wait_for_answer, wait_for_text
from training.registry import MODELS

pytestmark = pytest.mark.slow

REPLICAS = 3
DIGIT_PNG = ROOT / "examples" / "digit.png"  # a drawn 3
SERVED_BY = SERVED_BY_HEADER.decode()
SMALL = "robots.txt"  # a small Gradio route, for routing checks


class Cluster(NamedTuple):
    apps: list[RunningApp]
    ids: list[str]  # each replica's id, as its answers name it
    proxy: RoundRobinProxy
    data_dir: object


@pytest.fixture(scope="module")
def cluster(exports_copy, tmp_path_factory, shipped_models_available):
    if not shipped_models_available:
        pytest.skip("exports/ has no shipped models")
    folder = tmp_path_factory.mktemp("replicas")
    data_dir = folder / "data"
    ports = [free_port() for _ in range(REPLICAS)]
    apps = [(copy_exports(exports_copy, folder / f"exports{i}"), folder / f"app{i}.log",
             {"DATA_DIR": str(data_dir), "REPLICA_URL": f"http://127.0.0.1:{port}", "PREDICT_WORKERS": "0"})
            for i, port in enumerate(ports)]
    with running_apps(apps, ports=ports) as running, running_proxy([app.url for app in running]) as proxy:
        ids = [httpx.get(app.url + SMALL, timeout=30).headers[SERVED_BY] for app in running]
        deadline = time.monotonic() + 30
        # Every replica has read the others from the directory (each beats every 2 s).
        while not all(served_by(app.url, cookie=ids[j]) == ids[j] for app in running for j in range(REPLICAS)):
            assert time.monotonic() < deadline, "the replicas did not see each other in 30 s"
            time.sleep(0.2)
        yield Cluster(running, ids, proxy, data_dir)


def served_by(url: str, cookie: str | None = None, **headers: str) -> str:
    return get(url + SMALL, cookie, **headers).headers[SERVED_BY]


def get(url: str, cookie: str | None = None, **headers: str) -> httpx.Response:
    if cookie is not None:
        headers["cookie"] = f"{COOKIE}={cookie}"
    response = httpx.get(url, headers=headers, timeout=30)
    assert response.status_code == 200, response.text
    return response


def data_url(data: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(data).decode()


# -- the balancer -----------------------------------------------------------------------------

def test_the_proxy_alternates_per_request_and_skips_a_refused_upstream():
    """What the tests below rely on: no stickiness at all, not even a keep-alive connection's."""
    servers = []
    for index in range(3):
        class Answer(BaseHTTPRequestHandler):
            name = str(index).encode()

            def do_GET(self):
                self.send_response(200)
                self.send_header("content-length", "1")
                self.end_headers()
                self.wfile.write(self.name)

            def log_message(self, *args):
                pass

        server = ThreadingHTTPServer(("127.0.0.1", 0), Answer)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
    refused = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    upstreams = [f"http://127.0.0.1:{server.server_address[1]}" for server in servers]
    try:
        with running_proxy([upstreams[0], refused, *upstreams[1:]]) as proxy, httpx.Client() as client:
            answers = [client.get(proxy.url).text for _ in range(6)]  # one client, one keep-alive pool
        assert answers == ["0", "1", "2", "0", "1", "2"]
        assert proxy.served == [2, 0, 2, 2]
    finally:
        for server in servers:
            server.shutdown()


# -- the directory and the cookie -------------------------------------------------------------

def test_each_replica_registers_its_url_and_forwards_to_the_others(cluster):
    with sqlite3.connect(cluster.data_dir / "replicas.sqlite3") as db:
        rows = dict(db.execute("SELECT id, url FROM replicas").fetchall())
    assert rows == {replica_id: app.url.rstrip("/") for replica_id, app in zip(cluster.ids, cluster.apps)}
    for app, own in zip(cluster.apps, cluster.ids):
        for other in cluster.ids:
            response = get(app.url + SMALL, other)
            assert response.headers[SERVED_BY] == other  # forwarded unless it names this replica
            assert "set-cookie" not in response.headers  # the cookie already names the replica that served it


def test_the_first_gradio_answer_sets_the_cookie_and_rest_is_never_routed(cluster):
    app, own, other = cluster.apps[0], cluster.ids[0], cluster.ids[1]
    first = get(app.url + "config")
    assert first.headers["set-cookie"] == f"{COOKIE}={own}; Path=/; HttpOnly; SameSite=Lax"
    assert first.headers[SERVED_BY] == own
    # REST keeps no session: answered where it lands, whatever the cookie, with no cookie of ours.
    rest = get(app.url + "model_status", other)
    assert SERVED_BY not in rest.headers and "set-cookie" not in rest.headers
    assert set(rest.json()) == set(MODELS)


def test_a_queue_event_is_lost_over_replicas_without_the_cookie_and_works_with_it(cluster):
    """Upload, join and the event stream land on three different replicas (strict round robin)."""
    config = get(cluster.proxy.url + "config").json()
    fn_index = next(d["id"] for d in config["dependencies"] if d.get("api_name") == "predict")

    def run(cookie: str | None) -> dict:
        # The cookie is sent as given, never taken from an answer: a jar that keeps nothing.
        keeps_nothing = http.cookiejar.CookieJar(policy=http.cookiejar.DefaultCookiePolicy(allowed_domains=[]))
        headers = {"cookie": f"{COOKIE}={cookie}"} if cookie else {}
        with httpx.Client(base_url=cluster.proxy.url, timeout=30, cookies=keeps_nothing, headers=headers) as client:
            uploaded = client.post("gradio_api/upload", files={"files": ("digit.png", DIGIT_PNG.read_bytes())})
            assert uploaded.status_code == 200, uploaded.text
            session = uuid.uuid4().hex
            joined = client.post("gradio_api/queue/join", json={
                "data": [{"path": uploaded.json()[0], "meta": {"_type": "gradio.FileData"}}, "model2", False],
                "fn_index": fn_index, "session_hash": session, "event_data": None, "trigger_id": None})
            if joined.status_code != 200:
                return {"msg": "join refused", "status": joined.status_code, "text": joined.text}
            with client.stream("GET", "gradio_api/queue/data", params={"session_hash": session}) as stream:
                for line in stream.iter_lines():
                    if line.startswith("data:"):
                        message = json.loads(line[5:])
                        if message.get("msg") in ("process_completed", "unexpected_error"):
                            return message
        return {"msg": "stream ended"}

    lost = run(None)  # no cookie: what Gradio does behind any balancer without stickiness
    assert lost["msg"] == "unexpected_error" and lost["session_not_found"], lost
    cookie = get(cluster.proxy.url + SMALL).cookies[COOKIE]
    done = run(cookie)
    assert done["msg"] == "process_completed" and done["success"], done
    assert done["output"]["data"][0] == 3


# -- the three clients through the round-robin proxy --------------------------------------------

def test_gradio_client_uploads_predicts_and_saves_through_the_proxy(cluster):
    from gradio_client import Client, handle_file

    served_before = list(cluster.proxy.served)
    client = Client(cluster.proxy.url, verbose=False)
    try:
        assert client.cookies[COOKIE] in cluster.ids  # kept from its first /config answer for every request
        for _ in range(2):  # each call: upload, join, stream: over all three replicas
            digit, probabilities, verdict = client.predict(handle_file(str(DIGIT_PNG)), "model2", False,
                                                           api_name="/predict")
            assert digit == 3 and verdict == "digit" and abs(sum(probabilities) - 1) < 1e-6
        saved = client.predict(handle_file(str(DIGIT_PNG)), 3, "", api_name="/save_drawing")
        status = client.predict(api_name="/model_status")
        assert status["model2"]["trained"]
    finally:
        client.close()
    assert all(after > before for after, before in zip(cluster.proxy.served, served_before))
    # One database: every replica lists the drawing at once.
    for app in cluster.apps:
        assert saved in [drawing["id"] for drawing in get(app.url + "drawings").json()["drawings"]]


def mcp_call(url: str, transport: str, headers: dict[str, str] | None = None) -> str:
    from mcp import ClientSession
    from mcp.client.sse import sse_client
    from mcp.client.streamable_http import streamable_http_client

    image = data_url(DIGIT_PNG.read_bytes())

    async def call(read, write) -> str:
        async with ClientSession(read, write) as session:
            await asyncio.wait_for(session.initialize(), 30)
            result = await asyncio.wait_for(session.call_tool("recognize_digit", {"image": image}), 30)
            return "".join(part.text for part in result.content if part.type == "text")

    async def main() -> str:
        if transport == "sse":  # the legacy transport: a stream and its POSTs must meet in one process
            async with sse_client(url + "gradio_api/mcp/sse", headers=headers) as (read, write):
                return await call(read, write)
        async with httpx.AsyncClient(headers=headers, timeout=30) as http, \
                streamable_http_client(url + "gradio_api/mcp/", http_client=http) as (read, write, _):
            return await call(read, write)

    return asyncio.run(main())


def test_mcp_recognize_digit_through_the_proxy(cluster):
    pytest.importorskip("mcp", reason="the mcp package is missing (pip install -r requirements-serve.txt)")
    for transport in ("streamable-http", "sse"):
        assert json.loads(mcp_call(cluster.proxy.url, transport))["digit"] == 3
    # Streamable HTTP needs no affinity at all: Gradio runs it stateless. With routing turned off by
    # the forwarded mark, its requests are still served by whichever replica they land on.
    no_routing = {FORWARDED_HEADER.decode(): "test"}
    assert json.loads(mcp_call(cluster.proxy.url, "streamable-http", no_routing))["digit"] == 3


@pytest.mark.browser
def test_the_page_draws_and_stores_a_correction_through_the_proxy(browser, cluster):
    served_before = list(cluster.proxy.served)
    page = browser.new_context(viewport={"width": 1280, "height": 960}).new_page()
    replicas_seen = set()  # of every answer, the page itself included
    page.on("response", lambda response: replicas_seen.add(response.headers.get(SERVED_BY)))
    page.set_default_timeout(WAIT * 1000)
    try:
        page.goto(cluster.proxy.url, wait_until="load")  # never "networkidle": the page keeps a stream open
        page.wait_for_selector("#caption-model2", state="attached")
        draw_mouse(page, DIGIT_STROKES[4])
        wait_for_answer(page)
        right = wait_for_text(page, "#correct-right", lambda text: text.startswith("Right: it's a"))
        digit = int(right.rsplit(" ", 1)[1])
        page.click("#correct-right")
        wait_for_text(page, "#correction-note", lambda text: text == f"Saved as a {digit} — thank you")
        cookie = next(c["value"] for c in page.context.cookies() if c["name"] == COOKIE)
    finally:
        page.context.close()
    # Every Gradio answer came from the replica the cookie names, though the proxy spread the requests.
    assert replicas_seen - {None} == {cookie}
    assert all(after > before for after, before in zip(cluster.proxy.served, served_before))
    drawings = get(cluster.proxy.url + "drawings").json()["drawings"]
    assert drawings[0]["label"] == digit and drawings[0]["predictions"]["model2"]["digit"] == 4


# -- abuse ----------------------------------------------------------------------------------------

def test_forged_cookies_are_served_where_they_land_and_reach_nothing(cluster):
    app, own, other = cluster.apps[0], cluster.ids[0], cluster.ids[1]
    with socket.socket() as listener:  # where a forged URL points: nothing may connect to it
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        listener.setblocking(False)
        trap = f"http://127.0.0.1:{listener.getsockname()[1]}"
        for forged in (trap, trap + "/", f"127.0.0.1:{listener.getsockname()[1]}", "0123456789abcdef",
                       other + "0", other.upper(), "../" * 8, "x" * 4000):
            response = get(app.url + SMALL, forged)
            assert response.headers[SERVED_BY] == own, forged
            assert response.cookies[COOKIE] == own  # the visitor's cookie is reset to the replica that served
        with pytest.raises(BlockingIOError):
            listener.accept()
    # The forwarded mark is the end of the road, whoever sent it: no second hop, no loop.
    assert served_by(app.url, other, **{FORWARDED_HEADER.decode(): other}) == own


def test_an_oversized_body_is_refused_before_it_is_forwarded(cluster):
    app, own, other = cluster.apps[0], cluster.ids[0], cluster.ids[1]
    body = b"0" * (6 * 1024 * 1024)  # over the 5 MB upload limit and its envelope
    for content in (body, iter([body[i:i + 65536] for i in range(0, len(body), 65536)])):  # sized, chunked
        response = httpx.post(app.url + "gradio_api/upload", content=content, timeout=60,
                              headers={"cookie": f"{COOKIE}={other}", "content-type": "multipart/form-data; b=x"})
        assert response.status_code == 413 and "larger than 5 MB" in response.json()["error"]
        assert response.headers[SERVED_BY] == own
    assert served_by(app.url, other) == other  # and the route to the peer still works


# -- kill -9 (last: it takes a replica away) -----------------------------------------------------

def test_a_killed_replica_leaves_its_visitors_and_new_ones_to_the_others(cluster):
    from gradio_client import Client, handle_file

    dead, dead_id = cluster.apps[2], cluster.ids[2]
    os.kill(dead.pid, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while still_answers(dead.url):  # until the port is closed
        assert time.monotonic() < deadline
        time.sleep(0.05)
    # Its visitor's next request lands on a live replica, which cannot reach the dead one (still in
    # the directory for up to 10 s) and serves it, moving the visitor there.
    for app, own in zip(cluster.apps[:2], cluster.ids[:2]):
        response = get(app.url + SMALL, dead_id)
        assert response.headers[SERVED_BY] == own and response.cookies[COOKIE] == own
    # A new visitor: the proxy skips the refused upstream, the cookie keeps it on a live replica.
    client = Client(cluster.proxy.url, verbose=False)
    try:
        assert client.cookies[COOKIE] in cluster.ids[:2]
        for _ in range(3):
            assert client.predict(handle_file(str(DIGIT_PNG)), "model1", False, api_name="/predict")[0] == 3
    finally:
        client.close()


def still_answers(url: str) -> bool:
    """True while something still accepts connections at `url`."""
    try:
        httpx.get(url + SMALL, timeout=1)
    except httpx.TransportError:
        return False
    return True
