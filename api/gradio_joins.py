"""A per-client rate on joining Gradio's queue (issue 18, item 2).

Every `POST /gradio_api/queue/join` (and `/gradio_api/call/<api>`, which joins too) with a new
session hash makes Gradio keep that session's message queue; it keeps 2,000 and evicts the oldest.
~2,500 joins with fresh session hashes from one script (16 threads, a few seconds) evicted sessions
whose events were still waiting and crashed the queue for good (api/gradio_fixes.py guards that
bug). This limit keeps one client from cycling Gradio's sessions at all: a page joins a few times
per click and gradio_client once per call, far below it. Past it: 429 with Retry-After, in words.

Many clients under that rate can still pile events up: from 500 addresses, 5,000 joins left 829
events waiting at once (each holding its request body, up to 5 MB). So the events waiting in all
are capped too, with Gradio's own `queue(max_size=...)`: past it Gradio answers 503 "Queue is
full" until some have run (queue_max_size()).
"""
from __future__ import annotations

from api.buckets import ClientBuckets, refused, setting

JOINS_PER_MINUTE = 600  # per client, sustained ($GRADIO_JOINS_PER_MINUTE; 0 turns the limit off)
JOINS_BURST = 60  # joins a client may make at once before the rate applies
# Events waiting in Gradio's queue in all ($GRADIO_QUEUE_MAX; 0: no cap). 100 people drawing at once
# keep a few waiting (a prediction takes milliseconds); 256 bodies of at most 5 MB bound the memory.
QUEUE_MAX_EVENTS = 256


def queue_max_size() -> int | None:
    """Gradio's queue max_size: QUEUE_MAX_EVENTS or $GRADIO_QUEUE_MAX, None for no cap."""
    return int(setting("GRADIO_QUEUE_MAX", QUEUE_MAX_EVENTS)) or None


class JoinRateLimit:
    """ASGI middleware over the Gradio app: joins of its queue are limited per client address."""

    def __init__(self, app, prefix: str = "/gradio_api/"):
        self.app = app
        self.paths = (prefix + "queue/join", prefix + "call/")
        per_minute = setting("GRADIO_JOINS_PER_MINUTE", JOINS_PER_MINUTE)
        self.buckets = ClientBuckets(per_minute / 60.0, JOINS_BURST)

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] == "http" and scope.get("method") == "POST" and scope.get("path", "").startswith(self.paths):
            if await refused(self.buckets, scope, send, 1.0,
                             f"Too many Gradio requests from your address: at most {self.buckets.rate * 60:.0f} a minute."):
                return
        await self.app(scope, receive, send)
