"""Issue 18, items 1, 2, 9 and 10: a hostile visitor against Gradio's queue, its uploads and the server's
connections, each attack performed against a `python app.py` the test starts (benchmarks/attacks/hostile.py
holds the attacks; `python -m benchmarks.attacks.hostile ...` measured the README's figures with them).

Visitors are told apart the way the server tells them apart: requests from 127.0.0.1 (a trusted
proxy by default) carry the visitor's address in X-Forwarded-For; for the connection limits, which
apply before any header is read, the test's sockets come from other loopback addresses (127.0.0.x).
"""
from __future__ import annotations

import json
import re
import time
import uuid
from pathlib import Path

import httpx
import pytest

from api.gradio_joins import JOINS_BURST, JOINS_PER_MINUTE, QUEUE_MAX_EVENTS
from api.gradio_unread import SESSION_EVENTS_MAX
from api.server import MAX_RUNNING_EVENTS
from benchmarks.attacks import hostile
from tests.app_server import copy_exports, running_app

TOKEN = "train-token-" + uuid.uuid4().hex
CACHE_MAX_MB = 60  # small, so that a test fills it quickly
HEARTBEAT = 20.0  # s: ui/train_tab.FOLLOW_HEARTBEAT, after which an unread follower ends
QUEUE_MAX = 40  # small_server's cap on events waiting in Gradio's queue, so a test fills it quickly


@pytest.fixture(scope="module")
def server(tmp_path_factory, exports_copy):
    root = tmp_path_factory.mktemp("hostile")
    exports = copy_exports(exports_copy, root / "exports")
    cache = root / "gradio-cache"
    # No cap on waiting events here (GRADIO_QUEUE_MAX=0): the join tests reach Gradio's 2,000-session
    # limit with events piling up; the cap has its own test below.
    with running_app(exports, root / "server.log", TRAIN_TOKEN=TOKEN, GRADIO_TEMP_DIR=str(cache),
                     GRADIO_CACHE_MAX_MB=str(CACHE_MAX_MB), PREDICT_WORKERS="1", GRADIO_QUEUE_MAX="0") as app:
        yield {"url": app.url, "cache": cache, "log": root / "server.log"}


# -- item 1: long-lived followers ------------------------------------------------------------------

def test_a_visitor_holds_few_followers_and_unread_ones_end(server):
    base = server["url"]
    fns = hostile.fn_indices(base)
    watch = fns["watch_model1"]
    client = "192.0.2.60"
    with httpx.Client(timeout=30) as http:
        for _ in range(6):  # the per-client cap: six followers nobody reads
            assert hostile.join(http, base, watch, [""], client=client)[0] == 200
    time.sleep(1)
    # A seventh follower of the same visitor is refused: it completes at once instead of following.
    refused = hostile.call(base, watch, [""], client=client, timeout=10)
    assert refused["ok"] and refused["seconds"] < 5, refused
    # Nobody reads the six: each ends at its next heartbeat, and the visitor may follow again.
    time.sleep(HEARTBEAT + 4)
    again = hostile.call(base, watch, [""], client=client, timeout=8)
    assert not again["ok"] and "ReadTimeout" in str(again["last"]), again  # admitted: it follows, silent while idle




def test_1100_hostile_follower_joins_leave_other_visitors_gradio_events_answering(server, mnist_dir):
    base = server["url"]
    # 1,100 joins of watch_model1 / watch_model2 by fn_index, no token, streams never read, from 100
    # addresses (11 each: under the join rate, so every one reaches Gradio). Before: all 1,100 held a
    # queue slot for ever and every other Gradio event timed out.
    statuses = hostile.hostile_followers(base, 1100, clients=100)
    assert statuses == {200: 1100}, statuses
    visitor = hostile.visitor_events(base, token=TOKEN, client="192.0.2.50")
    print(f"\nafter 1,100 hostile follower joins, another visitor's events: {visitor}")
    assert visitor["failures"] == [], visitor
    # Under a second when measured (benchmarks/attacks/hostile.py); bounded loosely here for a shared machine.
    assert all(seconds < 5.0 for seconds in visitor["max_seconds"].values()), visitor
    assert set(visitor["max_seconds"]) == {"model_status", "predict", "save_drawing", "train_model1"}


# -- item 2: joins with fresh session hashes -------------------------------------------------------

def visitor_still_served(base: str, client: str, wait: float = 180) -> dict:
    """A visitor's model_status, predict and save_drawing; model_status retried until the attack's
    queued events have drained (they wait in its queue, with their own sessions)."""
    deadline = time.monotonic() + wait
    while True:
        visitor = hostile.visitor_events(base, token=None, client=client, rounds=1, train=False)
        if not visitor["failures"] or time.monotonic() > deadline:
            return visitor
        assert all(status == 200 for _, status, _ in visitor["failures"]), visitor  # never "Queue is stopped."
        time.sleep(5)


def test_5000_fresh_session_joins_from_one_client_are_rate_limited(server):
    base = server["url"]
    result = hostile.fresh_session_joins(base, 5000, threads=16, clients=1)
    print(f"\n5,000 joins from one client: {result}")
    assert set(result["statuses"]) <= {200, 429}, result
    # The burst, then 10 a second for as long as the attack lasted (6-22 s alone on these VMs; 60 s once
    # in a full run on a loaded one, when 652 passed: the rate held, a fixed bound of 500 did not).
    admitted = result["statuses"].get(200, 0)
    assert admitted <= JOINS_BURST + JOINS_PER_MINUTE / 60 * result["seconds"] + 10, result
    assert admitted < result["joins"] / 4, result
    # Past its burst, a client's refusal says why. 300 joins at once from one more client: sent one by one
    # on a loaded machine, 80 joins could trickle in under the refill rate and never be refused.
    from concurrent.futures import ThreadPoolExecutor

    with httpx.Client(timeout=30, limits=httpx.Limits(max_connections=16)) as http:
        fn_index = hostile.fn_indices(base)["model_status"]
        with ThreadPoolExecutor(16) as pool:
            answers = list(pool.map(lambda _: hostile.join(http, base, fn_index, [], client="203.0.113.2"),
                                    range(300)))
    refused = [text for status, text in answers if status == 429]
    assert refused and "Too many Gradio requests" in json.loads(refused[0])["error"], answers[-1]
    visitor = visitor_still_served(base, "192.0.2.70")
    assert visitor["failures"] == [], visitor


def test_fresh_session_joins_past_gradios_2000_sessions_do_not_stop_its_queue(server):
    """From 200 addresses (13 joins each, under the rate) the joins reach Gradio: 2,600 sessions,
    more than the 2,000 its queue keeps. Before: KeyError in broadcast_estimations, and every later
    join answered 503 "Queue is stopped." until a restart."""
    base = server["url"]
    result = hostile.fresh_session_joins(base, 2600, threads=16, clients=200)
    print(f"\n2,600 joins from 200 clients: {result}")
    assert result["statuses"] == {200: 2600}, result
    visitor = visitor_still_served(base, "192.0.2.71")
    assert visitor["failures"] == [], visitor
    assert "Queue is stopped" not in server["log"].read_text()


@pytest.fixture(scope="module")
def default_server(tmp_path_factory, exports_copy):
    """An app with the queue's default limits (events waiting capped, as served)."""
    root = tmp_path_factory.mktemp("sessions")
    exports = copy_exports(exports_copy, root / "exports")
    cache = root / "gradio-cache"
    with running_app(exports, root / "server.log", GRADIO_TEMP_DIR=str(cache), GRADIO_QUEUE_MAX=None) as app:
        yield {"url": app.url, "pid": app.pid, "cache": cache}


def test_a_fresh_session_costs_the_server_about_what_a_known_one_does(default_server):
    """Each session hash Gradio met kept a snapshot of the whole page's config (362 KiB) until 10,000 sessions,
    and rendering it held the event loop: 3,000 joins from 200 addresses took 37.1 s of server CPU and grew
    it by 378 MiB (2026-12-07, before api/gradio_costs.py; 11.9 s and 83 MiB with it). Here the same joins
    twice, with fresh session hashes and with 50 known hashes (one would be refused past its 64 unread results:
    the test below): a fresh session may not cost much more."""
    base, pid = default_server["url"], default_server["pid"]
    hostile.fresh_session_joins(base, 50, threads=8, clients=50)  # the first events' one-off allocations
    time.sleep(2)
    cost = {}
    for kind, session in (("known", [uuid.uuid4().hex for _ in range(50)]), ("fresh", None)):
        before = hostile.process_usage(pid)
        result = hostile.fresh_session_joins(base, 1500, threads=16, clients=200, session=session)
        time.sleep(2)
        cost[kind] = {**hostile.usage_grown(pid, before), "statuses": result["statuses"]}
        assert set(result["statuses"]) <= {200, 503} and result["statuses"].get(200, 0) >= 200, result  # 503: full
    print(f"\n1,500 joins from 200 clients, the server's cost: {cost}")
    assert cost["fresh"]["cpu_seconds"] < 2 * cost["known"]["cpu_seconds"] + 1, cost  # before: 26.3 against 7.9 s
    assert cost["fresh"]["rss_mib"] < cost["known"]["rss_mib"] + 100, cost  # before: 242 against 64 MiB
    visitor = visitor_still_served(base, "192.0.2.72")
    assert visitor["failures"] == [], visitor


def test_a_session_that_never_reads_its_stream_holds_a_bounded_amount(default_server):
    """One session hash joined from 200 addresses (each under the join rate), its stream never read. Before
    api/gradio_unread.py: every join admitted, ~90 MiB more per 600 of them without end (241,323 unread
    estimates after 1,300 events, 2026-12-07). Now the joins are refused in words once 64 results wait unread
    (those already in the queue by then still run), until the session reads them; the server stops growing."""
    base, pid = default_server["url"], default_server["pid"]
    report = hostile.unread_session_rounds(base, 3, 1000, clients=200, pid=pid)
    print(f"\none session never read, 3 x 1,000 joins from 200 clients: {report}")
    admitted = sum(round_["statuses"].get(200, 0) for round_ in report["rounds"])
    # Those admitted before 64 results waited: at most the queue's waiting and running events on top.
    assert SESSION_EVENTS_MAX <= admitted <= SESSION_EVENTS_MAX + QUEUE_MAX_EVENTS + MAX_RUNNING_EVENTS, report
    assert report["rounds"][-1]["statuses"] == {429: 1000}, report
    assert all(set(round_["statuses"]) <= {200, 429, 503} for round_ in report["rounds"]), report  # 503: queue full
    assert re.match(r'\{"error": "This session has \d+ answers it has not read', report["rounds"][-1]["refusal"]), report
    first, last = report["rounds"][0]["grown"], report["rounds"][-1]["grown"]
    assert last["rss_mib"] - first["rss_mib"] < 30, report  # before: +90 MiB a round
    assert report["read"].get("process_completed") == admitted, report  # every result was kept for it
    assert report["after_reading"] == 200, report  # having read, the session joins again
    visitor = visitor_still_served(base, "192.0.2.73")
    assert visitor["failures"] == [], visitor


def test_no_visitor_writes_a_deep_link_or_reads_the_monitoring_summary(default_server):
    base, cache = default_server["url"], default_server["cache"]
    with httpx.Client(timeout=30) as http:
        session = uuid.uuid4().hex
        assert hostile.join(http, base, hostile.fn_indices(base)["model_status"], [], session=session)[0] == 200
        time.sleep(1)
        answer = http.get(base + "gradio_api/deep_link", params={"session_hash": session})
        assert answer.status_code == 404 and "no deep links" in answer.json()["error"], answer.text
        # Gradio's per-event summary (success rates, timings) was public: 200 before.
        assert http.get(base + "monitoring/summary").status_code == 403
    assert not (cache / "deep_links").exists()


# -- item 10: uploads ------------------------------------------------------------------------------

def test_one_client_cannot_upload_without_bound(server):
    base = server["url"]
    content = b"\0" * int(4.9 * 2 ** 20)
    statuses, refusals = {}, []
    started = time.monotonic()
    with httpx.Client(timeout=60) as http:
        for _ in range(100):
            status, answer = hostile.upload(base, uuid.uuid4().bytes + content, name="big.png",
                                            client="203.0.113.80", http=http)
            statuses[status] = statuses.get(status, 0) + 1
            if status == 429:
                refusals.append(answer)
    print(f"\n100 uploads of 4.9 MB from one client in {time.monotonic() - started:.1f} s: {statuses}")
    assert statuses.get(200, 0) <= 8 and statuses.get(429, 0) >= 90, statuses  # 30 MB at once, then 30 MB/min
    assert "Too many uploads" in refusals[0]["error"], refusals[0]
    # Another visitor's small upload still goes through.
    status, _ = hostile.upload(base, hostile.png_of_a_seven(), client="192.0.2.80")
    assert status == 200


def test_the_upload_cache_keeps_its_size_removing_the_oldest_first(server):
    base = server["url"]
    content = b"\1" * (4 * 2 ** 20)
    paths = []
    with httpx.Client(timeout=60) as http:
        for i in range(30):  # 120 MB from 30 visitors (each under its rate) into a 60 MB cache
            status, answer = hostile.upload(base, uuid.uuid4().bytes + content, name="photo.png",
                                            client=f"203.0.113.{100 + i}", http=http)
            assert status == 200, answer
            paths.append(Path(answer[0]))
            time.sleep(0.05)
    time.sleep(2)  # the last trim runs in a thread
    megabytes = hostile.cache_megabytes(server["cache"])
    print(f"\n120 MB uploaded by 30 visitors: the cache holds {megabytes:.1f} MB (cap {CACHE_MAX_MB} MB)")
    assert megabytes <= CACHE_MAX_MB + 0.5, megabytes
    assert not paths[0].exists() and paths[-1].exists()  # the oldest went first
    assert sum(path.exists() for path in paths) >= 10


def test_upload_ids_nobody_reads_leave_the_page_uploading_with_its_progress(server):
    """Every GET of /gradio_api/upload_progress left an Event for its id and every upload with an upload_id its
    tracker, for ever (6,000 requests: 6,000 and 3,000 kept, by a census of the running app, 2026-12-07); the
    bound itself is seen in tests/test_upload_progress.py. Here: such a flood from 50 addresses, then the page's
    own upload with its progress, and an unknown id answered in words."""
    base = server["url"]
    flood = hostile.upload_progress_flood(base, 300, 300, clients=50)
    print(f"\nupload ids never read: {flood}")
    assert flood["statuses"]["get"] == {404: 300} and set(flood["statuses"]["upload"]) <= {200, 429}, flood
    page = hostile.upload_with_progress(base, hostile.png_of_a_seven())
    assert page["status"] == 200 and page["progress"][-1] == "done", page
    answer = httpx.get(base + "gradio_api/upload_progress?upload_id=nobody-uploaded-this", timeout=30)
    assert answer.status_code == 404 and "error" in answer.json(), answer.text


# -- item 9: slow request heads ----------------------------------------------------------------------

@pytest.fixture(scope="module")
def small_server(tmp_path_factory, exports_copy):
    """An app with small connection limits (so that 3,000 slow connections exceed them: the mechanism
    of 20,000 against the defaults), no trusted proxy (the loopback addresses are visitors), started
    with a soft open-files limit of 1,024 under a higher hard one."""
    root = tmp_path_factory.mktemp("connections")
    exports = copy_exports(exports_copy, root / "exports")
    with running_app(exports, root / "server.log", wrapper=("prlimit", "--nofile=1024:8192", "--"),
                     FORWARDED_ALLOW_IPS="192.0.2.1", HTTP_MAX_CONNECTIONS="1000", HTTP_CONNECTIONS_PER_CLIENT="100",
                     HTTP_HEAD_TIMEOUT="3", PREDICT_WORKERS="0", GRADIO_QUEUE_MAX=str(QUEUE_MAX)) as app:
        yield {"url": app.url, "pid": app.pid, "port": int(app.url.rstrip("/").rsplit(":", 1)[1])}


def test_the_open_files_limit_is_raised_at_start(small_server):
    limits = Path(f"/proc/{small_server['pid']}/limits").read_text()
    line = next(line for line in limits.splitlines() if line.startswith("Max open files"))
    assert line.split()[3:5] == ["8192", "8192"], line


def test_3000_slow_heads_leave_new_clients_served(small_server):
    port = small_server["port"]
    sources = [f"127.0.0.{10 + i}" for i in range(30)]  # 30 addresses x 100: each at its cap, 3x the total cap
    held = hostile.open_slow_heads(port, 3000, sources=sources)
    try:
        assert len(held) >= 2900, len(held)
        served = hostile.new_client_requests(port, 20, source="127.0.0.2")
        print(f"\n3,000 slow heads held: new clients {served}")
        assert served["answered"] == 20, served
        assert hostile.still_open(held) <= 1000  # the total cap: the oldest slow heads were closed
        time.sleep(3 + 2.5)
        assert hostile.still_open(held) == 0  # no head is given more than HTTP_HEAD_TIMEOUT
        assert hostile.new_client_requests(port, 5, source="127.0.0.2")["answered"] == 5
    finally:
        for sock in held:
            sock.close()


def test_one_address_holds_at_most_its_share_of_connections(small_server):
    port = small_server["port"]
    held = hostile.open_slow_heads(port, 150, sources=["127.0.0.3"])
    try:
        time.sleep(0.5)
        assert hostile.still_open(held) == 100  # HTTP_CONNECTIONS_PER_CLIENT: the rest were closed at once
        assert hostile.new_client_requests(port, 3, source="127.0.0.4")["answered"] == 3
    finally:
        for sock in held:
            sock.close()


# -- the events waiting in all -----------------------------------------------------------------------

def test_events_waiting_in_gradios_queue_are_capped(small_server):
    """2,000 joins at once with fresh sessions from this machine (exempt from the per-client rate, like
    many addresses under it): before, every one waited (829 at once from 500 addresses, each holding its
    body). Now at most GRADIO_QUEUE_MAX wait; the rest get 503 "Queue is full" and no join is lost
    silently or crashes the queue; once the flood has drained a visitor is served again."""
    base = small_server["url"]
    result = hostile.fresh_session_joins(base, 2000, threads=32, clients=1)
    print(f"\n2,000 joins at once, cap {QUEUE_MAX}: {result}")
    assert set(result["statuses"]) <= {200, 503}, result
    assert result["statuses"].get(503, 0) > 0, result  # the cap was reached, and Gradio says so
    refusal = json.loads(result["samples"][503])  # in the app's shape ({"error"}), Gradio's "detail" kept
    assert refusal["error"].startswith(f"Queue is full. Max size is {QUEUE_MAX}") and refusal["detail"] == refusal["error"]
    visitor = visitor_still_served(base, "192.0.2.72")
    assert visitor["failures"] == [], visitor


def test_gradios_refusals_are_worded_as_ours_other_answers_pass_as_they_came():
    """The send wrapper of api/gradio_errors.py, on scripted answers: Gradio's {"detail"}, its Pydantic
    422 list and its plain-text 400 gain an "error" in words; successes, our own refusals, big or
    unreadable bodies pass byte for byte."""
    import asyncio

    from api.gradio_errors import ERROR_BODY_MAX, errors_in_our_words

    def answer(status: int, chunks: list[bytes], content_type: bytes = b"application/json") -> list[dict]:
        sent: list[dict] = []

        async def send(message):
            sent.append(message)

        async def run():
            wrapped = errors_in_our_words(send)
            await wrapped({"type": "http.response.start", "status": status,
                           "headers": [(b"content-type", content_type), (b"content-length", b"1")]})
            for index, chunk in enumerate(chunks):
                await wrapped({"type": "http.response.body", "body": chunk, "more_body": index < len(chunks) - 1})

        asyncio.run(run())
        return sent

    def body_of(sent: list[dict]) -> dict:
        assert dict(sent[0]["headers"])[b"content-type"] == b"application/json"
        assert dict(sent[0]["headers"])[b"content-length"] == str(len(sent[1]["body"])).encode()
        return json.loads(b"".join(message.get("body", b"") for message in sent[1:]))

    full = answer(503, [b'{"detail": "Queue is full.', b' Try again later."}'])
    assert body_of(full) == {"error": "Queue is full. Try again later.", "detail": "Queue is full. Try again later."}
    assert full[0]["status"] == 503
    plain = answer(400, [b"Could not parse multipart request"], b"text/plain; charset=utf-8")
    assert body_of(plain) == {"error": "Could not parse multipart request"} and plain[0]["status"] == 400
    missing = [{"type": "missing", "loc": ["query", "session_hash"], "msg": "Field required", "input": None}]
    invalid = answer(422, [json.dumps({"detail": missing * 5}).encode()])
    assert body_of(invalid)["error"] == ("This request is not what the route takes (session_hash: Field required; "
                                         "session_hash: Field required; session_hash: Field required; and 2 more).")
    assert body_of(invalid)["detail"] == missing * 5  # Gradio's own clients still read theirs
    for status, chunks, content_type in [
            (200, [b'{"event_id": "x"}'], b"application/json"), (503, [b"Service Unavailable"], b"text/html"),
            (503, [b'{"error": "ours already"}'], b"application/json"),
            (500, [b'{"error": null}'], b"application/json"), (400, [b"   "], b"text/plain"),
            (503, [b"x" * ERROR_BODY_MAX, b"y" * 10, b"z"], b"application/json")]:
        sent = answer(status, chunks, content_type)
        assert b"".join(message.get("body", b"") for message in sent[1:]) == b"".join(chunks), (status, chunks[0][:20])
        assert sent[0]["status"] == status and dict(sent[0]["headers"])[b"content-length"] == b"1"


# -- malformed event calls: refused in words, and the log stays small -----------------------------

def test_malformed_event_calls_are_refused_in_words_and_cannot_fill_the_log(server):
    """Event calls that fail, each sending 1 MB (benchmarks/attacks/hostile.malformed_calls): `predict` with
    one input of its three, a page-only event, an event number the page lacks, the Drawings tab's row
    selection without its event data. Before: the unknown event a 500 "Internal Server Error", the others
    a hidden error, and the server's log grew by 266,300 bytes a call (each short call's traceback quoted
    the megabyte it got: 60 calls, 16 MB; a client may join 600 times a minute). Now: a 404 and errors in
    words, no traceback (any other, tests/test_gradio_fixes.py: within a budget a minute and cut)."""
    base = server["url"]
    result = hostile.malformed_calls(base, 60, megabytes=1.0, client="192.0.2.80", log=server["log"])
    print(f"\n60 malformed event calls of 1 MB: {result}")
    assert result["join_statuses"] == {200: 45, 404: 15}, result
    assert result["outcomes"] == {"process_completed, success False": 45, "HTTP 404": 15}, result
    errors = result["errors"]
    assert re.fullmatch(r"This event takes \d+ input\(s\); the request sent 1\.", errors["too_few_inputs"]), errors
    assert errors["page_only"] == "This event runs in the page only: there is nothing on the server to call.", errors
    assert json.loads(errors["unknown_event"])["error"].startswith("This page has no event number "), errors
    assert errors["no_event_data"] == ("This event needs the data of what was selected, which the page sends "
                                       "with it."), errors
    assert result["log_bytes_per_call"] < 2000, result  # and any traceback: 10 whole a minute at most, lines cut
    log = server["log"].read_text(errors="replace")
    assert "x" * 1000 not in log  # no line quotes what was sent
    by_name = httpx.post(f"{base}gradio_api/call/no_such_event", json={"data": []}, timeout=30,
                         headers=hostile.client_headers("192.0.2.81"))
    assert by_name.status_code == 404
    assert by_name.json() == {"error": "This page has no event named 'no_such_event': its events are listed by "
                                       "GET /gradio_api/info."}
    assert visitor_still_served(base, "192.0.2.82")["failures"] == []


def test_the_one_shot_route_answers_a_refusal_with_rests_status_in_words(server):
    """POST /gradio_api/run/<api> (Gradio's one-shot route, what curl users call) answered every refusal of
    an event with HTTP 500 (found 2026-12-07); each now has the status REST gives the same refusal, the
    words of the event, and no traceback in the log."""
    base = server["url"]
    headers = hostile.client_headers("192.0.2.84")
    uploaded = httpx.post(f"{base}gradio_api/upload", files={"files": ("x.png", b"not a picture")}, headers=headers)
    not_a_picture = {"path": uploaded.json()[0], "meta": {"_type": "gradio.FileData"}}
    calls = {
        "unknown model": ("predict", [None, "model9", False], 422, "Unknown model 'model9'"),
        "no image": ("predict", [None, "model2", False], 422, "No image was given"),
        "too few inputs": ("predict", [None], 400, "This event takes 3 input(s); the request sent 1."),
        "not a picture": ("predict", [not_a_picture, "model2", False], 400, ""),
        "a server file": ("predict", [{"path": "/etc/passwd", "meta": {"_type": "gradio.FileData"}}, "model2", False],
                          403, "An input names a file this server was not sent"),
        "wrong token": ("serve_version", ["model2", 1, "wrong"], 403, "needs this server's training token"),
        "no such version": ("serve_version", ["model2", 99, TOKEN], 404, "model2 has no version 99"),
        "a version in words": ("serve_version", ["model2", "1", TOKEN], 422, "must be a whole number"),
        "a drawing without image": ("save_drawing", [None, 3, ""], 400, "No image was given"),
    }
    log_before = server["log"].stat().st_size
    for name, (api, data, status, words) in calls.items():
        answer = httpx.post(f"{base}gradio_api/run/{api}", json={"data": data}, headers=headers, timeout=30)
        assert answer.status_code == status, (name, answer.status_code, answer.text[:300])
        error = answer.json()["error"]
        assert isinstance(error, str) and words in error and len(error) < 400, (name, error)
    log = server["log"].read_bytes()[log_before:].decode(errors="replace")
    assert "Traceback" not in log, log[-2000:]
    served = httpx.post(f"{base}gradio_api/run/model_status", json={"data": []}, headers=headers, timeout=30)
    assert served.status_code == 200 and "model2" in served.json()["data"][0]


def test_the_one_shot_route_says_when_a_visitor_may_save_again(server):
    """save_drawing past the corrections' rate (drawings/limits.RATE_PER_MINUTE) on the one-shot route: 429
    in words with REST's Retry-After (before: no Retry-After), and nothing more is stored."""
    from benchmarks.browser.pen import DIGIT_STROKES, canvas_png
    from drawings.limits import RATE_PER_MINUTE

    base = server["url"]
    headers = hostile.client_headers("192.0.2.85")
    uploaded = httpx.post(f"{base}gradio_api/upload", files={"files": ("three.png", canvas_png(DIGIT_STROKES[3]))},
                          headers=headers, timeout=30)
    image = {"path": uploaded.json()[0], "meta": {"_type": "gradio.FileData"}}
    stored_before = httpx.get(f"{base}drawings/stats", timeout=30).json()["total"]
    answers = [httpx.post(f"{base}gradio_api/run/save_drawing", json={"data": [image, 3, ""]}, headers=headers,
                          timeout=30) for _ in range(RATE_PER_MINUTE + 2)]
    statuses = [answer.status_code for answer in answers]
    assert statuses == [200] * RATE_PER_MINUTE + [429, 429], statuses
    refused = answers[-1]
    assert "Too many drawings saved from here" in refused.json()["error"]
    assert 1 <= int(refused.headers["retry-after"]) <= 60, refused.headers
    assert all("retry-after" not in answer.headers for answer in answers[:RATE_PER_MINUTE])
    assert httpx.get(f"{base}drawings/stats", timeout=30).json()["total"] == stored_before + RATE_PER_MINUTE


def test_gradios_own_refusals_carry_an_error_in_words(server):
    """Gradio's routes refuse with {"detail"} (a string or Pydantic's list) or plain text; each answer now
    carries {"error"} in words too. MCP keeps JSON-RPC's error shape, which its clients read."""
    base = server["url"]
    headers = hostile.client_headers("192.0.2.83")
    refusals = {
        "no session": httpx.get(f"{base}gradio_api/queue/data", headers=headers),
        "join without session": httpx.post(f"{base}gradio_api/queue/join", json={"data": [], "fn_index": 0},
                                           headers=headers),
        "server file": httpx.get(f"{base}gradio_api/file=/etc/passwd", headers=headers),
        "broken multipart": httpx.post(f"{base}gradio_api/upload", content=b"xx", headers={
            **headers, "content-type": "multipart/form-data; boundary=zz"}),
        "unknown route": httpx.get(f"{base}gradio_api/no-such-route", headers=headers),
        "deep JSON": httpx.post(f"{base}gradio_api/queue/join", content=b"[" * 100_000 + b"]" * 100_000,
                                headers={**headers, "content-type": "application/json"}),
    }
    for name, answer in refusals.items():
        assert 400 <= answer.status_code < 500, (name, answer.status_code, answer.text[:200])
        body = answer.json()
        assert isinstance(body.get("error"), str) and body["error"], (name, body)
    assert "session_hash: Field required" in refusals["no session"].json()["error"]
    assert refusals["server file"].status_code == 403
    mcp = httpx.post(f"{base}gradio_api/mcp/", content=b"{junk", headers={
        **headers, "content-type": "application/json", "accept": "application/json, text/event-stream"})
    assert mcp.status_code == 400 and mcp.json()["jsonrpc"] == "2.0" and isinstance(mcp.json()["error"], dict)
