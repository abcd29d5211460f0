"""Work-arounds for bugs of the installed Gradio (6.31.0) that a visitor can trigger.

The queue's session table (`Queue.pending_messages_per_session`) is an LRU of 2,000 sessions. When
more sessions join while events wait (2,500 joins with fresh session hashes, 16 threads: issue 18,
item 2), the oldest session is evicted though its events are still queued; the next
`broadcast_estimations` (called by the queue's processing loop) looks the evicted session up in
`send_message` and raises KeyError. The loop's `finally` then marks the queue stopped and cancels
every running event, and every later join answers 503 "Queue is stopped." until a restart.

`harden_queue` makes `send_message` drop a message to a session that is gone (its event is marked
dead, so the queue does not run it for nobody) and keeps any other error in an estimate out of the
processing loop: estimates are only "you are number N in the queue" messages.
"""
from __future__ import annotations

import functools
import logging
from typing import Any

log = logging.getLogger(__name__)


def harden_queue(queue: Any) -> Any:
    """Patch the Gradio `queue` (blocks._queue) in place; returns it."""
    if getattr(queue, "_digit_studio_hardened", False):
        return queue
    send_message = queue.send_message
    broadcast_estimations = queue.broadcast_estimations

    @functools.wraps(send_message)
    def guarded_send_message(event, message) -> None:
        if event.session_hash not in queue.pending_messages_per_session:
            event.alive = False  # its session was evicted: nobody can read this event's messages any more
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
