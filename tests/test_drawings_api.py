"""Issue 12 end to end against the real app (`python app.py` on a free port): corrections through REST,
the drawings database on disk, personalised training, model versions, token rules and bad input."""
from __future__ import annotations

import base64
import io
import threading
import time
import zipfile

import httpx
import pytest

from tests.app_server import copy_exports, running_app, running_apps, shipped_accuracy, wait_for_workers
from tests.segments import segment_digit
from tests.test_rest import huge_png_header
from training.registry import MODELS

TOKEN = "s3cret-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
WAIT = 120  # s for a quick training on a busy machine


def data_url(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode()


def correction(digit: int, seed: int = 0) -> dict:
    return {"image": data_url(segment_digit(digit, seed)), "label": digit}


def zip_of(entries: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in entries.items():
            archive.writestr(name, data)
    return buffer.getvalue()


def damaged_database(path) -> None:
    """A drawings database of the app's own with rows, then cut in half: the app moves it aside at start."""
    import numpy as np

    from drawings.store import DrawingStore
    from store.sqlite import SQLiteDatabase

    store = DrawingStore(SQLiteDatabase(path))
    for seed in range(40):
        store.add(label=1, png=bytes([seed]) * 4000, model_input=np.zeros((28, 28)))
    store.database.close()
    path.write_bytes(path.read_bytes()[:3000])


def wait_for_job(http: httpx.Client, model: str) -> dict:
    deadline = time.monotonic() + WAIT
    while time.monotonic() < deadline:
        status = http.get(f"/train_status/{model}").json()
        if not status["running"] and status["state"] != "idle":
            return status
        time.sleep(0.3)
    raise AssertionError(f"{model} did not finish training in {WAIT} s")


@pytest.fixture(scope="module")
def open_server(tmp_path_factory, exports_copy):
    folder = tmp_path_factory.mktemp("open_server")
    exports = copy_exports(exports_copy, folder / "exports")
    with running_app(exports, folder / "app.log", DATA_DIR=str(folder / "data"), PREDICT_WORKERS="2") as server:
        with httpx.Client(base_url=server.url.rstrip("/"), timeout=60) as http:
            wait_for_workers(lambda: http.get("/env").json(), 2)
            yield http, folder


def test_corrections_round_trip(open_server):
    http, folder = open_server
    ids = []
    for digit, seed in [(4, 1), (4, 2), (6, 1)]:
        answer = http.post("/drawings", json=correction(digit, seed))
        assert answer.status_code == 201, answer.text
        ids.append(answer.json()["id"])
    assert (folder / "data" / "drawings.sqlite3").is_file()  # on disk, in DATA_DIR

    listed = http.get("/drawings", params={"label": 4, "limit": 1}).json()
    assert listed["total"] == 2 and [d["id"] for d in listed["drawings"]] == [ids[1]]
    first = listed["drawings"][0]
    assert {"id", "label", "created_at", "predictions", "model_versions", "held_out"} <= set(first)
    assert set(first["predictions"]) == set(MODELS) and first["model_versions"] == {name: 1 for name in MODELS}
    image = http.get(f"/drawings/{ids[2]}/image")
    assert image.headers["content-type"] == "image/png" and image.content == segment_digit(6, 1)

    exported = http.get("/drawings/export")
    assert exported.headers["content-type"] == "application/zip"
    names = set(zipfile.ZipFile(io.BytesIO(exported.content)).namelist())
    assert {f"4/{ids[0]}.png", f"4/{ids[1]}.png", f"6/{ids[2]}.png", "drawings.csv"} <= names

    assert http.delete(f"/drawings/{ids[2]}").status_code == 204
    assert http.get(f"/drawings/{ids[2]}/image").status_code == 404
    assert http.delete(f"/drawings/{ids[2]}").json()["error"].startswith("No drawing")
    restored = http.post("/drawings/import", content=exported.content, headers={"Content-Type": "application/zip"})
    assert restored.status_code == 200 and restored.json()["imported"] == 1, restored.text
    assert http.get("/drawings", params={"label": 6}).json()["total"] == 1

    stats = http.get("/drawings/stats").json()
    assert stats["counts"]["4"] == 2 and stats["counts"]["6"] == 1 and set(stats["models"]) == set(MODELS)


BAD_POSTS = [
    ({"image": "not base64 !!", "label": 3}, 400, "not valid base64"),
    ({"image": data_url(b"GIF89a nonsense"), "label": 3}, 400, "not an image"),
    ({"image": data_url(huge_png_header()), "label": 3}, 400, "pixels"),
    ({"image": data_url(segment_digit(3)), "label": 10}, 422, "0 to 9"),
    ({"image": data_url(segment_digit(3)), "label": "7"}, 422, "0 to 9"),
    ({"image": data_url(segment_digit(3)), "label": True}, 422, "0 to 9"),
    ({"image": data_url(segment_digit(3)), "label": 2.5}, 422, "0 to 9"),
    ({"image": data_url(segment_digit(3))}, 422, "'label' missing"),
    ({"label": 3}, 422, "'image' missing"),
    ({"image": 12, "label": 3}, 422, "data URL"),
    ([1, 2], 422, "JSON object"),
]


@pytest.mark.parametrize("body, status, words", BAD_POSTS, ids=[words for _, _, words in BAD_POSTS])
def test_bad_corrections_get_a_clear_4xx_and_store_nothing(open_server, body, status, words):
    http, _ = open_server
    before = http.get("/drawings/stats").json()["total"]
    answer = http.post("/drawings", json=body)
    assert answer.status_code == status and words in answer.json()["error"], answer.text
    assert http.get("/drawings/stats").json()["total"] == before


def test_blank_canvas_huge_body_and_bad_json(open_server):
    http, _ = open_server
    blank = io.BytesIO()
    from PIL import Image

    Image.new("RGB", (280, 280), "white").save(blank, format="PNG")
    answer = http.post("/drawings", json={"image": data_url(blank.getvalue()), "label": 1})
    assert answer.status_code == 422 and "draw a digit first" in answer.json()["error"]
    huge = http.post("/drawings", content=b'{"image": "' + b"A" * (6 * 1024 * 1024) + b'", "label": 1}',
                     headers={"Content-Type": "application/json"})
    assert huge.status_code == 413 and "larger than 5 MB" in huge.json()["error"]
    broken = http.post("/drawings", content=b'{"image": ', headers={"Content-Type": "application/json"})
    assert broken.status_code == 400 and "not valid JSON" in broken.json()["error"]


@pytest.mark.parametrize("path, words", [
    ("/drawings?limit=0", "'limit' must be"), ("/drawings?limit=abc", "'limit' must be"),
    ("/drawings?label=10", "'label' must be"), ("/drawings?offset=-1", "'offset' must be"),
    ("/drawings/abc/image", "ids are whole numbers"), ("/drawings/999999/image", "No drawing 999999"),
    ("/models/nope/versions", "Unknown model"),
])
def test_bad_queries(open_server, path, words):
    http, _ = open_server
    answer = http.get(path)
    assert 400 <= answer.status_code < 500 and words in answer.json()["error"], answer.text


def test_hostile_imports(open_server):
    http, _ = open_server
    png = segment_digit(2, 77)
    bomb = zip_of({"2/bomb.png": b"\0" * (5 * 1024 * 1024 + 1)})
    traversal = zip_of({"../../../tmp/escape.png": png, "/etc/2.png": png, "2/../../x.png": png})
    for body in (bomb, traversal):
        answer = http.post("/drawings/import", content=body, headers={"Content-Type": "application/zip"})
        assert answer.status_code == 200 and answer.json()["imported"] == 0 and answer.json()["skipped"] >= 1
    assert http.post("/drawings/import", content=b"not a zip").json()["error"].startswith("The upload is not a zip")
    assert http.post("/drawings/import", content=b"").status_code == 422
    too_big = http.post("/drawings/import", content=b"PK" + b"\0" * (6 * 1024 * 1024))
    assert too_big.status_code == 413


def test_personalised_training_makes_a_version_that_serves_and_restores(open_server, mnist_dir):
    """A quick Model 1 run with seven-segment drawings: measured before/after on the held-out ones,
    kept as version 2 and serving; version 1 serves again with /predict answering throughout."""
    http, _ = open_server
    for seed in range(10, 16):
        for digit in range(10):
            assert http.post("/drawings", json=correction(digit, seed)).status_code == 201

    # Concurrent corrections while the training job reads the database.
    errors, saved, stop = [], [], threading.Event()

    def post_corrections(worker: int) -> None:
        with httpx.Client(base_url=str(http.base_url), timeout=30) as client:
            index = 0
            while not stop.is_set():
                answer = client.post("/drawings", json=correction(index % 10, 500 + 50 * worker + index))
                (saved if answer.status_code == 201 else errors).append(answer.status_code)
                index += 1

    started = http.post("/train/model1", json={"preset": "quick", "include_drawings": True})
    assert started.status_code == 202, started.text
    posters = [threading.Thread(target=post_corrections, args=(worker,)) for worker in range(4)]
    for thread in posters:
        thread.start()
    job = wait_for_job(http, "model1")
    stop.set()
    for thread in posters:
        thread.join()
    assert errors == [] and len(saved) > 0
    assert job["state"] == "succeeded", job
    personal = job["result"]["metadata"]["personal"]
    assert personal["drawings_trained_on"] >= 40 and personal["drawings_held_out"] >= 5 and personal["repeat"] >= 1
    before, after = personal["before"], personal["after"]
    assert after["drawings"] > before["drawings"], personal  # the held-out seven-segment digits moved
    assert before["mnist_test"] == pytest.approx(shipped_accuracy("model1"))  # the shipped model, measured before the run

    listed = http.get("/models/model1/versions").json()
    assert [(v["version"], v["serving"]) for v in listed] == [(2, True), (1, False)]
    assert listed[0]["drawings_accuracy"] == after["drawings"] and listed[0]["options"]["include_drawings"]
    assert http.get("/model_status").json()["model1"]["version"] == 2

    # Serve version 1 again while clients keep predicting: every request answered.
    predict_errors, answers = [], []
    done = threading.Event()

    def predict() -> None:
        with httpx.Client(base_url=str(http.base_url), timeout=30) as client:
            while not done.is_set():
                answer = client.post("/predict", json={"image": data_url(segment_digit(6, 3)), "model": "model1"})
                (answers if answer.status_code == 200 else predict_errors).append(answer.status_code)

    clients = [threading.Thread(target=predict) for _ in range(4)]
    for thread in clients:
        thread.start()
    for version in (1, 2, 1, 2, 1):
        served = http.post(f"/models/model1/versions/{version}/serve")
        assert served.status_code == 200 and served.json()["version"] == version and served.json()["serving"]
        time.sleep(0.3)
    done.set()
    for thread in clients:
        thread.join()
    assert predict_errors == [] and len(answers) > 20
    assert http.get("/model_status").json()["model1"]["version"] == 1
    assert http.get("/model_status").json()["model1"]["accuracy"] == pytest.approx(shipped_accuracy("model1"))


def test_the_serving_version_survives_a_restart(open_server, tmp_path):
    http, folder = open_server
    serving = [v["version"] for v in http.get("/models/model1/versions").json() if v["serving"]]
    # The module's server runs on; a second one over the same files is what a restart would see.
    with running_app(folder / "exports", tmp_path / "restart.log", DATA_DIR=str(folder / "data"),
                     PREDICT_WORKERS="0") as server:
        again = httpx.get(f"{server.url}models/model1/versions").json()
        status = httpx.get(f"{server.url}model_status").json()["model1"]
    assert [v["version"] for v in again if v["serving"]] == serving
    assert status["version"] == (serving[0] if serving else 1)


def test_token_rules_rate_limit_and_a_corrupt_database_at_start(tmp_path, exports_copy):
    exports = copy_exports(exports_copy, tmp_path / "exports")
    data = tmp_path / "data"
    data.mkdir()
    damaged_database(data / "drawings.sqlite3")
    log = tmp_path / "app.log"
    with running_app(exports, log, DATA_DIR=str(data), TRAIN_TOKEN=TOKEN, PREDICT_WORKERS="0",
                     DRAWINGS_RATE_PER_MINUTE="3") as server, \
            httpx.Client(base_url=server.url.rstrip("/"), timeout=60) as http:
        # Visitors may add corrections without the token, at most 3 a minute each...
        for digit in (1, 2, 3):
            assert http.post("/drawings", json=correction(digit)).status_code == 201
        limited = http.post("/drawings", json=correction(4))
        assert limited.status_code == 429 and "wait" in limited.json()["error"] and limited.headers["Retry-After"]
        # ...the token holder is not rate-limited.
        assert http.post("/drawings", json=correction(4), headers=AUTH).status_code == 201
        assert "moved it to" in log.read_text()  # the damaged file was set aside with a log line
        assert list(data.glob("drawings.sqlite3.corrupt-*"))

        protected = [("GET", "/drawings"), ("GET", "/drawings/1/image"), ("DELETE", "/drawings/1"),
                     ("GET", "/drawings/export"), ("POST", "/drawings/import"),
                     ("POST", "/models/model1/versions/1/serve"), ("POST", "/train/model1")]
        for method, path in protected:
            missing = http.request(method, path)
            wrong = http.request(method, path, headers={"Authorization": "Bearer nope"})
            assert missing.status_code == 401 and "TRAIN_TOKEN" in missing.json()["error"], (path, missing.text)
            assert wrong.status_code == 403, (path, wrong.text)
        assert http.get("/drawings", headers=AUTH).json()["total"] == 4
        assert http.get("/drawings/1/image", headers=AUTH).status_code == 200
        assert http.get("/drawings/export", headers=AUTH).status_code == 200
        assert http.post("/models/model1/versions/1/serve", headers=AUTH).status_code == 200
        assert http.delete("/drawings/1", headers=AUTH).status_code == 204
        # Open without the token: aggregate numbers and the version list.
        assert http.get("/drawings/stats").json()["total"] == 3
        assert http.get("/models/model1/versions").status_code == 200


def posts(http: httpx.Client, forwarded_for: str) -> list[int]:
    """The statuses of two corrections sent with this X-Forwarded-For."""
    return [http.post("/drawings", json=correction(digit), headers={"X-Forwarded-For": forwarded_for}).status_code
            for digit in (1, 2)]


def counted_as_one(http: httpx.Client) -> None:
    """With 2 corrections a minute allowed: a second visitor finds the first one's used up."""
    assert posts(http, "203.0.113.5") == [201, 201]
    assert posts(http, "198.51.100.7") == [429, 429]


def counted_apart(http: httpx.Client) -> None:
    """Each visitor the proxy names has a bucket of their own; an address a visitor forges (left of the
    one the proxy appends) does not help them."""
    assert posts(http, "203.0.113.5") == [201, 201]
    assert posts(http, "198.51.100.7") == [201, 201]
    assert posts(http, "192.0.2.99, 203.0.113.5") == [429, 429]
    assert http.get("/drawings/stats").json()["total"] == 4


def test_rate_limit_behind_a_proxy_counts_each_visitor_and_ignores_forged_addresses(tmp_path, exports_copy):
    """The limit keys on the visitor's address. Behind a proxy that address is the proxy's unless
    FORWARDED_ALLOW_IPS (uvicorn's setting) trusts it; a visitor's own X-Forwarded-For never helps."""
    exports = copy_exports(exports_copy, tmp_path / "exports")
    settings = {"TRAIN_TOKEN": TOKEN, "PREDICT_WORKERS": "0", "DRAWINGS_RATE_PER_MINUTE": "2"}

    # This test client is the "proxy". Not trusted: every forged address lands in the one bucket of 127.0.0.1.
    with running_app(exports, tmp_path / "untrusted.log", DATA_DIR=str(tmp_path / "a"), FORWARDED_ALLOW_IPS="192.0.2.1",
                     **settings) as server, httpx.Client(base_url=server.url.rstrip("/"), timeout=60) as http:
        counted_as_one(http)
    # Trusted: each visitor the proxy names has a bucket of their own; a visitor who sends an address of
    # their own (left of the one the proxy appends) is still counted as themselves.
    with running_app(exports, tmp_path / "trusted.log", DATA_DIR=str(tmp_path / "b"), FORWARDED_ALLOW_IPS="127.0.0.1",
                     **settings) as server, httpx.Client(base_url=server.url.rstrip("/"), timeout=60) as http:
        counted_apart(http)


def private_address_of_this_machine() -> str | None:
    """An address of this machine in a network a Space's proxy may come from (api/proxies.PRIVATE_NETWORKS),
    found by asking the kernel which source address it would use toward such a network (nothing is sent)."""
    import ipaddress
    import socket

    from api.proxies import PRIVATE_NETWORKS

    networks = [ipaddress.ip_network(network) for network in PRIVATE_NETWORKS]
    for family, destination in ((socket.AF_INET, "10.255.255.254"), (socket.AF_INET6, "fd00::ffff"),
                                (socket.AF_INET, "192.168.255.254"), (socket.AF_INET, "172.31.255.254")):
        try:
            with socket.socket(family, socket.SOCK_DGRAM) as probe:
                probe.connect((destination, 9))
                address = probe.getsockname()[0]
        except OSError:
            continue
        if any(ipaddress.ip_address(address) in network for network in networks):
            return address
    return None


def test_on_a_space_each_visitor_behind_its_proxy_is_counted_apart(tmp_path, exports_copy):
    """On a Hugging Face Space the proxy reaches the app from the platform's private network, where uvicorn's
    default (loopback only) did not believe its X-Forwarded-For: every visitor of the Space was one client,
    and one visitor's corrections used up everyone's rate. With SPACE_ID set the private networks are
    trusted (api/proxies.py); FORWARDED_ALLOW_IPS, when set, still decides. Here this machine's own private
    address plays the Space's proxy."""
    address = private_address_of_this_machine()
    if address is None:
        pytest.skip("this machine has no address in a private network (10/8, 172.16/12, 192.168/16, "
                    "100.64/10, fc00::/7) to play a Space's proxy from")
    host = f"[{address}]" if ":" in address else address
    settings = {"TRAIN_TOKEN": TOKEN, "PREDICT_WORKERS": "0", "DRAWINGS_RATE_PER_MINUTE": "2",
                "GRADIO_SERVER_NAME": "::" if ":" in address else "0.0.0.0", "FORWARDED_ALLOW_IPS": None}
    exports = copy_exports(exports_copy, tmp_path / "exports")

    def through_the_proxy(server) -> httpx.Client:
        port = server.url.rstrip("/").rsplit(":", 1)[1]
        return httpx.Client(base_url=f"http://{host}:{port}", timeout=60)

    # Not on a Space: the proxy's address is not trusted; the second visitor finds the rate used up.
    with running_app(exports, tmp_path / "elsewhere.log", DATA_DIR=str(tmp_path / "a"), SPACE_ID=None,
                     **settings) as server, through_the_proxy(server) as http:
        counted_as_one(http)
    # On a Space: each visitor the proxy names is counted apart, and a forged address of their own does not help.
    with running_app(exports, tmp_path / "space.log", DATA_DIR=str(tmp_path / "b"), SPACE_ID="someone/digit-studio",
                     **settings) as server, through_the_proxy(server) as http:
        counted_apart(http)
    # An operator's own FORWARDED_ALLOW_IPS still decides on a Space.
    with running_app(exports, tmp_path / "set.log", DATA_DIR=str(tmp_path / "c"), SPACE_ID="someone/digit-studio",
                     **{**settings, "FORWARDED_ALLOW_IPS": "127.0.0.1"}) as server, through_the_proxy(server) as http:
        counted_as_one(http)


def test_a_visitors_rate_holds_across_two_replicas_on_one_postgresql(tmp_path, exports_copy, postgres_url):
    """Two live replicas on one database: a visitor's corrections count together wherever they land
    (before, each replica counted its own: 2 replicas allowed twice the rate)."""
    exports = copy_exports(exports_copy, tmp_path / "exports")
    settings = {"TRAIN_TOKEN": TOKEN, "PREDICT_WORKERS": "0", "DRAWINGS_RATE_PER_MINUTE": "3",
                "DATABASE_URL": postgres_url}
    apps = [(exports, tmp_path / f"{name}.log", {**settings, "DATA_DIR": str(tmp_path / name)}) for name in "ab"]
    with running_apps(apps) as (a, b), httpx.Client(timeout=60) as http:
        codes = [http.post(f"{server.url}drawings", json=correction(digit)).status_code
                 for digit, server in zip((1, 2, 3), (a, b, a))]
        assert codes == [201, 201, 201]
        for server in (b, a):  # each replica has seen at most two of them itself
            limited = http.post(f"{server.url}drawings", json=correction(4))
            assert limited.status_code == 429, limited.text
            assert "wait" in limited.json()["error"] and 0 < int(limited.headers["Retry-After"]) <= 60
        assert http.post(f"{b.url}drawings", json=correction(4), headers=AUTH).status_code == 201  # the token holder
        assert http.get(f"{a.url}drawings/stats").json()["total"] == 4


def test_serving_an_unknown_version(open_server):
    http, _ = open_server
    assert "no version 42" in http.post("/models/model1/versions/42/serve").json()["error"]
    assert "whole numbers" in http.post("/models/model1/versions/x1/serve").json()["error"]
    assert http.post("/models/nope/versions/1/serve").status_code == 404
