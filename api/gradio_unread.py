"""What a Gradio session that never reads its stream may hold on the server: a bounded amount.

Gradio 6.31 keeps every message of a session (estimates, starts, results) in the session's queue until a
page or client reads `GET /gradio_api/queue/data`, and every event id in `pending_event_ids_session` until its
result is read. Nothing bounds either for a session that keeps joining and never reads, and a session evicted
from Gradio's table of 2,000 (an LRU) keeps its event ids forever. Measured against `python app.py` (default
limits, 2-core AMD EPYC VM, 2026-12-07; the joins of `python -m benchmarks.attacks.hostile unread ...`, run by a
scratch script with a gc census before the attack had its command): one session hash
joined from 200 addresses (each under the join rate), never read, grew the server by ~90 MiB per 600 joins
admitted, without end (+556 MiB after 3,800; 241,323 estimates queued for it: every change of the queue
sends each waiting event an estimate, and the estimates of a session's many events interleave); 3,400 fresh
session hashes left 3,416 event-id sets for 2,000 sessions.

- `SESSION_EVENTS_MAX`: a session with this many results it has not read is refused further joins (429, in
  words) until it reads them. A page reads its stream as it goes, and gradio_client reads each result as it
  comes, however many calls it has in flight (events still waiting are bounded by Gradio's queue cap).
- No estimate ("you are number N in the queue") goes to a session 32 messages behind: that rule sits with
  Gradio's other estimate rule, in api/gradio_fixes.harden_queue.
- `SessionsThatForget`: a session dropped from Gradio's table (evicted, or its stream disconnected) takes
  its event ids with it: nobody can read that session's results any more.
"""
from __future__ import annotations

import functools
from typing import Any

from gradio.utils import LRUCache

from api.buckets import setting

SESSION_EVENTS_MAX = 64  # results of one session finished and not read ($GRADIO_SESSION_EVENTS_MAX)


def session_events_max() -> int:
    return max(1, int(setting("GRADIO_SESSION_EVENTS_MAX", SESSION_EVENTS_MAX)))


def too_many_unread(count: int) -> str:
    return (f"This session has {count} answers it has not read. Read them (GET /gradio_api/queue/data?"
            "session_hash=...) before sending more; a page or gradio_client does so by itself.")


class SessionsThatForget(LRUCache):
    """A table of sessions like Gradio's (an LRU of its size) that forgets a dropped session's event ids
    (`event_ids`: the queue's pending_event_ids_session)."""

    def __init__(self, max_size: int, event_ids: dict):
        super().__init__(max_size)
        self.event_ids = event_ids

    def popitem(self, last: bool = True):  # LRUCache evicts its oldest session with popitem(last=False)
        session, messages = super().popitem(last)
        self.event_ids.pop(session, None)
        return session, messages

    def __delitem__(self, session) -> None:  # Gradio's stream deletes a session whose client left
        super().__delitem__(session)
        self.event_ids.pop(session, None)


def bound_unread(queue: Any) -> Any:
    """Bound what unread sessions hold in the Gradio `queue` (blocks._queue), in place; returns it.
    Call before the queue has sessions (at mount)."""
    if getattr(queue, "_digit_studio_unread_bounded", False):
        return queue
    from fastapi import HTTPException

    table = SessionsThatForget(queue.pending_messages_per_session.max_size, queue.pending_event_ids_session)
    table.update(queue.pending_messages_per_session)
    queue.pending_messages_per_session = table
    events_max = session_events_max()
    push = queue.push

    @functools.wraps(push)
    async def bounded_push(body, request, username):
        # Events still waiting or running count for nothing here (Gradio's queue cap bounds them, and a client may
        # have many in flight while it reads); an event Gradio finished with is no longer among its events.
        ids = queue.pending_event_ids_session.get(getattr(body, "session_hash", None), ())
        unread = sum(1 for event_id in ids if event_id not in queue.event_ids_to_events) if len(ids) >= events_max else 0
        if unread >= events_max:
            raise HTTPException(status_code=429, detail=too_many_unread(unread))
        return await push(body, request, username)

    queue.push = bounded_push
    queue._digit_studio_unread_bounded = True
    return queue
