"""Issue 18's attacks on the Gradio side of a running app, and what other visitors see meanwhile.

    python -m benchmarks.attacks.hostile followers http://127.0.0.1:7860/ --token T   # item 1: 1,100 joins of watch_model1
    python -m benchmarks.attacks.hostile joins http://127.0.0.1:7860/                 # item 2: 5,000 joins, fresh sessions
    python -m benchmarks.attacks.hostile uploads http://127.0.0.1:7860/ --cache DIR   # item 10: 100 uploads of 4.9 MB
    python -m benchmarks.attacks.hostile slow http://127.0.0.1:7860/ --count 20000    # item 9: slow request heads
    python -m benchmarks.attacks.hostile malformed http://127.0.0.1:7860/ --log LOG    # event calls that fail, 1 MB each
    python -m benchmarks.attacks.hostile unread http://127.0.0.1:7860/ --clients 200 --pid PID  # one session, never read
    python -m benchmarks.attacks.hostile progress http://127.0.0.1:7860/ --clients 50 --pid PID  # upload ids never read

Each prints one JSON line of figures (the README's reliability rows quote them, before and after).
tests/test_hostile_gradio.py performs the same attacks through these functions against an app it starts.
"""
from __future__ import annotations

import argparse
import io
import json
import socket
import statistics
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx


def client_headers(client: str | None) -> dict[str, str]:
    """Requests from 127.0.0.1 (a trusted proxy by default) speak for the address in X-Forwarded-For:
    how one machine plays many visitors."""
    return {"X-Forwarded-For": client} if client else {}


def fn_indices(base: str) -> dict[str, int]:
    config = httpx.get(base + "config", timeout=30).json()
    return {dep.get("api_name"): dep["id"] for dep in config["dependencies"] if dep.get("api_name")}


def join(http: httpx.Client, base: str, fn_index: int, data: list, *, session: str | None = None,
         client: str | None = None) -> tuple[int, str]:
    session = session or uuid.uuid4().hex
    try:
        answer = http.post(base + "gradio_api/queue/join", headers=client_headers(client), timeout=30,
                           json={"data": data, "fn_index": fn_index, "session_hash": session, "event_data": None,
                                 "trigger_id": None})
    except httpx.HTTPError as error:
        return 0, repr(error)
    return answer.status_code, answer.text


def call(base: str, fn_index: int, data: list, *, client: str | None = None, timeout: float = 30.0,
         first_update: bool = False) -> dict[str, Any]:
    """Join the queue and read the event's stream until it completes (or, with `first_update`, until its
    first streamed update). Returns {"ok", "seconds", "status", "last"}."""
    session = uuid.uuid4().hex
    started = time.monotonic()
    result: dict[str, Any] = {"ok": False, "seconds": None, "status": None, "last": None}
    try:
        with httpx.Client(timeout=timeout) as http:
            status, text = join(http, base, fn_index, data, session=session, client=client)
            result["status"] = status
            if status != 200:
                result["last"] = text[:200]
                result["seconds"] = time.monotonic() - started
                return result
            url = base + f"gradio_api/queue/data?session_hash={session}"
            with http.stream("GET", url, headers=client_headers(client)) as stream:
                for line in stream.iter_lines():
                    if not line.startswith("data:"):
                        continue
                    message = json.loads(line[5:])
                    result["last"] = message
                    if first_update and message.get("msg") == "process_generating":
                        result["ok"] = True
                        break
                    if message.get("msg") in ("process_completed", "close_stream", "unexpected_error"):
                        result["ok"] = message.get("msg") == "process_completed" and bool(message.get("success"))
                        break
                    if time.monotonic() - started > timeout:
                        break
    except httpx.HTTPError as error:
        result["last"] = repr(error)
    result["seconds"] = time.monotonic() - started
    return result


def png_of_a_seven() -> bytes:
    from PIL import Image, ImageDraw

    image = Image.new("RGB", (280, 280), "white")
    ImageDraw.Draw(image).line([(70, 60), (210, 60), (120, 230)], fill="black", width=22)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def upload(base: str, content: bytes, *, name: str = "digit.png", client: str | None = None,
           http: httpx.Client | None = None) -> tuple[int, Any]:
    own = http is None
    http = http or httpx.Client(timeout=60)
    try:
        answer = http.post(base + "gradio_api/upload", files={"files": (name, content, "application/octet-stream")},
                           headers=client_headers(client))
        return answer.status_code, answer.json() if answer.headers.get("content-type", "").startswith(
            "application/json") else answer.text
    except httpx.HTTPError as error:
        return 0, repr(error)
    finally:
        if own:
            http.close()


def file_data(path: str) -> dict:
    return {"path": path, "meta": {"_type": "gradio.FileData"}}


def visitor_events(base: str, *, token: str | None, client: str, rounds: int = 3, train: bool = True) -> dict:
    """Another visitor's Gradio events, each timed: model_status, predict, save_drawing and (with the token)
    train_model1 until its first streamed update (the run is cancelled over REST after it)."""
    fns = fn_indices(base)
    status, files = upload(base, png_of_a_seven(), client=client)
    assert status == 200, (status, files)
    image = file_data(files[0])
    timings: dict[str, list] = {"model_status": [], "predict": [], "save_drawing": [], "train_model1": []}
    failures = []
    for _ in range(rounds):
        for name, data in (("model_status", []), ("predict", [image, "model1", False]),
                           ("save_drawing", [image, 7, token or ""])):
            result = call(base, fns[name], data, client=client)
            timings[name].append(result["seconds"])
            if not result["ok"]:
                failures.append((name, result["status"], str(result["last"])[:200]))
    if train and token:
        inputs = [1, 200, 0.1, 1000, token, False]
        result = call(base, fns["train_model1"], inputs, client=client, timeout=60, first_update=True)
        timings["train_model1"].append(result["seconds"])
        if not result["ok"]:
            failures.append(("train_model1", result["status"], str(result["last"])[:200]))
        httpx.post(base + "train/model1/cancel", headers={"Authorization": f"Bearer {token}"}, timeout=30)
    return {"max_seconds": {name: round(max(values), 3) for name, values in timings.items() if values},
            "failures": failures}


# -- item 1: followers joined by fn_index and never read ------------------------------------------

def hostile_followers(base: str, count: int, *, clients: int = 1, threads: int = 16) -> dict[str, int]:
    """Join watch_model1 and watch_model2 `count` times in all (fresh sessions, streams never opened),
    from `clients` addresses; returns the join answers' status counts."""
    fns = fn_indices(base)
    watchers = [fns["watch_model1"], fns["watch_model2"]]
    statuses: dict[int, int] = {}
    lock = threading.Lock()

    def one(i: int) -> None:
        with httpx.Client(timeout=30) as http:
            status, _ = join(http, base, watchers[i % 2], [""], client=f"198.51.100.{i % clients + 1}")
        with lock:
            statuses[status] = statuses.get(status, 0) + 1

    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(one, range(count)))
    return statuses


# -- item 2: joins with fresh session hashes -------------------------------------------------------

def fresh_session_joins(base: str, count: int, *, threads: int = 16, clients: int = 1,
                        fn_name: str = "model_status", session: str | list[str] | None = None) -> dict[str, Any]:
    """`count` joins of `fn_name`'s event, each with a new session hash (or all with `session`, or in turn with
    each of a list of sessions) and its stream never read, from `clients` addresses over `threads` threads."""
    fns = fn_indices(base)
    fn_index = fns[fn_name]
    statuses: dict[int, int] = {}
    samples: dict[int, str] = {}  # the first answer's text per status
    lock = threading.Lock()
    started = time.monotonic()

    def worker(indices: range) -> None:
        with httpx.Client(timeout=30) as http:
            for i in indices:
                known = session[i % len(session)] if isinstance(session, list) else session
                status, text = join(http, base, fn_index, [], session=known,
                                    client=f"203.0.113.{i % clients + 1}" if clients > 1 else "203.0.113.1")
                with lock:
                    statuses[status] = statuses.get(status, 0) + 1
                    samples.setdefault(status, text[:300])

    per = -(-count // threads)
    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(worker, [range(i * per, min(count, (i + 1) * per)) for i in range(threads)]))
    return {"joins": count, "statuses": statuses, "samples": samples, "seconds": round(time.monotonic() - started, 1)}


def unread_session_rounds(base: str, rounds: int, per_round: int, *, clients: int = 200, pid: int | None = None,
                          fn_name: str = "model_status") -> dict[str, Any]:
    """One session hash joins `per_round` times a round from `clients` addresses (each under the join rate) and
    never reads its stream; with `pid`, the server's growth after each round. Then the session reads its
    stream and joins once more. Returns {"session", "rounds": [{statuses, grown}], "read", "after_reading"}."""
    session = uuid.uuid4().hex
    before = process_usage(pid) if pid else None
    report: dict[str, Any] = {"session": session, "rounds": []}
    for _ in range(rounds):
        result = fresh_session_joins(base, per_round, threads=16, clients=clients, fn_name=fn_name, session=session)
        time.sleep(2)
        report["rounds"].append({"statuses": result["statuses"], "seconds": result["seconds"],
                                 "refusal": result["samples"].get(429, "")[:200],
                                 **({"grown": usage_grown(pid, before)} if pid else {})})
    report["read"] = read_session(base, session)
    with httpx.Client(timeout=30) as http:
        report["after_reading"] = join(http, base, fn_indices(base)[fn_name], [], session=session,
                                       client="203.0.113.250")[0]
    return report


def read_session(base: str, session: str, *, timeout: float = 60.0) -> dict[str, int]:
    """Read a session's stream until Gradio closes it (every result read); returns {message kind: count}."""
    kinds: dict[str, int] = {}
    started = time.monotonic()
    with httpx.Client(timeout=timeout) as http, \
            http.stream("GET", base + f"gradio_api/queue/data?session_hash={session}") as stream:
        for line in stream.iter_lines():
            if line.startswith("data:"):
                kind = json.loads(line[5:]).get("msg", "?")
                kinds[kind] = kinds.get(kind, 0) + 1
                if kind == "close_stream" or time.monotonic() - started > timeout:
                    break
    return kinds


def upload_progress_flood(base: str, gets: int, uploads: int, *, threads: int = 128,
                          clients: int = 50) -> dict[str, Any]:
    """`gets` GETs of /gradio_api/upload_progress with ids nobody uploaded (each waits Gradio's 3 s, then 404)
    and `uploads` one-byte uploads with a fresh upload_id whose progress nobody reads, from `clients` addresses."""
    statuses: dict[str, dict[int, int]] = {"get": {}, "upload": {}}
    lock = threading.Lock()
    started = time.monotonic()

    def count(kind: str, status: int) -> None:
        with lock:
            statuses[kind][status] = statuses[kind].get(status, 0) + 1

    def request(kind: str, i: int) -> None:
        upload_id, client = uuid.uuid4().hex, client_headers(f"203.0.113.{i % clients + 1}")
        try:
            with httpx.Client(timeout=30, headers=client) as http:
                if kind == "get":
                    answer = http.get(base + f"gradio_api/upload_progress?upload_id={upload_id}")
                else:
                    answer = http.post(base + f"gradio_api/upload?upload_id={upload_id}",
                                       files={"files": ("x.bin", uuid.uuid4().bytes[:1], "application/octet-stream")})
            count(kind, answer.status_code)
        except httpx.HTTPError:
            count(kind, 0)

    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(lambda i: request("upload", i), range(uploads)))
        list(pool.map(lambda i: request("get", i), range(gets)))
    return {"gets": gets, "uploads": uploads, "statuses": statuses, "seconds": round(time.monotonic() - started, 1)}


def upload_with_progress(base: str, content: bytes, *, client: str = "192.0.2.80") -> dict[str, Any]:
    """What the page does for a file: read an upload's progress while it uploads. Returns the upload's
    status and the progress messages' kinds."""
    upload_id = uuid.uuid4().hex
    kinds: list[str] = []

    def follow() -> None:
        with httpx.Client(timeout=30) as http, http.stream(
                "GET", base + f"gradio_api/upload_progress?upload_id={upload_id}",
                headers=client_headers(client)) as stream:
            for line in stream.iter_lines():
                if line.startswith("data:"):
                    kinds.append(json.loads(line[5:])["msg"])

    reader = threading.Thread(target=follow)
    reader.start()
    time.sleep(0.3)  # the reader waits for the upload to start, as the page's does
    with httpx.Client(timeout=60) as http:
        answer = http.post(base + f"gradio_api/upload?upload_id={upload_id}",
                           files={"files": ("digit.png", content, "application/octet-stream")},
                           headers=client_headers(client))
    reader.join(30)
    return {"status": answer.status_code, "progress": kinds}


# -- event calls that fail (the server's log) -----------------------------------------------------

def malformed_calls(base: str, count: int, *, megabytes: float = 1.0, client: str | None = None,
                    log: Path | None = None) -> dict[str, Any]:
    """`count` event calls that fail, in turn: the Draw tab's `predict` sent one input of `megabytes`
    (it takes three), a page-only event (no server function), an event number the page lacks and an
    event that reads its event data sent none; each joined with a new session and its stream read to
    the end. With `log` (the server's log file), how much the log grew. Returns {"join_statuses", "outcomes": {what the stream ended with: count},
    "errors": {one error text per kind}, "log_bytes_per_call"}."""
    config = httpx.get(base + "config", timeout=30).json()
    fns = {dep.get("api_name"): dep["id"] for dep in config["dependencies"]}
    page_only = next(dep["id"] for dep in config["dependencies"] if not dep.get("backend_fn"))
    missing = max(dep["id"] for dep in config["dependencies"]) + 1000
    big = "x" * int(megabytes * 2 ** 20)
    # The Drawings tab's row selection, which reads its event data (the row), sent none: Gradio failed on it
    # (a TypeError after the inputs passed, with a traceback) until api/gradio_fixes.py refused it in words.
    selects = next(dep for dep in config["dependencies"] if dep.get("api_name") == "select_drawing")
    kinds = [("too_few_inputs", fns["predict"], [big]), ("page_only", page_only, [big]), ("unknown_event", missing, [big]),
             ("no_event_data", selects["id"], [None] * len(selects["inputs"]))]
    before = log.stat().st_size if log else 0
    statuses: dict[int, int] = {}
    outcomes: dict[str, int] = {}
    errors: dict[str, str] = {}
    for index in range(count):
        kind, fn_index, data = kinds[index % len(kinds)]
        result = call(base, fn_index, data, client=client)
        statuses[result["status"]] = statuses.get(result["status"], 0) + 1
        last = result["last"]
        if isinstance(last, dict):
            outcome = f"{last.get('msg')}, success {last.get('success')}"
            errors.setdefault(kind, str((last.get("output") or {}).get("error"))[:200])
        else:
            outcome = f"HTTP {result['status']}"
            errors.setdefault(kind, str(last)[:200])
        outcomes[outcome] = outcomes.get(outcome, 0) + 1
    report: dict[str, Any] = {"calls": count, "megabytes_each": megabytes, "join_statuses": statuses,
                              "outcomes": outcomes, "errors": errors}
    if log:
        time.sleep(1)  # the queue's worker prints after the stream's last message
        report["log_bytes_per_call"] = round((log.stat().st_size - before) / count)
    return report


# -- item 9: slow request heads ---------------------------------------------------------------------

def open_slow_heads(port: int, count: int, *, sources: list[str] | None = None,
                    host: str = "127.0.0.1") -> list[socket.socket]:
    """`count` connections that each send the start of a request head and nothing more."""
    sockets, failed = [], 0
    for i in range(count):
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.settimeout(1)
        try:
            if sources:
                sock.bind((sources[i % len(sources)], 0))
            sock.connect((host, port))
            sock.sendall(b"GET /env HTTP/1.1\r\nHost: x\r\nX-Slow: ")
        except OSError:
            sock.close()
            failed += 1
            if failed >= 50:  # the server accepts no more (its descriptors are gone): hold what we have
                break
            continue
        sockets.append(sock)
    return sockets


def still_open(sockets: list[socket.socket]) -> int:
    """How many of `sockets` the server has not closed (a closed one reads EOF or a reset at once)."""
    alive = 0
    for sock in sockets:
        sock.setblocking(False)
        try:
            alive += bool(sock.recv(1))  # b"": the server closed it
        except BlockingIOError:
            alive += 1
        except OSError:
            pass
    return alive


def new_client_requests(port: int, count: int, *, source: str | None = None, timeout: float = 5.0) -> dict:
    """`count` new connections each asking GET /env; how many were answered 200, and how fast."""
    answered, seconds = 0, []
    for _ in range(count):
        started = time.monotonic()
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=timeout,
                                          source_address=(source, 0) if source else None) as sock:
                sock.sendall(b"GET /env HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                head = sock.recv(64)
            if head.startswith(b"HTTP/1.1 200"):
                answered += 1
                seconds.append(time.monotonic() - started)
        except OSError:
            pass
    return {"asked": count, "answered": answered,
            "p50_ms": round(statistics.median(seconds) * 1000, 1) if seconds else None,
            "max_ms": round(max(seconds) * 1000, 1) if seconds else None}


def process_usage(pid: int) -> dict[str, float]:
    """A server process's resident memory (MiB) and the CPU seconds it has used, from Linux's /proc."""
    from benchmarks.machine import process_cpu_seconds, process_rss

    return {"rss_mib": process_rss(pid) / 2 ** 20, "cpu_seconds": process_cpu_seconds(pid)}


def usage_grown(pid: int, before: dict[str, float]) -> dict[str, float]:
    now = process_usage(pid)
    return {key: round(now[key] - before[key], 1) for key in before}


def cache_megabytes(folder: Path) -> float:
    return sum(path.stat().st_size for path in folder.rglob("*") if path.is_file()) / 2 ** 20 if folder.exists() else 0.0


# -- the command line ---------------------------------------------------------------------------------

def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("attack", choices=["followers", "joins", "uploads", "slow", "malformed", "unread", "progress"])
    parser.add_argument("url")
    parser.add_argument("--token", help="the server's TRAIN_TOKEN: the visitor's Train click uses it")
    parser.add_argument("--count", type=int)
    parser.add_argument("--clients", type=int, default=1, help="addresses the attack comes from (X-Forwarded-For)")
    parser.add_argument("--cache", type=Path, help="the server's GRADIO_TEMP_DIR, to measure")
    parser.add_argument("--log", type=Path, help="the server's log file, to measure (malformed)")
    parser.add_argument("--pid", type=int, help="the server's process id, to measure its memory and CPU (joins, unread, progress)")
    args = parser.parse_args(argv)
    base = args.url.rstrip("/") + "/"
    port = int(base.rstrip("/").rsplit(":", 1)[1])
    report: dict[str, Any] = {"attack": args.attack}
    if args.attack == "followers":
        started = time.monotonic()
        report["joins"] = hostile_followers(base, args.count or 1100, clients=args.clients)
        report["join_seconds"] = round(time.monotonic() - started, 1)
        time.sleep(2)
        report["visitor"] = visitor_events(base, token=args.token, client="192.0.2.50")
    elif args.attack == "joins":
        before = process_usage(args.pid) if args.pid else None
        report.update(fresh_session_joins(base, args.count or 5000, clients=args.clients))
        time.sleep(2)
        if before:
            report["server_grown"] = usage_grown(args.pid, before)
        report["visitor"] = visitor_events(base, token=args.token, client="192.0.2.51", rounds=1, train=False)
    elif args.attack == "unread":
        report.update(unread_session_rounds(base, 4, args.count or 3000, clients=args.clients, pid=args.pid))
    elif args.attack == "progress":
        before = process_usage(args.pid) if args.pid else None
        report.update(upload_progress_flood(base, args.count or 6000, args.count or 6000, clients=args.clients))
        if before:
            report["server_grown"] = usage_grown(args.pid, before)
        report["page_upload"] = upload_with_progress(base, png_of_a_seven())
    elif args.attack == "malformed":
        report.update(malformed_calls(base, args.count or 60, log=args.log, client="192.0.2.53"))
    elif args.attack == "uploads":
        content = b"\0" * int(4.9 * 2 ** 20)  # each upload made unique below: Gradio keeps one copy of equal files
        before = cache_megabytes(args.cache) if args.cache else None
        started = time.monotonic()
        statuses: dict[int, int] = {}
        with httpx.Client(timeout=60) as http:
            for i in range(args.count or 100):
                status, _ = upload(base, uuid.uuid4().bytes + content, name="big.png",
                                   client=f"203.0.113.{i % args.clients + 1}", http=http)
                statuses[status] = statuses.get(status, 0) + 1
        report.update({"statuses": statuses, "seconds": round(time.monotonic() - started, 1),
                       "accepted_mb": round(statuses.get(200, 0) * 4.9, 1)})
        if args.cache:
            time.sleep(2)
            report["cache_mb_before_after"] = [round(before, 1), round(cache_megabytes(args.cache), 1)]
    else:
        count = args.count or 20000
        held: list[socket.socket] = []
        started = time.monotonic()
        held = open_slow_heads(port, count)
        report["opened"] = len(held)
        report["open_seconds"] = round(time.monotonic() - started, 1)
        report["new_clients_while_held"] = new_client_requests(port, 20)
        time.sleep(12)
        report["slow_still_open_after_12s"] = still_open(held)
        report["new_clients_after_12s"] = new_client_requests(port, 20)
        for sock in held:
            sock.close()
    print(json.dumps(report))


if __name__ == "__main__":
    main()
