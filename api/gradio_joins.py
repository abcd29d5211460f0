"""A per-client rate on joining Gradio's queue (issue 18, item 2).

Every `POST /gradio_api/queue/join` (and `/gradio_api/call/<api>`, which joins too) with a new
session hash makes Gradio keep that session's message queue; it keeps 2,000 and evicts the oldest.
~2,500 joins with fresh session hashes from one script (16 threads, a few seconds) evicted sessions
whose events were still waiting and crashed the queue for good (api/gradio_fixes.py guards that
bug). This limit keeps one client from cycling Gradio's sessions at all: a page joins a few times
per click and gradio_client once per call, far below it. Past it: 429 with Retry-After, in words.
"""
from __future__ import annotations


from api.buckets import ClientBuckets, refused, setting

JOINS_PER_MINUTE = 600  # per client, sustained ($GRADIO_JOINS_PER_MINUTE; 0 turns the limit off)
JOINS_BURST = 60  # joins a client may make at once before the rate applies


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
