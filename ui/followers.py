"""Bounds on the page's long-lived events (issue 18, item 1): the Train tab's followers
(`watch_<model>`) and the streams of a Train or Fine-tune click.

Each such event holds one of the queue's MAX_RUNNING_EVENTS slots for as long as it streams. Anyone
may join one by fn_index: 1,100 joins of `watch_model1` that never read their stream took every
slot, and a Gradio `model_status` still timed out 4 minutes later. Two bounds:
- at most PER_CLIENT of them per client address and TOTAL in all hold a slot; one more ends at once
  (the page's Train button and REST still work; the tab only does not follow runs started elsewhere);
- a follower whose messages nobody reads (no page holds its stream: it never opened one, or the
  session was evicted) ends at its next heartbeat (FOLLOW_HEARTBEAT, ui/train_tab.py) or curves
  update. A page that closes its stream is ended by Gradio itself at the next message.
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
READ_GRACE = 1.0  # s: a page reads its stream within milliseconds; nothing read in this long means no page


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


async def nobody_reads(blocks: Any, request: Any) -> bool:
    """True when no page reads this event's messages: its session's message queue is gone from
    Gradio's queue, or holds messages that stay unread for READ_GRACE."""
    queue = getattr(blocks, "_queue", None)
    session = getattr(request, "session_hash", None)
    if queue is None or session is None:
        return False  # cannot tell (no queue: a direct call): keep going
    messages = queue.pending_messages_per_session.get(session)
    if messages is None:
        return True
    waiting = messages.qsize()
    if waiting == 0:
        return False
    await asyncio.sleep(READ_GRACE)
    return messages.qsize() >= waiting


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
        checked = loop_time()
        async for item in stream:
            yield item
            if loop_time() - checked >= CHECK_EVERY:
                checked = loop_time()
                if await nobody_reads(blocks, request):
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
