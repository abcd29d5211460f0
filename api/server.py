"""Serving Digit Studio in public: the Gradio UI mounted with its own file checks and limits
on, and uvicorn with a bound on request headers. `python app.py` calls `serve(app)`.

What each setting stops (each attack is in tests/test_security.py, run against `python app.py`):
- `demo.has_launched`: an event payload's FileData path naming a server file (/etc/passwd,
  /proc/self/environ, exports/model1.json, /dev/zero) is refused instead of copied into the
  Gradio cache and served (or hashed forever on the event loop).
- `show_error=False`: an unexpected exception reaches the page as "Error", not as its text
  (which quoted the payload's paths); our own messages are gr.Warning / gr.Error and still show.
- `max_file_size`: the 5 MB of a REST body, for /gradio_api/upload too.
- `delete_cache`: uploads and outputs older than CACHE_MAX_AGE are deleted on a schedule.
- `MAX_RUNNING_EVENTS`: a hundred open Train tabs do not take every queue slot from predictions.
- `GradioBodyLimit`: a request body to any Gradio route (queue/join, MCP, upload, ...) over the
  REST limit is a 413 before it is read whole: Gradio and the MCP library read bodies into memory.
- `HeaderLimitedProtocol`: a request whose line and headers exceed MAX_HEADER_BYTES is answered
  431 at once, before the parser has to hold it.
Issue 18 (tests/test_hostile_gradio.py):
- `harden_queue`: Gradio 6.31's queue loop no longer dies when more than 2,000 sessions join
  (api/gradio_fixes.py); `JoinRateLimit`: queue joins per client (api/gradio_joins.py).
- `UploadLimit`: uploads per client in bytes, and a total size for Gradio's cache (api/uploads.py).
- `ServerProtocol`: open connections per client and in all, and a time limit on request heads;
  the open-files limit raised at start (api/connections.py).
- `bound_tracebacks`, `words_for_bad_calls`: a malformed event call (an unknown event, too few
  inputs) is refused in words, and no visitor can fill the log (api/gradio_fixes.py);
  `GradioErrorsInOurWords`: Gradio's refusals carry {"error"} (api/gradio_errors.py).
- `lean_sessions`, `NoDeepLinks`: a fresh session hash cost 24 ms of the event loop and 362 KiB kept
  (3,000 fresh-session joins from 200 addresses: +378 MiB, 37 s of CPU); now neither, and at most GRADIO_SESSIONS_MAX sessions are kept;
  the deep-link route, unused here, no longer writes the page's state to disk; `no_monitoring`: no
  summary of the last 10,000 events is rebuilt after each event (15 ms each) (api/gradio_costs.py).
- `bound_unread`: one session hash that joined from 200 addresses and never read its stream grew the server
  by ~90 MiB per 600 events without end (its unread estimates); now it may leave 64 results unread, and a
  session Gradio drops takes its event ids along (api/gradio_unread.py); `harden_queue` sends no estimates to
  a session 32 messages behind.
- `bound_upload_progress`: every GET of /gradio_api/upload_progress left an asyncio.Event for its id and every
  upload with an upload_id its tracker, forever (6,000 requests: 6,000 and 3,000 kept); now at most 1,000
  uploads are tracked and an Event lives while a GET waits (api/upload_progress.py).
- `CompletionWithItsEnd`: the queue's stream sends a result and its close together, so a
  gradio_client script behind a proxy does not lose its next call (api/gradio_streams.py).
"""
from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from api.connections import ConnectionGuard, raise_open_files_limit, table
from api.errors import MAX_BODY_BYTES, body_too_large_message, send_error
from api.gradio_costs import NoDeepLinks, lean_sessions, no_monitoring
from api.gradio_errors import GradioErrorsInOurWords
from api.gradio_fixes import bound_tracebacks, harden_queue, words_for_bad_calls
from api.gradio_joins import JoinRateLimit
from api.gradio_streams import CompletionWithItsEnd
from api.gradio_unread import bound_unread
from api.proxies import forwarded_allow_ips
from api.upload_progress import bound_upload_progress
from api.uploads import UploadLimit, forget_removed_uploads

log = logging.getLogger(__name__)

ROOT = Path(__file__).resolve().parent.parent  # the source tree
# Request line + headers. h11 refuses past 16 KB too; nginx's default allows 4 x 8 KB lines.
# A browser's request to this app is ~1 KB (its largest header, Cookie, is a few hundred bytes).
MAX_HEADER_BYTES = 16 * 1024
# After a 431 the connection reads (and drops) what the client still sends for this long, so the
# client gets the answer instead of a connection reset, then closes.
REFUSED_LINGER = 1.0  # s
# The Gradio cache (uploads, drawings, output images): files older than this are deleted, checked
# every CACHE_MAX_AGE / 4. A drawing is read within milliseconds of its upload; an hour is generous.
CACHE_MAX_AGE = 3600  # s; $GRADIO_CACHE_MAX_AGE overrides it
# Gradio's queue runs at most this many events at once, in all (launch()'s max_threads, 40 by default,
# sizes both this and the thread pool). An open Train tab following a run holds one event for the
# whole run: 40 open tabs took every slot, and predictions waited (60 tabs: 11.8 s; 100 tabs: over
# 120 s, measured here). The streams are coroutines (ui/train_tab.py) that hold no thread, so the
# queue may run many more of them; threads stay at 40 and each event's own concurrency_limit holds.
MAX_RUNNING_EVENTS = 1000
GRACEFUL_SHUTDOWN = 5  # s: an open browser tab keeps a connection alive; Ctrl+C waits at most this long

_TOO_LARGE_BODY = (b'{"error":"The request line and headers are larger than %d KB: send fewer or smaller '
                   b'headers (a browser sends about 1 KB)"}' % (MAX_HEADER_BYTES // 1024))
TOO_LARGE_RESPONSE = (b"HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-type: application/json\r\n"
                      b"content-length: %d\r\nconnection: close\r\n\r\n" % len(_TOO_LARGE_BODY)) + _TOO_LARGE_BODY


class _HeadTooLarge(Exception):
    """Raised in a parser callback to stop parsing an oversized request head."""


class HeaderLimitedProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with a total limit on a request's line and headers.

    httptools has no such limit: it accumulates a header of any size (an 80 MB header
    took 13 s and 7 s of CPU, and other clients waited 5-6 s). Two checks, both cheap:
    - the bytes received while a request's head is incomplete, checked after each chunk is
      parsed (one huge header reaches on_header only when it ends, so this catches it early;
      a chunk that also holds the start of a body completes the head and is not held against it);
    - the URL and headers themselves once the head is complete, for one that arrived whole in
      one chunk (a chunk is at most 256 KB: the loop's read size).
    Past the limit the request is answered 431 and nothing more of it is parsed.
    """

    def connection_made(self, transport) -> None:  # type: ignore[override]
        self._received = 0  # bytes received while the current head is incomplete
        self._in_head = True
        self._too_large = False
        super().connection_made(transport)

    def data_received(self, data: bytes) -> None:
        if self._too_large:
            return  # drop the rest of an oversized head until the connection closes
        if self._in_head:
            self._received += len(data)
        super().data_received(data)
        if self._in_head and self._received > MAX_HEADER_BYTES and not self._too_large:
            self._refuse()

    def on_headers_complete(self) -> None:
        # A head that arrived whole in one chunk is measured here, in one pass (counting in on_header
        # instead cost a Python call per header: ~5 us more per request, measured).
        if len(self.url) + sum(len(name) + len(value) + 4 for name, value in self.headers) > MAX_HEADER_BYTES:
            self._too_large = True
            raise _HeadTooLarge  # httptools turns it into a parser error: see send_400_response
        self._in_head = False
        self._received = 0
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self._in_head = True  # a keep-alive connection's next request starts its head

    def send_400_response(self, msg: str) -> None:
        if self._too_large:  # the parser stopped on _HeadTooLarge: answer 431, not 400
            self._refuse()
        else:
            super().send_400_response(msg)

    def _refuse(self) -> None:
        self._too_large = True
        if self.transport.is_closing():
            return
        if self.cycle is not None and not self.cycle.response_complete:
            self.transport.close()  # a pipelined request is still being answered: no clean 431 possible
            return
        log.warning("refused a request whose line and headers exceed %d bytes", MAX_HEADER_BYTES)
        self.transport.write(TOO_LARGE_RESPONSE)
        if self.transport.can_write_eof():
            self.transport.write_eof()
        self.loop.call_later(REFUSED_LINGER, self.transport.close)


class ServerProtocol(ConnectionGuard, HeaderLimitedProtocol):
    """What `serve` runs: the header limit, plus bounds on open connections and slow heads (issue 18)."""


def cache_max_age() -> int:
    configured = os.environ.get("GRADIO_CACHE_MAX_AGE", "").strip()
    try:
        return max(1, int(configured)) if configured else CACHE_MAX_AGE
    except ValueError:
        log.warning("GRADIO_CACHE_MAX_AGE=%r is not a number of seconds; using %d", configured, CACHE_MAX_AGE)
        return CACHE_MAX_AGE


def private_paths(*folders: str | os.PathLike) -> list[str]:
    """Folders (or files) Gradio must never serve or accept (the exports, the source tree, the data
    location's versions, database and caches), except one that holds Gradio's own upload folder
    (a GRADIO_TEMP_DIR inside the project or the data location)."""
    from inference.image_io import gradio_upload_folder

    uploads = gradio_upload_folder()
    paths = []
    for folder in folders:
        path = Path(folder).resolve()
        if path != uploads and path not in uploads.parents:
            paths.append(str(path))
    return paths


def data_paths(data_dir: str | os.PathLike) -> list[Path]:
    """What the app keeps in the data location, Gradio's own cache excepted (datadir.py)."""
    from drawings.store import default_db_path

    folder = Path(data_dir)
    database = default_db_path()
    return [folder / "versions", folder / "cache" / "canvas-data", folder / "cache" / "mnist", database,
            database.with_name(database.name + "-wal"), database.with_name(database.name + "-shm")]


def mount_ui(api: Any, demo: Any, *, exports_dir: str | os.PathLike, data_dir: str | os.PathLike | None = None,
             **options: Any) -> Any:
    """Mount the Gradio `demo` at "/" of the FastAPI `api` with the checks and limits of a public server."""
    import gradio as gr

    from inference.image_io import gradio_upload_folder

    age = cache_max_age()
    demo.delete_cache = (max(1, age // 4), age)  # read by the mount; (every, older than) in seconds
    private = private_paths(exports_dir, ROOT, *(data_paths(data_dir) if data_dir is not None else []))
    bound_tracebacks()  # a visitor's bad event call prints a bounded traceback, not what it sent
    lean_sessions(demo)  # a fresh session hash costs no config snapshot of the whole page (api/gradio_costs.py)
    app = gr.mount_gradio_app(api, demo, path="/", max_file_size=MAX_BODY_BYTES, show_error=False,
                              blocked_paths=private, app_kwargs={"exception_handlers": words_for_bad_calls(demo)},
                              enable_monitoring=False, **options)
    # launch() sets has_launched; mount_gradio_app does not, and Gradio's check of the files an event
    # payload names (processing_utils._check_allowed) returns early while it is False. True makes
    # every event, public or private, by api name or fn_index, accept only files in Gradio's
    # upload folder (what its /upload route wrote), as under launch().
    demo.has_launched = True
    app.add_middleware(CompletionWithItsEnd)  # innermost: it sees the stream's pieces as Gradio writes them
    app.add_middleware(GradioErrorsInOurWords)  # it words Gradio's own refusals
    app.add_middleware(GradioBodyLimit)
    app.add_middleware(NoDeepLinks)
    app.add_middleware(UploadLimit, folder=gradio_upload_folder())  # issue 18: upload rate and cache size
    forget_removed_uploads()  # Gradio's set of uploaded paths forgets the files the cap removed (api/uploads.py)
    bound_upload_progress()  # upload ids nobody reads are forgotten (api/upload_progress.py)
    app.add_middleware(JoinRateLimit)  # issue 18: queue joins per client, before they reach Gradio
    demo._queue.max_thread_count = MAX_RUNNING_EVENTS  # what launch(max_threads=) sets; read when the queue starts
    harden_queue(demo._queue)  # issue 18: Gradio's queue loop survives evicted sessions
    bound_unread(demo._queue)  # a session that never reads its stream holds a bounded amount (api/gradio_unread.py)
    no_monitoring(demo._queue)  # no summary of the last 10,000 events rebuilt after each one (api/gradio_costs.py)
    return app


class GradioBodyLimit:
    """ASGI middleware: a request to a Gradio route (/gradio_api/..., MCP included) whose body is larger
    than MAX_BODY_BYTES plus a multipart envelope gets a JSON 413: by its Content-Length before
    anything is read, and by counting while a chunked body streams in. (REST routes have their own
    limit, api/errors.py BodyLimitRoute; uploads are also held to max_file_size by Gradio.)"""

    ENVELOPE = 64 * 1024  # multipart boundaries and part headers around an upload of the full size

    def __init__(self, app: Any, prefix: str = "/gradio_api/"):
        self.app = app
        self.prefix = prefix
        self.upload = prefix + "upload"  # Gradio streams uploads to disk and stops them at max_file_size itself
        self.limit = MAX_BODY_BYTES + self.ENVELOPE

    async def __call__(self, scope, receive, send) -> None:
        path = scope.get("path", "") if scope["type"] == "http" else ""
        if not path.startswith(self.prefix) or path.startswith(self.upload):
            await self.app(scope, receive, send)
            return
        length = dict(scope.get("headers") or []).get(b"content-length", b"")
        if length.isascii() and length.isdigit() and int(length) > self.limit:
            await _body_too_large(send)
            return
        received = 0
        started = refused = False

        # Past the limit, answer the 413 here and tell the app the client left: raising instead
        # would reach the route's own body parsing, which words it as a 400 (Gradio) or a 500.
        async def limited_receive():
            nonlocal received, started, refused
            if refused:
                return {"type": "http.disconnect"}
            message = await receive()
            received += len(message.get("body", b""))
            if received > self.limit:
                refused = True
                if not started:
                    started = True
                    await _body_too_large(send)
                return {"type": "http.disconnect"}
            return message

        async def tracking_send(message) -> None:
            nonlocal started
            if refused:
                return  # the 413 is the answer
            started = started or message["type"] == "http.response.start"
            await send(message)

        await self.app(scope, limited_receive, tracking_send)


async def _body_too_large(send) -> None:
    await send_error(send, 413, body_too_large_message())


def serve(app: Any) -> None:
    """Run `app` on $GRADIO_SERVER_NAME:$GRADIO_SERVER_PORT (default 127.0.0.1:7860) until Ctrl+C / SIGTERM."""
    import uvicorn

    # Issue 18: 20,000 slow connections ran the process out of descriptors at a soft limit; lift it to the
    # hard one, and keep connections below it (api/connections.py).
    limits = raise_open_files_limit()
    connections = table()
    log.info("open-files limit %s; at most %d connections (%d per client, heads within %.0f s)",
             "%d -> %d" % limits if limits else "none", connections.max_connections, connections.per_client,
             connections.head_timeout)
    # httptools (uvicorn[standard]) parses fastest, which is why it serves /predict; it only needs the limits.
    # No access log: one line per request would cost more than a prediction.
    # Whose X-Forwarded-For names the visitor: $FORWARDED_ALLOW_IPS, else uvicorn's loopback, else on a
    # Hugging Face Space its proxy's private network too (api/proxies.py).
    uvicorn.run(app, host=os.environ.get("GRADIO_SERVER_NAME", "127.0.0.1"),
                port=int(os.environ.get("GRADIO_SERVER_PORT", "7860")), http=ServerProtocol,
                access_log=False, timeout_graceful_shutdown=GRACEFUL_SHUTDOWN,
                forwarded_allow_ips=forwarded_allow_ips())
