"""Per-client token buckets: the rate limits in front of Gradio's routes (queue joins, uploads).

A bucket holds up to `burst` tokens and refills at `rate` tokens a second; a request takes its cost
or is refused with the seconds until it could go. Clients are keyed by address (uvicorn puts the
visitor's there behind a trusted proxy, FORWARDED_ALLOW_IPS) and at most TRACKED_CLIENTS are kept,
the least recently seen forgotten first, so a flood of addresses costs bounded memory.
"""
from __future__ import annotations

import collections
import ipaddress
import logging
import math
import os
import time

from api.errors import send_error

log = logging.getLogger(__name__)

TRACKED_CLIENTS = 10_000


class ClientBuckets:
    def __init__(self, rate: float, burst: float, *, clock=time.monotonic):
        self.rate, self.burst = float(rate), float(burst)
        self._clock = clock
        self._buckets: collections.OrderedDict[str, tuple[float, float]] = collections.OrderedDict()

    def take(self, client: str, cost: float = 1.0) -> float | None:
        """None when `client` may go on (its bucket pays `cost`); otherwise the seconds to wait.
        Called on the event loop only: no lock needed."""
        if self.rate <= 0:
            return None  # 0 turns the limit off
        now = self._clock()
        tokens, seen = self._buckets.pop(client, (self.burst, now))
        tokens = min(self.burst, tokens + (now - seen) * self.rate)
        cost = min(cost, self.burst)  # one request larger than the burst can still pass on a full bucket
        allowed = tokens >= cost
        if allowed:
            tokens -= cost
        self._buckets[client] = (tokens, now)
        while len(self._buckets) > TRACKED_CLIENTS:
            self._buckets.popitem(last=False)
        return None if allowed else max(0.1, (cost - tokens) / self.rate)


def is_loopback(client: str) -> bool:
    """This machine itself (no forwarded address): its operator, a local script, the test suite. The
    per-client rates leave it alone; the totals (the cache cap, the queue's own bounds) still hold."""
    try:
        return ipaddress.ip_address(client).is_loopback
    except ValueError:
        return False


async def refused(buckets: "ClientBuckets", scope, send, cost: float, too_many: str) -> bool:
    """Take `cost` from the client's bucket (loopback is never counted); when it is empty, answer 429 with
    `too_many` and when to come back, and return True (the request is not passed on)."""
    client = client_of(scope)
    wait = None if is_loopback(client) else buckets.take(client, cost)
    if wait is None:
        return False
    seconds = math.ceil(wait)
    await send_error(send, 429, f"{too_many} Try again in {seconds} s.", headers=[(b"retry-after", str(seconds).encode())])
    return True


def client_of(scope) -> str:
    client = scope.get("client")
    return client[0] if client else "unknown client"


def setting(name: str, default: float) -> float:
    """A number from the environment ($name), or `default` when unset or not a number (logged)."""
    value = os.environ.get(name, "").strip()
    if not value:
        return default
    try:
        number = float(value)
    except ValueError:
        log.warning("%s=%r is not a number; using %s", name, value, default)
        return default
    return max(0.0, number)
