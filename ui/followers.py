"""Bounds on the page's long-lived events (issue 18, item 1): the Train tab's followers
(`watch_<model>`) and the streams of a Train or Fine-tune click.

Each such event holds one of the queue's MAX_RUNNING_EVENTS slots for as long as it streams. Anyone
may join one by fn_index: 1,100 joins of `watch_model1` that never read their stream took every
slot, and a Gradio `model_status` still timed out 4 minutes later. Two bounds:
- at most PER_CLIENT of them per client address and TOTAL in all hold a slot; one more ends at once
  (the page's Train button and REST still work; the tab only does not follow runs started elsewhere);
- a follower whose messages nobody reads (no page holds its stream: it never opened one, or the
  session was evicted) ends at its next heartbeat (FOLLOW_HEARTBEAT, ui/train_tab.py) or curves
  update after CHECK_EVERY (ReadWatch). A page that closes its stream is ended by Gradio itself at
  the next message.
"""
from __future__ import annotations

import asyncio
import collections
import ipaddress
import logging
import os
from typing import Any

log = logging.getLogger(__name__)

PER_CLIENT = 6  # long-lived events per client address ($TRAIN_FOLLOWERS_PER_CLIENT): 3 open Train tabs
TOTAL = 200  # in all ($TRAIN_FOLLOWERS_TOTAL): 100 open Train tabs; the queue runs 1,000 events at once


def _setting(name: str, default: int) -> int:
    value = os.environ.get(name, "").strip()
    return int(value) if value.isdigit() else default


class FollowerSlots:
    """Counts the long-lived events held per client and in all (on the event loop: no lock)."""

    def __init__(self, per_client: int | None = None, total: int | None = None):
        self.per_client = per_client if per_client is not None else _setting("TRAIN_FOLLOWERS_PER_CLIENT", PER_CLIENT)
        self.total = total if total is not None else _setting("TRAIN_FOLLOWERS_TOTAL", TOTAL)
        self.held: collections.Counter[str] = collections.Counter()
        self.refused = 0

    def take(self, client: str) -> bool:
        if sum(self.held.values()) >= self.total or (self.held[client] >= self.per_client and not _loopback(client)):
            self.refused += 1
            if self.refused in (1, 10, 100) or self.refused % 1000 == 0:
                log.warning("refused a long-lived Train tab event from %s (%d held by it, %d in all; %d refused)",
                            client, self.held[client], sum(self.held.values()), self.refused)
            return False
        self.held[client] += 1
        return True

    def give_back(self, client: str) -> None:
        self.held[client] -= 1
        if self.held[client] <= 0:
            del self.held[client]


SLOTS = FollowerSlots()


def _loopback(client: str) -> bool:
    """This machine itself (its operator, the test suite): no per-client cap, but counted in TOTAL."""
    try:
        return ipaddress.ip_address(client).is_loopback
    except ValueError:
        return False


def client_of(request: Any) -> str:
    """The visitor's address (uvicorn puts it there behind a trusted proxy, FORWARDED_ALLOW_IPS)."""
    client = getattr(request, "client", None)
    return getattr(client, "host", None) or "unknown client"


class ReadWatch:
    """Whether a page reads this event's messages, judged at the stream's checks without waiting: a
    message that was the oldest unread one at one check and is still waiting at the next (CHECK_EVERY
    or a heartbeat later) means no page reads it.

    Before, a check waited 1 s for the queue to shrink: a page that read slower than that (Chromium
    with the other test worker training on the same 2 cores; a phone on a slow network may lag as well)
    lost its Train tab's follower and its run's summary in a suite run on two workers. Now a reader may
    lag up to a check's interval; an unread stream ends as soon as before (its join's messages are the
    oldest ones at its first check)."""

    def __init__(self, blocks: Any, request: Any):
        queue = getattr(blocks, "_queue", None)
        session = getattr(request, "session_hash", None)
        self._messages = None if queue is None or session is None else queue.pending_messages_per_session
        self._session = session
        self._oldest = self._oldest_waiting()

    def _oldest_waiting(self) -> Any:
        messages = self._messages.get(self._session) if self._messages is not None else None
        waiting = getattr(messages, "_queue", None)  # asyncio.Queue's deque: looked at, never changed here
        return waiting[0] if waiting else None

    def nobody_reads(self) -> bool:
        if self._messages is None:
            return False  # cannot tell (no queue: a direct call): keep going
        messages = self._messages.get(self._session)
        if messages is None:
            return True  # the session's queue is gone: no page can read this
        before, self._oldest = self._oldest, self._oldest_waiting()
        return before is not None and any(message is before for message in getattr(messages, "_queue", ()))


CHECK_EVERY = 10.0  # s: how often a stream looks whether its page still reads it


def trusted(ctx: Any, token: str | None) -> bool:
    """A page that sent the server's TRAIN_TOKEN is its operator's: its streams take no slot (an
    attacker filling the slots must not keep the operator from watching a run). Without a
    TRAIN_TOKEN everyone is a visitor."""
    from ui import training

    return bool(ctx.train_token) and training.token_matches(token, ctx.train_token)


async def held(stream, request: Any, blocks: Any, refused: Any, *, exempt: bool = False):
    """Yield `stream`'s items while holding one slot of SLOTS for the request's client (none when
    `exempt`); when none is free, yield `refused` once and end. Ends early once nobody reads the
    event's messages."""
    client = client_of(request)
    if exempt:
        client = None
    elif not SLOTS.take(client):
        await stream.aclose()
        yield refused
        return
    try:
        reads, checked = ReadWatch(blocks, request), loop_time()
        async for item in stream:
            yield item
            if loop_time() - checked >= CHECK_EVERY:
                checked = loop_time()
                if reads.nobody_reads():
                    log.info("a Train tab stream of %s ended: nobody read its messages", client or "an operator")
                    return
    finally:
        await stream.aclose()
        if client is not None:
            SLOTS.give_back(client)


def refused_view(ctx: Any, name: str) -> tuple:
    """The training view a refused Train / Fine-tune stream shows: the run itself goes on."""
    from ui import training

    return training.training_view(ctx.jobs.status(name), f"**Running.** Your address already holds "
                                  f"{SLOTS.per_client} open streams here, so this one stops; the run goes on "
                                  f"(GET /train_status/{name}).")


def loop_time() -> float:
    return asyncio.get_running_loop().time()
