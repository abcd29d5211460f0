"""Session affinity between replicas, done by the app itself: N `python app.py` behind any load balancer act as one.

Why: Gradio keeps a session's state in the process that took it. A queue event joined on replica A
(/gradio_api/queue/join) streams its result only on A's /gradio_api/queue/data; gr.State, uploads
(/gradio_api/upload, served back by /gradio_api/file=) and the heartbeat that ends a session live
there too. Behind a round-robin balancer the page's next request lands elsewhere and waits forever
(Gradio's own error says "enable stickiness"). REST routes keep no session and are never routed.

How: the replica that first serves a visitor a Gradio request (the page, /config, /gradio_api/...)
sets the cookie `ds_replica=<its id>` (HttpOnly, SameSite=Lax, Path=/). Browsers send it with every
same-origin fetch and EventSource; gradio_client keeps the cookies of its first /config response for
all later requests ("cookie session-affinity" in gradio_client/client.py). A Gradio request whose
cookie names another live replica is forwarded to it (ReplicaForwarder): streamed both ways, SSE
included, and marked (FORWARDED_HEADER) so it is never forwarded twice. A cookie naming this replica,
a dead or unknown one, or not an id at all, and a request with no cookie: served here, cookie (re)set.

Safety: the forward's target comes only from the replica directory (api/replicas.py: what peers
registered in the shared database), never from anything the visitor sends; a cookie that is not an
id is never looked up. Each forward is bounded: MAX_FORWARDS at once (then 503), the request body's
size (MAX_FORWARD_BODY, then 413) and time (BODY_TIMEOUT in all, IDLE_TIMEOUT between chunks, then
408), IDLE_TIMEOUT without a byte from the peer (504 before the answer starts, the end of the stream
after) or into the visitor (the forward ends). A visitor who leaves ends the forward at once, so the
peer sees its session end as Gradio expects (the heartbeat's unload).

MCP (/gradio_api/mcp/) needs none of this for its streamable-HTTP transport: Gradio runs it stateless
(StreamableHTTPSessionManager(stateless=True)) and our tools are queue=False, called in-process; its
legacy SSE transport (/gradio_api/mcp/sse + /messages/) does hold a session, and the MCP SDK's client
keeps the cookie in its httpx client, so it follows the same rule.

With REPLICA_URL unset there is one replica: install() adds nothing, and nothing here runs.
"""
from __future__ import annotations

import asyncio
import contextlib
import http.cookiejar
import logging
from typing import Any

import httpx
from starlette.routing import Mount
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.errors import MAX_BODY_BYTES, body_too_large_message, send_error
from api.replicas import ID_PATTERN, ReplicaDirectory

log = logging.getLogger(__name__)

COOKIE = "ds_replica"
FORWARDED_HEADER = b"x-ds-forwarded-by"  # set on a forwarded request (the sender's id): never forward it again
SERVED_BY_HEADER = b"x-ds-replica"  # on every Gradio response: the id of the replica that served it
# At most this many requests forwarded from this replica at once. A page open in a browser holds up to
# two long-lived streams (the heartbeat and the queue's data stream); with 3 replicas each replica
# receives a third of all streams and forwards two thirds of those: 512 covers ~1,150 open pages in all.
MAX_FORWARDS = 512
CONNECT_TIMEOUT = 3.0  # s to reach a peer; a peer killed with -9 refuses at once (served here instead)
# No byte for this long, in either direction, ends a forward. Gradio's streams send a heartbeat every
# 15 s (GRADIO_HEARTBEAT_INTERVAL), so a live stream is never idle this long; a stuck one is closed.
IDLE_TIMEOUT = 60.0  # s
BODY_TIMEOUT = 120.0  # s for the whole request body (5 MB at ~0.35 Mbit/s); a trickled body cannot hold a slot
MAX_FORWARD_BODY = MAX_BODY_BYTES + 64 * 1024  # the largest upload plus its multipart envelope (api/server.py)
BUSY = "This server is busy passing requests between its replicas; try again in a few seconds"
PEER_GONE = "The server that held this session stopped; reload the page to continue"
PEER_SILENT = "The server that holds this session did not answer in time; try again"
TOO_SLOW = "The request body arrived too slowly; send it again"
# Connection-level headers (RFC 9110 section 7.6.1), never passed on; Host is kept, so the peer
# builds its file URLs for the address the visitor used.
HOP_BY_HOP = frozenset({b"connection", b"keep-alive", b"proxy-authenticate", b"proxy-authorization",
                        b"proxy-connection", b"te", b"trailer", b"transfer-encoding", b"upgrade"})
# The server's own: uvicorn adds this replica's, and a second copy would confuse clients.
SERVER_SET = frozenset({b"date", b"server"})
# Set here from what this replica concluded (uvicorn's proxy-header handling, FORWARDED_ALLOW_IPS):
# the peer, trusting this replica's address, sees the visitor's address (the rate limits' client id),
# never a chain the visitor wrote. X-Forwarded-Proto and -Host pass as they came: Gradio builds its
# URLs from them whoever sent them, so the peer builds the same URLs this replica would.
REWRITTEN = frozenset({b"x-forwarded-for", FORWARDED_HEADER})


def install(app: Any, directory: ReplicaDirectory | None, **limits: Any) -> ReplicaForwarder | None:
    """Route the Gradio app mounted in `app` by the `ds_replica` cookie, and run the directory's heartbeat
    with the server (registered before it accepts connections, removed when it stops). None: one replica."""
    if directory is None:
        return None
    gradio_app = next(route.app for route in app.routes if isinstance(route, Mount) and route.path == "")
    forwarder = ReplicaForwarder(directory.id, **limits)
    # Outermost in the Gradio app: a forwarded request costs this replica no Gradio work. REST routes
    # match before the mount, so they never come here.
    gradio_app.add_middleware(ReplicaAffinity, directory=directory, forwarder=forwarder)
    serve_lifespan = app.router.lifespan_context

    @contextlib.asynccontextmanager
    async def lifespan(running_app):
        await asyncio.to_thread(directory.start)
        try:
            async with serve_lifespan(running_app) as state:
                yield state
        finally:
            await forwarder.close()
            await asyncio.to_thread(directory.stop)

    app.router.lifespan_context = lifespan
    return forwarder


class ReplicaAffinity:
    """ASGI middleware on the Gradio app: forward a request to the live peer its cookie names, else serve it
    here and set the cookie to this replica."""

    def __init__(self, app: ASGIApp, directory: ReplicaDirectory, forwarder: ReplicaForwarder):
        self.app = app
        self.directory = directory
        self.forwarder = forwarder
        self.served_by = (SERVED_BY_HEADER, directory.id.encode())
        self.set_cookie = (b"set-cookie", f"{COOKIE}={directory.id}; Path=/; HttpOnly; SameSite=Lax".encode())
        self.set_secure_cookie = (b"set-cookie", self.set_cookie[1] + b"; Secure")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":  # lifespan; Gradio 6 serves no websockets
            await self.app(scope, receive, send)
            return
        headers = scope.get("headers") or []
        named = replica_cookie(headers)
        if named != self.directory.id and named is not None and ID_PATTERN.fullmatch(named) \
                and not any(name == FORWARDED_HEADER for name, _ in headers):
            url = self.directory.peer_url(named)
            if url is None:
                await self.directory.refresh()  # a peer may have started since the last beat
                url = self.directory.peer_url(named)
            if url is not None and await self.forwarder.forward(url, scope, receive, send, self.served_here):
                return
        await self.app(scope, receive, self.served_here(send, scope, set_cookie=named != self.directory.id))

    def served_here(self, send: Send, scope: Scope, *, set_cookie: bool) -> Send:
        """`send` with this replica's id on the answer, and the cookie that brings the visitor back here."""
        added = [self.served_by]
        if set_cookie:
            added.append(self.set_secure_cookie if scope.get("scheme") == "https" else self.set_cookie)

        async def send_here(message: Message) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", ()), *added]}
            await send(message)

        return send_here


def replica_cookie(headers) -> str | None:
    """The value of the first `ds_replica` cookie in the request's Cookie headers, if any."""
    prefix = COOKIE.encode() + b"="
    for name, value in headers:
        if name == b"cookie":
            for part in value.split(b";"):
                part = part.strip()
                if part.startswith(prefix):
                    return part[len(prefix):].strip(b'"').decode("latin-1")
    return None


class _Refused(Exception):
    """The visitor's request body broke a limit: answer `status` with `message`."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message


class _VisitorLeft(Exception):
    pass


class ReplicaForwarder:
    """Streams one ASGI request to a peer replica and its answer back, within the module's bounds."""

    def __init__(self, replica_id: str, *, max_forwards: int = MAX_FORWARDS, connect_timeout: float = CONNECT_TIMEOUT,
                 idle_timeout: float = IDLE_TIMEOUT, body_timeout: float = BODY_TIMEOUT,
                 max_body: int = MAX_FORWARD_BODY):
        self.replica_id = replica_id.encode()
        self.max_forwards = max_forwards
        self.idle_timeout = idle_timeout
        self.body_timeout = body_timeout
        self.max_body = max_body
        self.active = 0  # forwards in progress; only touched on the event loop
        # A cookie jar that keeps nothing: a peer's Set-Cookie goes to its visitor, never into this
        # shared client (where httpx would send it with every other visitor's requests).
        jar = http.cookiejar.CookieJar(policy=http.cookiejar.DefaultCookiePolicy(allowed_domains=[]))
        # trust_env=False: no HTTP(S)_PROXY or netrc from the environment; peers are reached directly.
        self.client = httpx.AsyncClient(
            timeout=httpx.Timeout(idle_timeout, connect=connect_timeout, pool=connect_timeout),
            limits=httpx.Limits(max_connections=max_forwards, max_keepalive_connections=32),
            cookies=jar, trust_env=False, follow_redirects=False)

    async def close(self) -> None:
        await self.client.aclose()

    async def forward(self, base_url: str, scope: Scope, receive: Receive, send: Send, served_here) -> bool:
        """Answer the request with the peer at `base_url`'s answer. False when the peer could not be
        reached and nothing of the request was read yet: the caller serves it here instead."""
        if self.active >= self.max_forwards:
            log.warning("refused a forward: %d are in progress (MAX_FORWARDS)", self.active)
            await send_error(served_here(send, scope, set_cookie=False), 503, BUSY)
            return True
        self.active += 1
        try:
            return await self._forward(base_url, scope, receive, send, served_here)
        finally:
            self.active -= 1

    async def _forward(self, base_url: str, scope: Scope, receive: Receive, send: Send, served_here) -> bool:
        loop = asyncio.get_running_loop()
        read = {"any": False}

        async def visitor_body():
            deadline = loop.time() + self.body_timeout
            received = 0
            while True:
                try:
                    async with asyncio.timeout(min(self.idle_timeout, max(0.0, deadline - loop.time()))):
                        message = await receive()
                except TimeoutError:
                    raise _Refused(408, TOO_SLOW) from None
                read["any"] = True
                if message["type"] == "http.disconnect":
                    raise _VisitorLeft
                chunk = message.get("body", b"")
                received += len(chunk)
                if received > self.max_body:
                    raise _Refused(413, body_too_large_message())
                if chunk:
                    yield chunk
                if not message.get("more_body", False):
                    return

        headers = forwarded_headers(scope, self.replica_id)
        declared = dict(scope.get("headers") or [])
        has_body = b"content-length" in declared or b"transfer-encoding" in declared
        if int(declared.get(b"content-length", b"0").strip() or 0) > self.max_body:  # uvicorn checked it is a number
            await send_error(served_here(send, scope, set_cookie=False), 413, body_too_large_message())
            return True
        target = base_url + (scope.get("raw_path") or scope["path"].encode()).decode("latin-1")
        if scope.get("query_string"):
            target += "?" + scope["query_string"].decode("latin-1")
        request = httpx.Request(scope["method"], target, headers=headers, content=visitor_body() if has_body else None)
        try:
            response = await self.client.send(request, stream=True)
        except (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout):
            if not read["any"]:
                log.warning("replica at %s did not answer; serving its visitor here", base_url)
                return False
            await send_error(served_here(send, scope, set_cookie=True), 502, PEER_GONE)  # the visitor moves here
            return True
        except _Refused as refused:  # the rest of the body is not read: the connection ends with the answer
            await send_error(served_here(send, scope, set_cookie=False), refused.status, refused.message,
                             [(b"connection", b"close")])
            return True
        except _VisitorLeft:
            return True
        except httpx.TimeoutException:
            await send_error(served_here(send, scope, set_cookie=False), 504, PEER_SILENT)
            return True
        except httpx.HTTPError as error:
            log.warning("forward to %s failed: %s: %s", base_url, type(error).__name__, error)
            await send_error(served_here(send, scope, set_cookie=True), 502, PEER_GONE)
            return True
        try:
            await self._relay(response, receive, send)
        finally:
            await response.aclose()
        return True

    async def _relay(self, response: httpx.Response, receive: Receive, send: Send) -> None:
        """The peer's answer to the visitor, until it ends, stalls, or the visitor leaves."""

        async def to_visitor(message: Message) -> None:
            # A visitor who stops reading lets go of the slot: the forward ends unfinished (uvicorn
            # closes the connection and logs "ASGI callable returned without completing response").
            async with asyncio.timeout(self.idle_timeout):
                await send(message)

        async def pump() -> None:
            await to_visitor({"type": "http.response.start", "status": response.status_code,
                              "headers": [(name.lower(), value) for name, value in response.headers.raw
                                          if name.lower() not in HOP_BY_HOP and name.lower() not in SERVER_SET]})
            try:
                async for chunk in response.aiter_raw():  # as sent: compressed stays compressed
                    await to_visitor({"type": "http.response.body", "body": chunk, "more_body": True})
            except httpx.HTTPError as error:  # the peer stalled or went away mid-answer: end it here
                log.info("forwarded answer ended early: %s", type(error).__name__)
            await to_visitor({"type": "http.response.body", "body": b"", "more_body": False})

        async def visitor_leaves() -> None:
            while (await receive())["type"] != "http.disconnect":
                pass

        pumping = asyncio.ensure_future(pump())
        watching = asyncio.ensure_future(visitor_leaves())
        try:
            await asyncio.wait({pumping, watching}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (pumping, watching):
                task.cancel()
            for task in (pumping, watching):
                with contextlib.suppress(asyncio.CancelledError, TimeoutError, OSError):
                    await task


def forwarded_headers(scope: Scope, replica_id: bytes) -> list[tuple[bytes, bytes]]:
    """The visitor's headers for the peer: hop-by-hop ones dropped (and those the Connection header
    names), the forwarding ones set from this replica's view, and the mark that stops a second forward."""
    headers = scope.get("headers") or []
    named = {token.strip().lower() for name, value in headers if name == b"connection" for token in value.split(b",")}
    kept = [(name, value) for name, value in headers
            if name not in HOP_BY_HOP and name not in named and name not in REWRITTEN]
    client = scope.get("client")
    if client:
        kept.append((b"x-forwarded-for", client[0].encode("latin-1")))
    if not any(name == b"x-forwarded-proto" for name, _ in kept):
        kept.append((b"x-forwarded-proto", scope.get("scheme", "http").encode("latin-1")))
    kept.append((FORWARDED_HEADER, replica_id))
    if not any(name == b"host" for name, _ in kept):  # HTTP/1.0 may omit it
        host, port = scope.get("server") or ("localhost", None)
        kept.append((b"host", f"{host}:{port}".encode("latin-1") if port else host.encode("latin-1")))
    return kept
