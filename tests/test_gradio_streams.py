"""A result on the queue's event stream travels with the stream's end (api/gradio_streams.py).

gradio_client cancels a script's next call when `close_stream` reaches it after that call joined; the
live test holds back, for 0.5 s, whatever piece of the stream carries `close_stream` (a busy proxy or
network does this by chance; tests/test_replicas.py failed so once in CI). Without the fix Gradio
writes the result and the end as two pieces and the client loses a call (measured: the 2nd or 3rd of
five); with it both are one piece, so a late end comes with its result, and every call answers.
"""
from __future__ import annotations

import asyncio

import pytest

from api.gradio_streams import COMPLETED, CompletionWithItsEnd
from benchmarks.replicas import proxy as round_robin
from tests.app_server import ROOT
from tests.test_ui import ui_server  # noqa: F401  (the module's live app, started once)

DIGIT_PNG = ROOT / "examples" / "digit.png"  # a drawn 3
RESULT = b'data: {"msg":"process_completed","event_id":"e","success":true}\n\n'
END = b'data: {"msg":"close_stream"}\n\n'
HEARTBEAT = b'data: {"msg":"heartbeat"}\n\n'


def body(data: bytes, more: bool = True) -> dict:
    return {"type": "http.response.body", "body": data, "more_body": more}


def run_scripted(script, hold: float = 0.05) -> list[tuple[float, bytes]]:
    """What reaches the visitor (time since start, body) when the app sends `script`'s messages, each
    after its delay."""

    async def main():
        sent = []
        loop = asyncio.get_running_loop()
        start = loop.time()

        async def visitor(message):
            if message["type"] == "http.response.body":
                sent.append((round(loop.time() - start, 3), message["body"]))

        async def app(scope, receive, send):
            await send({"type": "http.response.start", "status": 200, "headers": []})
            for delay, message in script:
                await asyncio.sleep(delay)
                await send(message)

        await CompletionWithItsEnd(app, hold=hold)({"type": "http", "path": "/gradio_api/queue/data"}, None, visitor)
        return sent

    return asyncio.run(main())


def test_a_result_and_the_end_that_follows_go_out_as_one_piece():
    sent = run_scripted([(0, body(HEARTBEAT)), (0, body(RESULT)), (0, body(END)), (0, body(b"", more=False))])
    assert [data for _, data in sent] == [HEARTBEAT, RESULT + END, b""]


def test_a_result_with_nothing_after_it_goes_alone_after_the_hold():
    """The session has another event pending: its stream stays open and the result must not wait for it."""
    sent = run_scripted([(0, body(RESULT)), (0.5, body(HEARTBEAT)), (0, body(b"", more=False))], hold=0.05)
    assert [data for _, data in sent] == [RESULT, HEARTBEAT, b""]
    assert sent[0][0] < 0.3  # the hold, not the next piece's 0.5 s


def bodies_sent(app, path: str = "/gradio_api/queue/data", hold: float = 10) -> list[bytes]:
    """The bodies that reach the visitor when `app` answers a request for `path` behind the middleware;
    an exception of the app is raised after them."""
    sent = []

    async def visitor(message):
        sent.append(message.get("body"))

    async def main():
        await CompletionWithItsEnd(app, hold=hold)({"type": "http", "path": path}, None, visitor)

    try:
        asyncio.run(main())
    except RuntimeError as error:
        sent.append(error)
    return sent


def test_an_app_that_ends_with_a_result_held_still_sends_it():
    async def failing(scope, receive, send):
        await send(body(RESULT))
        raise RuntimeError("the app failed")

    sent = bodies_sent(failing)
    assert sent[0] == RESULT and str(sent[1]) == "the app failed"


def test_other_routes_and_pieces_pass_as_they_come():
    async def results(scope, receive, send):
        await send(body(RESULT))  # e.g. /gradio_api/call/... writes its own stream format
        await send(body(HEARTBEAT))

    assert bodies_sent(results, "/gradio_api/upload") == [RESULT, HEARTBEAT]

    async def heartbeats(scope, receive, send):
        await send(body(HEARTBEAT))

    assert bodies_sent(heartbeats) == [HEARTBEAT]  # no result: nothing is held
    assert COMPLETED in RESULT and COMPLETED not in HEARTBEAT


@pytest.mark.slow
def test_gradio_client_keeps_every_call_when_the_streams_end_comes_late(ui_server, monkeypatch):
    from gradio_client import Client, handle_file

    pieces = []  # of every piece the proxy held back: whether the result came with it

    async def late_ends(source, target):
        while chunk := await source.read(round_robin.CHUNK):
            if b'"msg":"close_stream"' in chunk:
                pieces.append(COMPLETED in chunk)
                await asyncio.sleep(0.5)
            target.write(chunk)
            await target.drain()

    monkeypatch.setattr(round_robin, "_pipe", late_ends)
    with round_robin.running_proxy([ui_server[0]]) as proxy:
        client = Client(proxy.url, verbose=False)
        try:
            digits = [client.predict(handle_file(str(DIGIT_PNG)), "model1", False, api_name="/predict")[0]
                      for _ in range(5)]
        finally:
            client.close()
    assert digits == [3] * 5
    assert len(pieces) >= 5 and all(pieces), pieces
