"""A per-client rate limit for anonymous corrections (a public Space must not be filled by one script)."""
from __future__ import annotations

import collections
import os
import threading
import time

RATE_PER_MINUTE = 30  # corrections one anonymous client may save per minute ($DRAWINGS_RATE_PER_MINUTE)
TRACKED_CLIENTS = 10_000  # clients remembered at once; the least recently seen is forgotten first (bounded memory)
WINDOW = 60.0  # s
_SHARED: "RateLimiter | None" = None
_SHARED_LOCK = threading.Lock()


class RateLimiter:
    """At most `per_minute` events per client in any 60-second window (a sliding log; thread-safe)."""

    def __init__(self, per_minute: int = RATE_PER_MINUTE, *, clock=time.monotonic):
        self.per_minute = per_minute
        self._clock = clock
        self._seen: collections.OrderedDict[str, collections.deque] = collections.OrderedDict()
        self._lock = threading.Lock()

    @classmethod
    def shared(cls) -> "RateLimiter":
        """The process's one limiter ($DRAWINGS_RATE_PER_MINUTE): REST and the page count a client together."""
        global _SHARED
        with _SHARED_LOCK:
            if _SHARED is None:
                _SHARED = cls.from_environment()
            return _SHARED

    @classmethod
    def from_environment(cls) -> "RateLimiter":
        value = os.environ.get("DRAWINGS_RATE_PER_MINUTE", "")
        return cls(int(value) if value.isascii() and value.isdigit() and int(value) > 0 else RATE_PER_MINUTE)

    def allow(self, client: str) -> float | None:
        """None when `client` may go on (and counts this event); otherwise the seconds to wait."""
        now = self._clock()
        with self._lock:
            times = self._seen.pop(client, None) or collections.deque()
            while times and now - times[0] >= WINDOW:
                times.popleft()
            self._seen[client] = times  # most recently seen last
            while len(self._seen) > TRACKED_CLIENTS:
                self._seen.popitem(last=False)
            if len(times) >= self.per_minute:
                return max(0.1, WINDOW - (now - times[0]))
            times.append(now)
            return None
