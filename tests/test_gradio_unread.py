"""api/gradio_unread.py on Gradio's real queue (the live attack is in tests/test_hostile_gradio.py): a session
that never reads its stream is refused past its unread events, gets no estimates past its unread messages,
and a session Gradio drops takes its event ids along."""
from __future__ import annotations

import asyncio
from types import SimpleNamespace

import gradio as gr
import pytest
from fastapi import HTTPException
from gradio.queueing import Event
from gradio.server_messages import EstimationMessage, ProcessCompletedMessage, ProcessStartsMessage

from api import gradio_fixes, gradio_unread
from api.gradio_fixes import ESTIMATES_UNREAD_MAX
from api.gradio_unread import bound_unread


def hardened_queue(sessions: int = 2000):
    with gr.Blocks() as demo:
        gr.Button("go").click(lambda: None, api_name="go")
    queue = demo.queue()._queue
    queue.pending_messages_per_session.max_size = sessions
    bound_unread(gradio_fixes.harden_queue(queue))
    return queue, next(iter(demo.fns.values()))


def joined(queue, fn, session: str) -> Event:
    """What Queue.push records for a join of `session` (without running anything)."""
    event = Event(session, fn, None, None)
    if session not in queue.pending_messages_per_session:
        queue.pending_messages_per_session[session] = asyncio.Queue()
    queue.pending_event_ids_session.setdefault(session, set()).add(event._id)
    return event


def test_a_session_dropped_from_gradios_table_takes_its_event_ids_along():
    queue, fn = hardened_queue(sessions=3)
    for session in ("a", "b", "c"):
        joined(queue, fn, session)
    joined(queue, fn, "d")  # the table keeps 3: "a", the oldest, is evicted
    assert list(queue.pending_messages_per_session) == ["b", "c", "d"]
    assert sorted(queue.pending_event_ids_session) == ["b", "c", "d"]
    del queue.pending_messages_per_session["c"]  # what Gradio's stream does when its client leaves
    assert sorted(queue.pending_event_ids_session) == ["b", "d"]
    # Before: 3,400 fresh sessions left 3,416 id sets for Gradio's 2,000 sessions (a join flood, 2026-12-07).
    for i in range(100):
        joined(queue, fn, f"fresh-{i}")
    assert len(queue.pending_event_ids_session) == len(queue.pending_messages_per_session) == 3


def test_a_session_far_behind_gets_no_estimates_but_every_start_and_result():
    queue, fn = hardened_queue()
    events = [joined(queue, fn, "slow") for _ in range(40)]
    for rank in range(50, 0, -1):  # the queue changes 50 times; each waiting event gets an estimate
        for event in events:
            queue.send_message(event, EstimationMessage(rank=rank, queue_size=len(events)))
    for event in events:
        queue.send_message(event, ProcessStartsMessage())
        queue.send_message(event, ProcessCompletedMessage(output={}, success=True))
    unread = list(queue.pending_messages_per_session["slow"]._queue)
    kinds = [type(message).__name__ for message in unread]
    assert kinds.count("EstimationMessage") <= ESTIMATES_UNREAD_MAX  # before: 2,000 (50 x 40)
    assert kinds.count("ProcessStartsMessage") == kinds.count("ProcessCompletedMessage") == 40
    # A session that reads as it goes still gets its estimates.
    reader = joined(queue, fn, "reader")
    queue.send_message(reader, EstimationMessage(rank=3, queue_size=4))
    assert isinstance(queue.pending_messages_per_session["reader"].get_nowait(), EstimationMessage)


def test_a_session_with_too_many_unread_results_is_refused_in_words_until_it_reads(monkeypatch):
    monkeypatch.setenv("GRADIO_SESSION_EVENTS_MAX", "5")
    queue, fn = hardened_queue()
    pushed = []

    async def gradios_push(body, request, username):  # stands for Gradio's push: records the join, waiting
        pushed.append(body.session_hash)
        event_id = f"event-{len(pushed)}"
        queue.pending_event_ids_session.setdefault(body.session_hash, set()).add(event_id)
        queue.event_ids_to_events[event_id] = "waiting"
        return True, event_id, "success"

    def all_finished() -> None:  # what the queue does with each event it has run: its result waits to be read
        queue.event_ids_to_events.clear()

    queue._digit_studio_unread_bounded = False
    queue.push = gradios_push
    bound_unread(queue)
    body = SimpleNamespace(session_hash="never-reads")
    for _ in range(8):  # events waiting or running do not count: a client may have many in flight
        assert asyncio.run(queue.push(body, None, None))[0]
    all_finished()
    with pytest.raises(HTTPException) as refusal:
        asyncio.run(queue.push(body, None, None))
    assert refusal.value.status_code == 429 and "8 answers it has not read" in refusal.value.detail
    assert asyncio.run(queue.push(SimpleNamespace(session_hash="another"), None, None))[0]  # others go on
    queue.pending_event_ids_session["never-reads"].clear()  # what reading its stream does
    assert asyncio.run(queue.push(body, None, None))[0]
    assert len(pushed) == 10


@pytest.mark.parametrize("value, expected", [("", 64), ("8", 8), ("0", 1), ("many", 64)])
def test_the_unread_events_cap_comes_from_the_environment(monkeypatch, value, expected):
    monkeypatch.setenv("GRADIO_SESSION_EVENTS_MAX", value)
    assert gradio_unread.session_events_max() == expected
