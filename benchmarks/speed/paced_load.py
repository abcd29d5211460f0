"""Paced users: each sends one POST every `interval` seconds on its own keep-alive connection.

Unlike benchmarks/speed/load.py (closed loop: a client sends its next request as soon as
the last one is answered), this models people drawing: a page asks for a
prediction every ~300 ms whatever the server does. All users run on one asyncio
loop in this process (100 threads would cost the shared cores more than the
server's own work), with a raw HTTP/1.1 client: no library parses more than
a status line and a Content-Length.
"""
from __future__ import annotations

import asyncio
import random
import time

from benchmarks.speed.load import LoadRun, _error, summarize
from benchmarks.speed.servers import HOST

CONNECT_TIMEOUT = 10.0
REQUEST_TIMEOUT = 30.0


def paced_load(port: int, path: str, bodies: list[bytes], *, users: int, interval: float, seconds: float,
               expect: bytes = b'"prediction"', seed: int = 0) -> dict:
    """`users` paced users for `seconds`; user i cycles through `bodies` from offset i.

    Returns load.summarize() figures plus "offered_rps" and "late_starts" (requests sent
    more than one interval after their slot: the users could not keep their pace).
    """
    run = asyncio.run(_run(port, path, bodies, users, interval, seconds, expect, random.Random(seed)))
    figures = summarize([run])
    figures["offered_rps"] = round(users / interval, 1)
    figures["late_starts"] = run.late_starts
    figures["interval_ms"] = round(1000 * interval)
    return figures


class _PacedRun(LoadRun):
    late_starts: int = 0


async def _run(port, path, bodies, users, interval, seconds, expect, rng) -> _PacedRun:
    run = _PacedRun(users, 0.0)
    began = time.perf_counter()
    deadline = began + seconds
    # Users start spread over one interval, as visitors do not all lift the pen at once.
    offsets = [rng.uniform(0, interval) for _ in range(users)]
    await asyncio.gather(*[_user(port, path, bodies, i, began + offsets[i], interval, deadline, expect, run)
                           for i in range(users)])
    run.seconds = time.perf_counter() - began
    return run


async def _user(port, path, bodies, index, first, interval, deadline, expect, run) -> None:
    requests = [_request(path, body, port) for body in bodies]
    connection = None
    slot, turn = first, index
    while slot < deadline:
        wait = slot - time.perf_counter()
        if wait > 0:
            await asyncio.sleep(wait)
        elif -wait > interval:
            run.late_starts += 1
        try:
            if connection is None:
                connection = await asyncio.wait_for(asyncio.open_connection(HOST, port), CONNECT_TIMEOUT)
            began = time.perf_counter()
            status, body = await asyncio.wait_for(_exchange(*connection, requests[turn % len(requests)]),
                                                  REQUEST_TIMEOUT)
            if status == 200 and expect in body:
                run.latencies_ms.append(1000 * (time.perf_counter() - began))
            else:
                _error(run, f"HTTP {status}: {body[:200]!r}")
        except (OSError, asyncio.TimeoutError, asyncio.IncompleteReadError, ValueError) as error:
            _error(run, f"{type(error).__name__}: {error}")
            if connection is not None:
                connection[1].close()
            connection = None  # the next request reconnects
        turn += 1
        slot += interval
    if connection is not None:
        connection[1].close()


def _request(path: str, body: bytes, port: int) -> bytes:
    head = (f"POST {path} HTTP/1.1\r\nHost: {HOST}:{port}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\nConnection: keep-alive\r\n\r\n")
    return head.encode() + body


async def _exchange(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, request: bytes) -> tuple[int, bytes]:
    writer.write(request)
    await writer.drain()
    status_line = await reader.readline()
    if not status_line:
        raise asyncio.IncompleteReadError(b"", None)
    status = int(status_line.split()[1])
    length = None
    while True:
        line = await reader.readline()
        if line in (b"\r\n", b"\n", b""):
            break
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value.strip())
    if length is None:
        raise ValueError("answer without Content-Length")
    return status, await reader.readexactly(length)
