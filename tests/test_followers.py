"""ui.followers.ReadWatch: when a Train tab stream counts as read. Its messages wait in the session's
asyncio.Queue inside Gradio's queue (`blocks._queue.pending_messages_per_session`) until the page's
event stream takes them; the live ends of unread streams are in tests/test_hostile_gradio.py."""
from __future__ import annotations

import asyncio
from types import SimpleNamespace

from ui.followers import ReadWatch


def gradio_like(session: str = "s1") -> tuple[SimpleNamespace, SimpleNamespace, asyncio.Queue]:
    messages: asyncio.Queue = asyncio.Queue()
    blocks = SimpleNamespace(_queue=SimpleNamespace(pending_messages_per_session={session: messages}))
    return blocks, SimpleNamespace(session_hash=session), messages


def test_a_stream_whose_join_messages_stay_unread_ends_at_the_first_check():
    blocks, request, messages = gradio_like()
    messages.put_nowait("estimation"), messages.put_nowait("process_starts")  # joined by fn_index, never read
    watch = ReadWatch(blocks, request)
    messages.put_nowait("heartbeat")
    assert watch.nobody_reads()


def test_a_page_that_reads_late_keeps_its_stream():
    """Read 3 s after they came (the old 1 s grace ended such a page's follower): still read, so it goes on."""
    blocks, request, messages = gradio_like()
    messages.put_nowait("process_starts")
    watch = ReadWatch(blocks, request)
    for round_ in range(3):
        messages.put_nowait(f"progress {round_}")
        while not messages.empty():  # the page's event stream catches up before the next check
            messages.get_nowait()
        messages.put_nowait(f"curves {round_}")  # and one more is waiting at the check itself
        assert not watch.nobody_reads()


def test_a_reader_that_stops_is_noticed_one_check_later():
    blocks, request, messages = gradio_like()
    watch = ReadWatch(blocks, request)
    assert not watch.nobody_reads()  # nothing waiting: nothing to judge
    messages.put_nowait("progress 1")
    assert not watch.nobody_reads()  # waiting since just now: the page may still take it
    messages.put_nowait("progress 2")
    assert watch.nobody_reads()  # still waiting a whole check later


def test_a_session_gone_from_the_queue_is_unread_and_no_queue_cannot_tell():
    blocks, request, messages = gradio_like()
    watch = ReadWatch(blocks, request)
    del blocks._queue.pending_messages_per_session["s1"]
    assert watch.nobody_reads()
    assert not ReadWatch(SimpleNamespace(), request).nobody_reads()  # a direct call, no queue
