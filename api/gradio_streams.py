"""The queue's event stream sends an event's result and the stream's end in one piece.

Why: gradio_client (2.7.2, the newest) loses a script's next call when the end of the stream reaches it
late. Its reader thread takes Gradio's `process_completed` message, the call returns, and the script's
next call joins the queue; if the `close_stream` message that followed the result has not been read by
then, the client counts the new event on the stream that is closing, and when `close_stream` arrives it
cancels that event: `concurrent.futures.CancelledError` ("event stream closed before the answer").
Gradio writes the two messages with two `send`s, so they travel as two pieces whenever the server is
busy, and every hop between (a balancer, a Space's proxy, a replica forwarding to its peer) can hold
the second one back. Found as a rare failure of tests/test_replicas.py on a loaded 2-core VM; a proxy
that holds back the piece carrying `close_stream` for 0.5 s makes it fail every time
(tests/test_gradio_streams.py).

`CompletionWithItsEnd` holds a body piece of `/gradio_api/queue/data` that carries a
`process_completed` message until the next piece (Gradio writes `close_stream`, when it comes, right
after with no wait between) and sends both as one; if nothing follows within HOLD seconds (the session
has other events pending, so the stream stays open), the held piece goes alone. Results are never
changed, only joined with what follows them.
"""
from __future__ import annotations

import asyncio
import contextlib

from starlette.types import ASGIApp, Message, Receive, Scope, Send

STREAM_PATH = "/gradio_api/queue/data"
COMPLETED = b'"msg":"process_completed"'  # as Gradio's orjson writes it (routes.queue_data's process_msg)
# Gradio writes close_stream right after a result with no await between (routes.queue_data_helper);
# the wait covers a busy event loop. A session with more events pending gets its result this late.
HOLD = 0.05  # s


class CompletionWithItsEnd:
    """ASGI middleware: on the queue's event stream, a result and the piece after it go out together."""

    def __init__(self, app: ASGIApp, path: str = STREAM_PATH, hold: float = HOLD):
        self.app = app
        self.path = path
        self.hold = hold

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope.get("path") != self.path:
            await self.app(scope, receive, send)
            return
        joined = JoinedSend(send, self.hold)
        try:
            await self.app(scope, receive, joined)
        finally:
            await joined.flush()


class JoinedSend:
    """`send` that keeps a result's piece back until the next piece or `hold` seconds, whichever is first."""

    def __init__(self, send: Send, hold: float):
        self.send = send
        self.hold = hold
        self.held: bytes | None = None
        self.lock = asyncio.Lock()  # the timer's send and the app's next send never interleave
        self.timer: asyncio.Task | None = None

    async def __call__(self, message: Message) -> None:
        async with self.lock:
            if message["type"] == "http.response.body":
                body = message.get("body", b"")
                if self.held is not None:
                    body, self.held = self.held + body, None
                    self._stop_timer()
                    message = {**message, "body": body}
                elif message.get("more_body", False) and COMPLETED in body:
                    self.held = body
                    self.timer = asyncio.ensure_future(self._send_alone_later())
                    return
            await self.send(message)

    async def _send_alone_later(self) -> None:
        await asyncio.sleep(self.hold)
        async with self.lock:
            if self.held is not None:
                body, self.held = self.held, None
                self.timer = None
                with contextlib.suppress(OSError, RuntimeError):  # the visitor may be gone; the app sees it next
                    await self.send({"type": "http.response.body", "body": body, "more_body": True})

    def _stop_timer(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None

    async def flush(self) -> None:
        """The app ended (or failed) with a piece still held: send it, as the app's last word."""
        self._stop_timer()
        async with self.lock:
            if self.held is not None:
                body, self.held = self.held, None
                with contextlib.suppress(OSError, RuntimeError):  # the visitor may be gone
                    await self.send({"type": "http.response.body", "body": body, "more_body": True})
