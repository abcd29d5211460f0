"""Work-arounds for bugs of the installed Gradio (6.31.0) that a visitor can trigger.

The queue's session table (`Queue.pending_messages_per_session`) is an LRU of 2,000 sessions. When
more sessions join while events wait (2,500 joins with fresh session hashes, 16 threads: issue 18,
item 2), the oldest session is evicted though its events are still queued; the next
`broadcast_estimations` (called by the queue's processing loop) looks the evicted session up in
`send_message` and raises KeyError. The loop's `finally` then marks the queue stopped and cancels
every running event, and every later join answers 503 "Queue is stopped." until a restart.

`harden_queue` makes `send_message` drop a message to a session that is gone (its event is marked
dead, so the queue does not run it for nobody), keeps only the newest unread estimate of an event and none
for a session ESTIMATES_UNREAD_MAX messages behind, and keeps any other error in an estimate out of the
processing loop: estimates are only "you are number N in the queue" messages.

A visitor's malformed event call (found on 2026-12-06 with a fuzzer of Gradio's routes) cost the
server its log and answered 500s:
- Gradio prints the whole traceback of every event that fails (`traceback.print_exc()` in its
  queueing, routes, utils and route_utils modules), and the message of an event sent too few inputs
  quotes every value it did get (`Blocks.validate_inputs`): one join of the Draw tab's `predict` with
  a 4 MB string as its only input wrote 4 MB to the server's log (5 joins: 20.0 MB), and a client may
  join 600 times a minute. `bound_tracebacks` lets at most TRACEBACKS_PER_MINUTE whole tracebacks a
  minute through, every line cut to LINE_MAX characters, and past that one short line per error;
  the same holds for uvicorn's "Exception in ASGI application" and the REST routes' unexpected errors.
- `words_for_bad_calls`: an event number or api name the page does not have was a 500 "Internal
  Server Error" with a traceback (`KeyError` / `FnIndexInferError` in `route_utils.get_fn`); it is a
  404 naming what is missing. Too few inputs, an event that runs in the page only (no server
  function), or a selection event sent without its event data, is refused in words (gr.Error, no
  traceback) instead of a hidden error and a traceback. An input naming a server file Gradio refuses
  (/etc/passwd: InvalidPathError) was a 500 with `{"error": null}` and a traceback; it is a 403 in words.
  Gradio's one-shot route answers every refusal with a 500; the refusal's status is kept for
  api/gradio_errors.py to answer with (found 2026-12-07 with curl on /gradio_api/run/predict).
"""
from __future__ import annotations

import functools
import logging
import math
import sys
import threading
import time
import traceback
from typing import Any

from api.gradio_errors import REFUSAL_RETRY_AFTER, REFUSAL_STATUS

log = logging.getLogger(__name__)

ESTIMATES_UNREAD_MAX = 32  # unread messages past which a session gets no more queue estimates

NOT_UPLOADED = ("An input names a file this server was not sent: upload the file first (POST "
                "/gradio_api/upload, or gradio_client's handle_file) and pass what the upload answers.")


def harden_queue(queue: Any) -> Any:
    """Patch the Gradio `queue` (blocks._queue) in place; returns it."""
    from gradio.server_messages import EstimationMessage

    if getattr(queue, "_digit_studio_hardened", False):
        return queue
    send_message = queue.send_message
    broadcast_estimations = queue.broadcast_estimations

    @functools.wraps(send_message)
    def guarded_send_message(event, message) -> None:
        if event.session_hash not in queue.pending_messages_per_session:
            event.alive = False  # its session was evicted: nobody can read this event's messages any more
            return
        if isinstance(message, EstimationMessage) and event.alive:
            # Gradio sends every waiting event a new estimate ("number N in the queue") whenever the queue
            # changes, and keeps each unread one: sessions whose streams nobody reads held ~200 each, 220,001
            # estimates (+223 MiB) after 6,000 fresh-session joins from 200 addresses with the default queue cap
            # (gc census, 2026-12-07). Only the newest one means anything: it replaces an unread older one.
            unread = getattr(queue.pending_messages_per_session[event.session_hash], "_queue", None)  # asyncio's deque
            if unread and len(unread) >= ESTIMATES_UNREAD_MAX:
                # One session's many waiting events interleave their estimates, so the rule below never applied
                # to them: 241,323 for one session joined from 200 addresses (api/gradio_unread.py). A stream this
                # far behind would read only stale numbers; the event's start and result still come.
                return
            if unread and isinstance(unread[-1], EstimationMessage) and unread[-1].event_id == event._id:
                message.event_id = event._id
                unread[-1] = message
                return
        send_message(event, message)

    @functools.wraps(broadcast_estimations)
    def guarded_broadcast_estimations(*args, **kwargs) -> None:
        try:
            broadcast_estimations(*args, **kwargs)
        except Exception:  # noqa: BLE001 - an estimate must never stop the queue's loop
            log.exception("Gradio's queue estimate failed; the queue goes on")

    queue.send_message = guarded_send_message
    queue.broadcast_estimations = guarded_broadcast_estimations
    queue._digit_studio_hardened = True
    return queue


TRACEBACKS_PER_MINUTE = 10  # whole tracebacks printed a minute; past it, one short line per error
LINE_MAX = 300  # characters of any printed line: an exception's message may quote what a visitor sent
TRACEBACK_LINES_MAX = 120  # lines of one printed traceback (Gradio's are ~40)
GRADIO_MODULES_THAT_PRINT = ("gradio.queueing", "gradio.routes", "gradio.utils", "gradio.route_utils")
# uvicorn's "Exception in ASGI application" and the REST routes' unhandled errors (api/errors.py)
LOGGERS_OF_UNEXPECTED_ERRORS = ("uvicorn.error", "api.errors")


class TracebackBudget:
    """How many whole tracebacks may still be printed this minute (shared by Gradio, uvicorn and REST)."""

    def __init__(self, per_minute: int = TRACEBACKS_PER_MINUTE, clock=time.monotonic):
        self.per_minute = per_minute
        self.clock = clock
        self._lock = threading.Lock()
        self._window_start = -60.0
        self._printed = 0
        self.withheld = 0  # tracebacks not printed in all

    def take(self) -> bool:
        with self._lock:
            now = self.clock()
            if now - self._window_start >= 60.0:
                self._window_start, self._printed = now, 0
            if self._printed < self.per_minute:
                self._printed += 1
                return True
            self.withheld += 1
            return False


def cut(text: str, limit: int = LINE_MAX) -> str:
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text) - limit:,} more characters)"


def bounded_traceback_text(error: BaseException) -> str:
    """The traceback of `error`, each line cut to LINE_MAX and at most TRACEBACK_LINES_MAX lines."""
    lines = "".join(traceback.format_exception(error)).splitlines()
    if len(lines) > TRACEBACK_LINES_MAX:
        lines = [*lines[:TRACEBACK_LINES_MAX // 2], f"... ({len(lines) - TRACEBACK_LINES_MAX} lines)",
                 *lines[-TRACEBACK_LINES_MAX // 2:]]
    return "\n".join(cut(line) for line in lines)


def one_line(error: BaseException) -> str:
    return cut(f"{type(error).__name__}: {error}".replace("\n", " "))


class _BoundedTracebackModule:
    """Stands in for the `traceback` module inside Gradio's modules: `print_exc()` prints within the budget."""

    def __init__(self, budget: TracebackBudget):
        self._budget = budget

    def __getattr__(self, name: str):
        return getattr(traceback, name)

    def print_exc(self, limit=None, file=None, chain=True) -> None:  # noqa: ARG002 - traceback's signature
        error = sys.exc_info()[1]
        if error is None:
            return
        out = file or sys.stderr
        if self._budget.take():
            print(bounded_traceback_text(error), file=out)
        else:
            print(f"Gradio event failed: {one_line(error)} (traceback not printed: more than "
                  f"{self._budget.per_minute} a minute)", file=out)


class _BoundedExceptionRecords(logging.Filter):
    """On the loggers of unexpected errors: a record's traceback within the budget and cut, else one line."""

    def __init__(self, budget: TracebackBudget):
        super().__init__()
        self._budget = budget

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info and record.exc_info[1] is not None:
            error = record.exc_info[1]
            if self._budget.take():
                record.msg, record.args = cut(record.getMessage()), ()  # it may name the request's path
                record.exc_text = bounded_traceback_text(error)
            else:
                record.msg, record.args = f"{cut(record.getMessage())}: {one_line(error)} (traceback not " \
                                          f"printed: more than {self._budget.per_minute} a minute)", ()
                record.exc_info, record.exc_text = None, None
        return True


def bound_tracebacks(budget: TracebackBudget | None = None) -> TracebackBudget:
    """Install the budget in Gradio's printing modules and on the loggers of unexpected errors (once per
    process)."""
    import importlib

    installed = getattr(bound_tracebacks, "budget", None)
    if installed is not None:
        return installed
    budget = budget or TracebackBudget()
    for name in GRADIO_MODULES_THAT_PRINT:
        module = importlib.import_module(name)
        if getattr(module, "traceback", None) is traceback:
            module.traceback = _BoundedTracebackModule(budget)
    for logger in LOGGERS_OF_UNEXPECTED_ERRORS:
        logging.getLogger(logger).addFilter(_BoundedExceptionRecords(budget))
    bound_tracebacks.budget = budget
    return budget


def refusal_status(error: Exception) -> int:
    """The HTTP status of an event's gr.Error: its own (ui/refusals.Refused) when a 4xx or 5xx, else 400."""
    status = getattr(error, "status", None)
    return status if isinstance(status, int) and 400 <= status < 600 else 400


def refusal_retry_after(error: Exception) -> int | None:
    """Whole seconds for the Retry-After of a busy refusal (429 / 503) that says when to come back, else None."""
    seconds = getattr(error, "retry_after", None)
    if refusal_status(error) not in (429, 503) or not isinstance(seconds, (int, float)) or not seconds > 0:
        return None
    return max(1, math.ceil(min(seconds, 3600)))


def unknown_event_answer(request, error):
    """The exception handler for Gradio's FnIndexInferError: a 404 naming what the page lacks."""
    from fastapi.responses import JSONResponse

    return JSONResponse({"error": str(error)}, status_code=404)


def words_for_bad_calls(blocks: Any) -> dict:
    """Word the bad calls of `blocks`' events; returns the exception handlers for the Gradio app
    (gr.mount_gradio_app's app_kwargs["exception_handlers"])."""
    import gradio as gr
    from gradio import route_utils
    from gradio.exceptions import InvalidPathError

    if not getattr(route_utils.get_fn, "_digit_studio_worded", False):
        original_get_fn = route_utils.get_fn

        @functools.wraps(original_get_fn)
        def get_fn(blocks, api_name, body):
            try:
                return original_get_fn(blocks, api_name, body)
            except KeyError:  # the only lookup in get_fn that can miss: the body's fn_index
                raise route_utils.FnIndexInferError(
                    f"This page has no event number {cut(str(body.fn_index), 30)}: its events are listed by "
                    "GET /config.") from None
            except route_utils.FnIndexInferError:
                raise route_utils.FnIndexInferError(
                    f"This page has no event named {cut(str(api_name), 40)!r}: its events are listed by "
                    "GET /gradio_api/info.") from None

        get_fn._digit_studio_worded = True
        route_utils.get_fn = get_fn

    if not getattr(route_utils.call_process_api, "_digit_studio_statuses", False):
        original_call = route_utils.call_process_api

        @functools.wraps(original_call)
        async def call_process_api(*args, **kwargs):
            # Gradio's one-shot route (/gradio_api/run/<api>) answers every exception with HTTP 500; a gr.Error
            # is a refusal in words, whose status (ui/refusals.Refused, else 400) the request keeps for
            # api/gradio_errors.py to answer with.
            try:
                return await original_call(*args, **kwargs)
            except InvalidPathError:  # Gradio's check of the files an event names (server.mount_ui): a 500, no words
                refusal = gr.Error(NOT_UPLOADED, print_exception=False)
                refusal.status = 403  # as Gradio's /gradio_api/file= route answers a file it does not serve
                error = refusal
            except gr.Error as refusal:
                error = refusal
            request = getattr(kwargs.get("body"), "request", None)
            if request is not None:
                request.scope[REFUSAL_STATUS] = refusal_status(error)
                request.scope[REFUSAL_RETRY_AFTER] = refusal_retry_after(error)
            raise error from None

        call_process_api._digit_studio_statuses = True
        route_utils.call_process_api = call_process_api

    original_validate = blocks.validate_inputs

    def validate_inputs(block_fn, inputs) -> None:
        if not block_fn.fn:
            raise gr.Error("This event runs in the page only: there is nothing on the server to call.",
                           print_exception=False)
        if len(inputs) < len(block_fn.inputs):
            raise gr.Error(f"This event takes {len(block_fn.inputs)} input(s); the request sent {len(inputs)}.",
                           print_exception=False)
        original_validate(block_fn, inputs)

    blocks.validate_inputs = validate_inputs

    original_process_api = blocks.process_api

    async def process_api(*args, **kwargs):
        block_fn = kwargs.get("block_fn", args[0] if args else None)
        block_fn = blocks.fns.get(block_fn) if isinstance(block_fn, int) else block_fn
        event_data = kwargs.get("event_data")
        if block_fn is not None and block_fn.fn is not None and reads_event_data(block_fn.fn) \
                and not isinstance(getattr(event_data, "_data", None), dict):
            raise gr.Error("This event needs the data of what was selected, which the page sends with it.",
                           print_exception=False)
        return await original_process_api(*args, **kwargs)

    blocks.process_api = process_api
    return {route_utils.FnIndexInferError: unknown_event_answer}


@functools.lru_cache(maxsize=None)
def reads_event_data(fn: Any) -> bool:
    """Whether `fn` takes a typed event's data (gr.SelectData and the like: Gradio builds it from the
    call's event data, reading its keys; a call without any failed with a TypeError and a traceback)."""
    import inspect

    from gradio import utils
    from gradio.helpers import EventData

    try:
        hints = utils.get_type_hints(fn)
    except Exception:  # noqa: BLE001 - a function whose hints cannot be read: Gradio decides as before
        return False
    return any(inspect.isclass(hint) and issubclass(hint, EventData) and hint is not EventData
               for hint in hints.values())
