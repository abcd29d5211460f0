"""The replica forwarder's rules and bounds (api/affinity.py) and the replica directory (api/replicas.py).

Two replicas in this process, each a real uvicorn server on a loopback port with the affinity
middleware in front of a small ASGI app, registered in a real SQLite directory. Replica B's app
has the routes a forward must carry: an echo of the request, an endless event stream that records
when its client leaves, an answer that never comes, and a Set-Cookie. Replica A forwards with small
limits so each bound shows in a second: the body's size and time, the peer's silence, the number
of forwards at once, a visitor who stops reading or leaves. The full app behind a round-robin
proxy is tests/test_replicas.py.
"""
from __future__ import annotations

import asyncio
import json
import select
import socket
import threading
import time
from typing import Iterator, NamedTuple

import httpx
import pytest
import uvicorn
from starlette.responses import StreamingResponse

from api import affinity
from api.affinity import COOKIE, FORWARDED_HEADER, ReplicaAffinity, ReplicaForwarder
from api.replicas import (REFRESH_AT_MOST_EVERY, ReplicaDirectory, SqliteReplicaTable, new_replica_id,
                          replica_url)
from tests.app_server import free_port

SERVED_BY = affinity.SERVED_BY_HEADER.decode()
LIMITS = {"max_forwards": 2, "connect_timeout": 1.0, "idle_timeout": 0.6, "body_timeout": 1.5, "max_body": 4096}


class PeerApp:
    """Replica B's routes."""

    def __init__(self) -> None:
        self.streams_open = 0
        self.stream_closed = threading.Event()

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            return
        path = scope["path"]
        if path == "/echo":
            body = b""
            while True:
                message = await receive()
                body += message.get("body", b"")
                if not message.get("more_body"):
                    break
            headers = {name.decode(): value.decode() for name, value in scope["headers"]}
            await respond(send, 200, json.dumps({"length": len(body), "headers": headers, "path": path,
                                                 "query": scope["query_string"].decode()}).encode())
        elif path in ("/stream", "/flood"):
            # Starlette's StreamingResponse, as Gradio's streams: it ends when the client disconnects.
            await StreamingResponse(self.ticks() if path == "/stream" else flood(),
                                    media_type="text/event-stream")(scope, receive, send)
        elif path == "/silent":
            await asyncio.sleep(3600)
        elif path == "/set-cookie":
            await respond(send, 200, b"{}", [(b"set-cookie", b"secret=peer-only; Path=/")])
        else:
            await respond(send, 200, b'{"local": true}')


    async def ticks(self):
        self.streams_open += 1
        try:
            while True:
                yield b"data: tick\n\n"
                await asyncio.sleep(0.05)
        finally:
            self.streams_open -= 1
            self.stream_closed.set()


async def flood():
    """As fast as the reader takes it (yielding to the loop: a send to a client that left returns at once)."""
    while True:
        yield b"x" * 65536
        await asyncio.sleep(0)


async def respond(send, status: int, body: bytes, headers=()) -> None:
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), *headers]})
    await send({"type": "http.response.body", "body": body})


class Served(NamedTuple):
    url: str
    directory: ReplicaDirectory
    server: uvicorn.Server
    thread: threading.Thread


def serve(app, directory: ReplicaDirectory, port: int, trusted_proxies: str = "127.0.0.1", **limits) -> Served:
    """`app` behind the affinity middleware on a uvicorn server in a thread; `trusted_proxies`: the
    addresses whose X-Forwarded-For uvicorn believes (FORWARDED_ALLOW_IPS)."""
    forwarder = ReplicaForwarder(directory.id, **limits)
    server = uvicorn.Server(uvicorn.Config(ReplicaAffinity(app, directory, forwarder), host="127.0.0.1", port=port,
                                           log_level="warning", lifespan="off", forwarded_allow_ips=trusted_proxies,
                                           timeout_graceful_shutdown=1))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.02)
    return Served(f"http://127.0.0.1:{port}", directory, server, thread)


def stop(served: Served) -> None:
    served.server.should_exit = True
    served.thread.join(10)


class Pair(NamedTuple):
    a: Served
    b: Served
    peer: PeerApp
    table: SqliteReplicaTable


@pytest.fixture(scope="module")
def pair(tmp_path_factory) -> Iterator[Pair]:
    table = SqliteReplicaTable(tmp_path_factory.mktemp("directory") / "replicas.sqlite3")
    ports = free_port(), free_port()
    directories = [ReplicaDirectory(table, f"http://127.0.0.1:{port}", beat_every=0.2, dead_after=1.0)
                   for port in ports]
    for directory in directories:
        directory.start()
    peer = PeerApp()
    # A believes no proxy (a visitor's X-Forwarded-For is a claim); B believes its loopback peers (A).
    a = serve(PeerApp(), directories[0], ports[0], trusted_proxies="192.0.2.1", **LIMITS)
    b = serve(peer, directories[1], ports[1])
    wait_until(lambda: a.directory.peer_url(b.directory.id) == b.url)
    yield Pair(a, b, peer, table)
    for served in (a, b):
        stop(served)
        served.directory.stop()


def wait_until(condition, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def cookie_for(served: Served) -> dict[str, str]:
    return {"cookie": f"{COOKIE}={served.directory.id}"}


# -- what a forward carries -----------------------------------------------------------------------

def test_a_request_is_streamed_to_the_peer_its_cookie_names_and_back(pair):
    body = b"x" * 3000
    chunks = iter([body[:1000], body[1000:]])  # chunked: no Content-Length
    response = httpx.post(pair.a.url + "/echo?q=1&r=%2F", content=chunks, timeout=10,
                          headers={**cookie_for(pair.b), "connection": "keep-alive, x-hop", "x-hop": "private",
                                   "x-forwarded-for": "6.6.6.6", "x-custom": "kept"})
    assert response.status_code == 200 and response.headers[SERVED_BY] == pair.b.directory.id
    echoed = response.json()
    assert echoed["length"] == 3000 and echoed["path"] == "/echo" and echoed["query"] == "q=1&r=%2F"
    seen = echoed["headers"]
    assert seen["x-custom"] == "kept" and "x-hop" not in seen  # a header the Connection header names is hop-by-hop
    # The forwarding headers say what A concluded (it trusts no proxy: the visitor's own address),
    # not what the visitor claimed; the mark names A; Host is the one the visitor used.
    assert seen["x-forwarded-for"] == "127.0.0.1" and seen["x-forwarded-proto"] == "http"
    assert seen[FORWARDED_HEADER.decode()] == pair.a.directory.id
    assert seen["host"] == pair.a.url.removeprefix("http://")
    assert "set-cookie" not in response.headers  # the cookie already names the replica that served
    # A scheme the balancer reported passes as it came: Gradio builds its URLs from it on either replica.
    proto = httpx.get(pair.a.url + "/echo", headers={**cookie_for(pair.b), "x-forwarded-proto": "https"}, timeout=10)
    assert proto.json()["headers"]["x-forwarded-proto"] == "https"


def test_the_peers_cookies_reach_its_visitor_but_are_not_kept_for_others(pair):
    first = httpx.get(pair.a.url + "/set-cookie", headers=cookie_for(pair.b), timeout=10)
    assert first.headers[SERVED_BY] == pair.b.directory.id and first.cookies["secret"] == "peer-only"
    second = httpx.get(pair.a.url + "/echo", headers=cookie_for(pair.b), timeout=10)
    assert second.json()["headers"]["cookie"] == f"{COOKIE}={pair.b.directory.id}"  # no "secret" from the first


def test_an_event_stream_flows_and_a_visitor_who_leaves_ends_it_at_the_peer(pair):
    pair.peer.stream_closed.clear()
    with httpx.stream("GET", pair.a.url + "/stream", headers=cookie_for(pair.b), timeout=10) as stream:
        assert stream.headers[SERVED_BY] == pair.b.directory.id
        lines = stream.iter_lines()
        assert [next(lines) for _ in range(4)] == ["data: tick", "", "data: tick", ""]
        # Longer than the idle timeout: a stream that keeps sending is never cut.
        time.sleep(LIMITS["idle_timeout"] * 2)
        assert next(lines) == "data: tick"
    assert pair.peer.stream_closed.wait(5)  # the peer saw the visitor leave (Gradio's heartbeat: session ended)
    wait_until(lambda: pair.peer.streams_open == 0)


# -- bounds -----------------------------------------------------------------------------------------

def test_a_body_over_the_limit_is_refused_sized_or_chunked(pair):
    big = b"x" * (LIMITS["max_body"] + 1)
    for content in (big, iter([big[:2000], big[2000:]])):
        response = httpx.post(pair.a.url + "/echo", content=content, headers=cookie_for(pair.b), timeout=10)
        assert response.status_code == 413 and "larger than" in response.json()["error"]
        assert response.headers[SERVED_BY] == pair.a.directory.id and "set-cookie" not in response.headers


def raw_request(url: str, head: str) -> socket.socket:
    host, port = url.removeprefix("http://").split(":")
    sock = socket.create_connection((host, int(port)), timeout=10)
    sock.sendall(head.encode())
    return sock


def read_answer(sock: socket.socket) -> bytes:
    answer = b""
    while chunk := sock.recv(65536):
        answer += chunk
        if b"\r\n\r\n" in answer and answer.split(b"\r\n\r\n", 1)[1].endswith(b"}"):
            break
    return answer


def test_a_trickled_body_is_a_408_within_the_body_time(pair):
    sock = raw_request(pair.a.url, f"POST /echo HTTP/1.1\r\nHost: x\r\nCookie: {COOKIE}={pair.b.directory.id}\r\n"
                                   "Content-Length: 1000\r\n\r\n")
    started = time.monotonic()
    with sock:
        for _ in range(100):  # one byte every 0.3 s: never idle long enough for the idle timeout
            sock.sendall(b"x")
            if select.select([sock], [], [], 0.3)[0]:
                break
        answer = read_answer(sock)
        # And the connection is closed: the rest of the body is not waited for. A byte this side sent after
        # the answer, still unread when the server closed, makes its close a reset (seen on a busy machine).
        try:
            rest = sock.recv(1)
        except ConnectionResetError:
            rest = b""
        assert rest == b""
    assert answer.startswith(b"HTTP/1.1 408") and b"too slowly" in answer
    assert time.monotonic() - started < LIMITS["body_timeout"] + 2


def test_a_silent_peer_is_a_504_after_the_idle_time(pair):
    started = time.monotonic()
    response = httpx.get(pair.a.url + "/silent", headers=cookie_for(pair.b), timeout=10)
    assert response.status_code == 504 and "did not answer in time" in response.json()["error"]
    assert LIMITS["idle_timeout"] <= time.monotonic() - started < LIMITS["idle_timeout"] + 2


def test_forwards_at_once_are_capped_and_a_visitor_who_stops_reading_frees_the_slot(pair):
    readers = [raw_request(pair.a.url, f"GET /flood HTTP/1.1\r\nHost: x\r\nCookie: {COOKIE}="
                                       f"{pair.b.directory.id}\r\n\r\n") for _ in range(LIMITS["max_forwards"])]
    try:
        for sock in readers:
            assert sock.recv(100).startswith(b"HTTP/1.1 200")
        # Both slots are held: the next forward is refused at once, in words.
        refused = httpx.get(pair.a.url + "/echo", headers=cookie_for(pair.b), timeout=10)
        assert refused.status_code == 503 and "busy" in refused.json()["error"]
        assert refused.headers[SERVED_BY] == pair.a.directory.id
        # The readers read no more: once the socket buffers are full, each forward waits on a visitor
        # who does not read, and lets go after the idle time.
        started = time.monotonic()
        wait_until(lambda: httpx.get(pair.a.url + "/echo", headers=cookie_for(pair.b), timeout=10).status_code == 200)
        assert time.monotonic() - started < 5
    finally:
        for sock in readers:
            sock.close()


# -- who serves ---------------------------------------------------------------------------------------

def test_no_cookie_its_own_or_a_forged_one_is_served_here_with_the_cookie_set(pair):
    own = pair.a.directory.id
    for headers in ({}, {"cookie": f"{COOKIE}={own}"}, {"cookie": f"{COOKIE}={pair.b.url}"},
                    {"cookie": f"{COOKIE}=ffffffffffffffff"}, {"cookie": f'other=1; {COOKIE}="{pair.b.url}"'},
                    {"cookie": f"{COOKIE}={pair.b.directory.id}", FORWARDED_HEADER.decode(): "someone"}):
        response = httpx.get(pair.a.url + "/", headers=headers, timeout=10)
        assert response.json() == {"local": True} and response.headers[SERVED_BY] == own, headers
        expected = None if headers.get("cookie") == f"{COOKIE}={own}" else own
        assert response.cookies.get(COOKIE) == expected, headers
    response = httpx.get(pair.a.url + "/", timeout=10)
    assert response.headers["set-cookie"] == f"{COOKIE}={own}; Path=/; HttpOnly; SameSite=Lax"


def test_a_peer_that_started_since_the_last_beat_is_found_at_once(pair):
    # A replica that beats once an hour knows only the peers of its start. A newcomer registers
    # (here at B's address): a cookie naming it makes the replica read the directory at once
    # (at most twice a second, so a forged id cannot make it query more).
    here = ReplicaDirectory(pair.table, f"http://127.0.0.1:{free_port()}", beat_every=3600)
    here.start()
    served = serve(PeerApp(), here, int(here.url.rsplit(":", 1)[1]), **LIMITS)
    newcomer = new_replica_id()
    try:
        time.sleep(REFRESH_AT_MOST_EVERY)
        pair.table.beat(newcomer, pair.b.url, first=False)
        assert here.peer_url(newcomer) is None
        response = httpx.get(served.url + "/echo", headers={"cookie": f"{COOKIE}={newcomer}"}, timeout=10)
        assert response.headers[SERVED_BY] == pair.b.directory.id  # forwarded to the newcomer's URL
        assert response.json()["headers"][FORWARDED_HEADER.decode()] == here.id
    finally:
        pair.table.remove(newcomer)
        stop(served)
        here.stop()


def test_a_peer_that_stops_answering_is_served_here_then_leaves_the_directory(pair, tmp_path):
    table = SqliteReplicaTable(tmp_path / "replicas.sqlite3")
    here = ReplicaDirectory(table, pair.a.url, beat_every=0.1, dead_after=0.5)
    gone_port = free_port()
    gone = ReplicaDirectory(table, f"http://127.0.0.1:{gone_port}", beat_every=0.1, dead_after=0.5)
    here.start()
    gone.start()
    served = serve(PeerApp(), here, free_port(), **LIMITS)
    try:
        wait_until(lambda: here.peer_url(gone.id) is not None)
        # Listed as live, but nothing listens at its URL (a replica killed with -9): served here.
        response = httpx.get(served.url + "/", headers={"cookie": f"{COOKIE}={gone.id}"}, timeout=10)
        assert response.json() == {"local": True} and response.cookies[COOKIE] == here.id
        gone._stop.set()  # its heartbeat stops, its row stays (kill -9 removes nothing)
        wait_until(lambda: here.peer_url(gone.id) is None, timeout=5)
        assert gone.id in dict(table_rows(table))  # dead, not deleted: the next start's housekeeping deletes it
    finally:
        stop(served)
        here.stop()


def table_rows(table: SqliteReplicaTable) -> list[tuple[str, str]]:
    import sqlite3

    with sqlite3.connect(table.path) as connection:
        return connection.execute("SELECT id, url FROM replicas").fetchall()


# -- the directory ------------------------------------------------------------------------------------

def test_registering_replaces_an_earlier_life_at_the_same_url_and_stopping_leaves(tmp_path):
    table = SqliteReplicaTable(tmp_path / "replicas.sqlite3")
    before = ReplicaDirectory(table, "http://10.0.0.5:7860")
    other = ReplicaDirectory(table, "http://10.0.0.6:7860")
    before.start()
    other.start()
    before._stop.set()  # killed: its row stays
    before._thread.join()
    after = ReplicaDirectory(table, "http://10.0.0.5:7860")  # restarted at the same address, a new id
    after.start()
    try:
        assert dict(table_rows(table)) == {after.id: "http://10.0.0.5:7860", other.id: "http://10.0.0.6:7860"}
        assert after.peers == {other.id: "http://10.0.0.6:7860"}  # never itself
    finally:
        after.stop()
        other.stop()
    assert table_rows(table) == []


def test_replica_url_and_database_url_are_checked_at_start(monkeypatch, tmp_path):
    for good, expected in (("http://10.0.0.5:7860", "http://10.0.0.5:7860"),
                           ("https://a.internal/", "https://a.internal")):
        assert replica_url(good) == expected
    for bad in ("10.0.0.5:7860", "ftp://x:1", "http://x:1/app", "http://user:pw@x:1", "http://x:port", "http://"):
        with pytest.raises(SystemExit, match="REPLICA_URL"):
            replica_url(bad)
    monkeypatch.delenv("REPLICA_URL", raising=False)
    assert ReplicaDirectory.from_environment() is None  # one replica: nothing to route
    monkeypatch.setenv("REPLICA_URL", "http://127.0.0.1:7860")
    monkeypatch.setenv("DATABASE_URL", "mysql://user:secret@db/app")
    with pytest.raises(SystemExit) as error:
        ReplicaDirectory.from_environment()
    assert "DATABASE_URL" in str(error.value) and "secret" not in str(error.value)
    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{tmp_path}/replicas.sqlite3")
    directory = ReplicaDirectory.from_environment()
    assert directory.url == "http://127.0.0.1:7860" and (tmp_path / "replicas.sqlite3").is_file()


def test_install_adds_nothing_for_one_replica():
    from fastapi import FastAPI

    app = FastAPI()
    before = (list(app.user_middleware), app.router.lifespan_context)
    assert affinity.install(app, None) is None
    assert (list(app.user_middleware), app.router.lifespan_context) == before


# -- the directory on PostgreSQL (replicas on many machines) ----------------------------------------

@pytest.fixture
def replicas_postgres(request):
    """(the session's PostgreSQL server, a fresh database on it): conftest's postgres_server, which comes
    with the store layer (tests/postgres.py)."""
    try:
        server = request.getfixturevalue("postgres_server")
    except pytest.FixtureLookupError:
        pytest.skip("no postgres_server fixture in this checkout: it comes with the store layer (tests/postgres.py)")
    url = server.new_database()
    yield server, url
    server.drop_database(url)


def test_the_directory_on_postgresql_uses_its_clock_and_outlives_a_restart(replicas_postgres):
    from api.replicas import PostgresReplicaTable

    server, url = replicas_postgres
    tables: list[PostgresReplicaTable] = []
    # Replicas starting together create the table once (an advisory lock), not racing on it.
    threads = [threading.Thread(target=lambda: tables.append(PostgresReplicaTable(url))) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    directories = [ReplicaDirectory(table, f"http://10.0.0.{i}:7860", beat_every=0.1, dead_after=1.0)
                   for i, table in enumerate(tables)]
    for directory in directories:
        directory.start()
    first, second, third = directories
    try:
        wait_until(lambda: first.peers == {second.id: second.url, third.id: third.url})
        third._stop.set()  # killed: no more beats, its row stays
        wait_until(lambda: third.id not in first.peers, timeout=5)
        # PostgreSQL restarts: the directory keeps routing with what it knew, then beats again.
        server.stop("immediate")
        time.sleep(0.5)
        assert first.peers == {second.id: second.url}
        server.start_again()
        wait_until(lambda: not first._failing and first.peers == {second.id: second.url}, timeout=30)
    finally:
        for directory in (first, second):
            directory.stop()
    assert list(tables[0].live(3600)) == [third.id]  # the stopped ones left; the killed one ages out
