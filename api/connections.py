"""Bounds on open connections (issue 18, item 9): slow-header floods must not take every file descriptor.

20,000 connections that each sent part of a request head and then nothing held 20,000 descriptors:
the process reached its open-files limit and every new connection was refused for ~35 s (asyncio
stops accepting for a second after each EMFILE). uvicorn starts no timer before a request's head is
complete, and its `limit_concurrency` answers 503 only once a head is complete (so it would refuse
the real clients, not the slow heads). At the transport, before any parsing:

- a head must be complete within HEAD_TIMEOUT of its first byte (or of the connection's start),
  else the connection is closed: a browser sends its head in one packet;
- at most CONNECTIONS_PER_CLIENT open connections per peer address (not for the addresses in
  FORWARDED_ALLOW_IPS: a reverse proxy carries every visitor);
- at most MAX_CONNECTIONS open in all, kept below the open-files limit: at the cap a new connection
  closes the connection whose head has been incomplete longest, so the newcomer is served and the
  slow ones pay; with no such connection the newcomer is closed at once.

`raise_open_files_limit()` lifts the soft RLIMIT_NOFILE to the hard one at start (1,024 is a common
soft default), and MAX_CONNECTIONS is lowered to fit what the process may open.
"""
from __future__ import annotations

import collections
import logging
import time

from api.buckets import setting

log = logging.getLogger(__name__)

MAX_CONNECTIONS = 4096  # open connections in all ($HTTP_MAX_CONNECTIONS): ~2 per open page
CONNECTIONS_PER_CLIENT = 256  # open connections per peer address ($HTTP_CONNECTIONS_PER_CLIENT; 0: no cap)
HEAD_TIMEOUT = 10.0  # s from a head's first byte to its end ($HTTP_HEAD_TIMEOUT)
RESERVED_FILES = 256  # descriptors kept for the app itself: workers' pipes, the database, model files, uploads
SWEEP_EVERY = 1.0  # s between looks for heads past their time


def raise_open_files_limit() -> tuple[int, int] | None:
    """Lift this process's soft open-files limit to its hard limit; returns (before, after), or None
    where the platform has no such limit (Windows)."""
    try:
        import resource
    except ImportError:
        return None
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = hard if hard != resource.RLIM_INFINITY else max(soft, 1 << 20)
    if soft != resource.RLIM_INFINITY and soft < target:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        except (ValueError, OSError) as error:  # e.g. macOS refuses more than OPEN_MAX
            log.warning("could not raise the open-files limit from %d to %d: %s", soft, target, error)
            return soft, soft
        return soft, target
    return soft, soft


def open_files_limit() -> int | None:
    try:
        import resource
    except ImportError:
        return None
    soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    return None if soft == resource.RLIM_INFINITY else soft


class ConnectionTable:
    """The process's open connections: counts per peer, and those whose head is incomplete, oldest first."""

    def __init__(self, max_connections: int, per_client: int, head_timeout: float):
        self.max_connections, self.per_client, self.head_timeout = max_connections, per_client, head_timeout
        self.open = 0
        self.per_peer: collections.Counter[str] = collections.Counter()
        self.in_head: collections.OrderedDict[object, float] = collections.OrderedDict()  # protocol -> head start
        self.refused = self.evicted = self.timed_out = 0
        self._sweeper = None

    @classmethod
    def from_environment(cls) -> "ConnectionTable":
        maximum = int(setting("HTTP_MAX_CONNECTIONS", MAX_CONNECTIONS)) or MAX_CONNECTIONS
        files = open_files_limit()
        if files is not None and maximum > files - RESERVED_FILES:
            fitted = max(64, files - RESERVED_FILES)
            log.warning("HTTP_MAX_CONNECTIONS %d lowered to %d: the open-files limit is %d (ulimit -n)",
                        maximum, fitted, files)
            maximum = fitted
        return cls(maximum, int(setting("HTTP_CONNECTIONS_PER_CLIENT", CONNECTIONS_PER_CLIENT)),
                   setting("HTTP_HEAD_TIMEOUT", HEAD_TIMEOUT) or HEAD_TIMEOUT)

    def admit(self, protocol, peer: str, trusted: bool, loop) -> bool:
        """Count a new connection; False when it must be closed at once."""
        if self.per_client and not trusted and self.per_peer[peer] >= self.per_client:
            self.refused += 1
            return False
        if self.open >= self.max_connections:
            if not self.in_head:
                self.refused += 1
                return False
            oldest, _ = self.in_head.popitem(last=False)
            self.evicted += 1
            oldest.close_slow_head()
        self.open += 1
        self.per_peer[peer] += 1
        self.head_started(protocol)
        if self._sweeper is None:
            self._sweeper = loop.call_later(SWEEP_EVERY, self._sweep, loop)
        return True

    def head_started(self, protocol) -> None:
        if protocol not in self.in_head:
            self.in_head[protocol] = time.monotonic()

    def head_done(self, protocol) -> None:
        self.in_head.pop(protocol, None)

    def closed(self, protocol, peer: str) -> None:
        self.in_head.pop(protocol, None)
        self.open -= 1
        self.per_peer[peer] -= 1
        if self.per_peer[peer] <= 0:
            del self.per_peer[peer]

    def _sweep(self, loop) -> None:
        deadline = time.monotonic() - self.head_timeout
        while self.in_head:
            protocol, started = next(iter(self.in_head.items()))
            if started > deadline:
                break
            del self.in_head[protocol]
            self.timed_out += 1
            protocol.close_slow_head()
        self._sweeper = loop.call_later(SWEEP_EVERY, self._sweep, loop)


_TABLE: ConnectionTable | None = None


def table() -> ConnectionTable:
    global _TABLE
    if _TABLE is None:
        _TABLE = ConnectionTable.from_environment()
    return _TABLE


class ConnectionGuard:
    """Mixin for uvicorn's HTTP protocol class (api/server.py): admits each connection through the
    process's ConnectionTable and times its request heads. Its class must track `_in_head` as
    api.server.HeaderLimitedProtocol does (True while a request's head is awaited)."""

    def connection_made(self, transport) -> None:  # type: ignore[override]
        super().connection_made(transport)  # type: ignore[misc]
        peer = transport.get_extra_info("peername")
        self._peer = peer[0] if isinstance(peer, tuple) and peer else "unix"
        self._counted = table().admit(self, self._peer, self._peer in _trusted(self), self.loop)
        if not self._counted:
            transport.abort()  # no answer: a flood from one address must cost it, not us

    def connection_lost(self, exc) -> None:
        if getattr(self, "_counted", False):
            self._counted = False
            table().closed(self, self._peer)
        super().connection_lost(exc)  # type: ignore[misc]

    def data_received(self, data: bytes) -> None:
        if self._counted and self._in_head:
            table().head_started(self)  # a keep-alive connection's next request: its head's time starts now
        super().data_received(data)  # type: ignore[misc]

    def on_headers_complete(self) -> None:
        table().head_done(self)
        super().on_headers_complete()  # type: ignore[misc]

    def handle_websocket_upgrade(self) -> None:
        if getattr(self, "_counted", False):  # the websocket protocol takes the transport: count it out here
            self._counted = False
            table().closed(self, self._peer)
        super().handle_websocket_upgrade()  # type: ignore[misc]

    def close_slow_head(self) -> None:
        if self.cycle is not None and not self.cycle.response_complete:
            return  # answering a request (a pipelined head is pending): its own timeouts apply
        self.transport.close()


_TRUSTED = {}


def _trusted(protocol):
    """uvicorn's own test of FORWARDED_ALLOW_IPS (the proxies whose X-Forwarded-For it believes)."""
    allowed = getattr(protocol.config, "forwarded_allow_ips", None) or "127.0.0.1"
    hosts = _TRUSTED.get(allowed)
    if hosts is None:
        from uvicorn.middleware.proxy_headers import _TrustedHosts

        hosts = _TRUSTED[allowed] = _TrustedHosts(allowed)
    return hosts
