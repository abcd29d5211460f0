"""api/gradio_fixes.py's bounded tracebacks, on their own (the live attack is in tests/test_hostile_gradio.py):
at most a budget of whole tracebacks a minute, every line cut, one short line past the budget; the same
for uvicorn's error logger, whose filter survives uvicorn's own logging set-up."""
from __future__ import annotations

import io
import logging
import logging.config

from api import gradio_fixes
from api.gradio_fixes import (LINE_MAX, TracebackBudget, _BoundedExceptionRecords, _BoundedTracebackModule,
                              bound_tracebacks)


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def printed_for(module: _BoundedTracebackModule, message: str) -> str:
    out = io.StringIO()
    try:
        raise ValueError(message)
    except ValueError:
        module.print_exc(file=out)
    return out.getvalue()


def test_whole_tracebacks_within_the_budget_then_one_line_each_until_the_minute_is_over():
    clock = Clock()
    budget = TracebackBudget(per_minute=2, clock=clock)
    module = _BoundedTracebackModule(budget)
    sent = "x" * 1_000_000  # what a visitor's input can make an exception's message quote
    whole = [printed_for(module, sent) for _ in range(2)]
    for text in whole:
        assert text.startswith("Traceback (most recent call last):") and "ValueError: xxx" in text
        assert max(len(line) for line in text.splitlines()) <= LINE_MAX + 40  # cut, saying how much was left
        assert "more characters)" in text and len(text) < 5000
    past = printed_for(module, sent)
    assert past.count("\n") == 1 and past.startswith("Gradio event failed: ValueError: xxx")
    assert "traceback not printed: more than 2 a minute" in past and len(past) < LINE_MAX + 120
    assert budget.withheld == 1
    clock.now += 60.0  # a new minute: whole tracebacks again
    assert printed_for(module, "short").startswith("Traceback (most recent call last):")
    assert module.format_exc is gradio_fixes.traceback.format_exc  # the rest of the module as it was


def test_uvicorns_exception_records_are_cut_and_within_the_same_budget():
    clock = Clock()
    budget = TracebackBudget(per_minute=1, clock=clock)
    records = _BoundedExceptionRecords(budget)

    def record() -> logging.LogRecord:
        try:
            raise KeyError("k" * 100_000)
        except KeyError as error:
            return logging.LogRecord("uvicorn.error", logging.ERROR, __file__, 1, "Exception in ASGI application",
                                     (), (type(error), error, error.__traceback__))

    first, second = record(), record()
    first.msg = "unhandled error on POST /" + "p" * 16_000  # a path can be as long as the header limit
    assert records.filter(first) and records.filter(second)  # both are logged
    text = logging.Formatter().format(first)
    assert "Traceback" in text and "KeyError" in text and len(text) < 5000 and "more characters)" in text
    assert second.exc_info is None and "traceback not printed" in second.getMessage()
    assert len(logging.Formatter().format(second)) < LINE_MAX + 200


def test_the_filter_outlives_uvicorns_logging_configuration_and_installs_once():
    import uvicorn.config

    installed = bound_tracebacks()
    assert bound_tracebacks() is installed  # a second mount (replicas, tests) adds nothing
    logging.config.dictConfig(uvicorn.config.LOGGING_CONFIG)  # what uvicorn.run does after the mount
    for logger in ("uvicorn.error", "api.errors"):  # uvicorn's, and the REST routes' unexpected errors
        filters = [f for f in logging.getLogger(logger).filters if isinstance(f, _BoundedExceptionRecords)]
        assert len(filters) == 1, logger
    import gradio.queueing
    import gradio.routes

    assert isinstance(gradio.queueing.traceback, _BoundedTracebackModule)
    assert isinstance(gradio.routes.traceback, _BoundedTracebackModule)


def test_an_unread_sessions_estimates_are_kept_newest_only():
    """Gradio sends a waiting event a new estimate whenever the queue changes and kept every unread one
    (~200 per never-read session in a join flood); harden_queue keeps the newest, and every other message."""
    import asyncio

    import gradio as gr
    from gradio.queueing import Event
    from gradio.server_messages import EstimationMessage, ProcessStartsMessage

    with gr.Blocks() as demo:
        gr.Button("go").click(lambda: None, api_name="go")
    queue = gradio_fixes.harden_queue(demo.queue()._queue)
    fn = next(iter(demo.fns.values()))
    mine, other = Event("session-a", fn, None, None), Event("session-a", fn, None, None)
    queue.pending_messages_per_session["session-a"] = asyncio.Queue()
    for rank in range(200, 0, -1):
        queue.send_message(mine, EstimationMessage(rank=rank, queue_size=rank + 1))
    queue.send_message(other, EstimationMessage(rank=5, queue_size=6))
    queue.send_message(mine, ProcessStartsMessage())
    queue.send_message(mine, EstimationMessage(rank=0, queue_size=1))
    unread = list(queue.pending_messages_per_session["session-a"]._queue)
    assert [(type(m).__name__, m.event_id, getattr(m, "rank", None)) for m in unread] == [
        ("EstimationMessage", mine._id, 1), ("EstimationMessage", other._id, 5),
        ("ProcessStartsMessage", mine._id, None), ("EstimationMessage", mine._id, 0)]
