"""A plain round-robin HTTP load balancer, for the replica tests and benchmark: no stickiness at all.

    python -m benchmarks.replicas.proxy --port 8000 http://127.0.0.1:7861 http://127.0.0.1:7862 ...

Each request goes to the next upstream in turn, whoever sent it and whatever cookie it carries: the
worst case for an app that keeps sessions in a process (Gradio), and what a balancer without sticky
sessions does. One request per connection: the proxy asks both sides for `Connection: close`, so a
browser's keep-alive connection cannot pin it to one upstream either, and it never parses a body or
a response; it pipes bytes both ways until the upstream closes (uploads, SSE and chunked answers
stream as they come). Like nginx's `proxy_next_upstream error`, an upstream that refuses the
connection is skipped for the next one, so a replica killed with -9 stops getting requests.
X-Forwarded-For gets the client's address appended, as a real balancer does.
"""
from __future__ import annotations

import argparse
import asyncio
import contextlib
import threading
import urllib.parse
from typing import Iterator

HEAD_LIMIT = 64 * 1024  # request line and headers
CONNECT_TIMEOUT = 2.0  # s
CHUNK = 64 * 1024
_DROPPED = (b"connection", b"keep-alive", b"proxy-connection")
BAD_GATEWAY = (b"HTTP/1.1 502 Bad Gateway\r\ncontent-type: application/json\r\ncontent-length: 34\r\n"
               b"connection: close\r\n\r\n{\"error\": \"no upstream answered\"}\n")


class RoundRobinProxy:
    """Listens on host:port (0: a free port, see .url) and spreads requests over `upstreams` in turn."""

    def __init__(self, upstreams: list[str], host: str = "127.0.0.1", port: int = 0):
        self.upstreams = []
        for upstream in upstreams:
            parsed = urllib.parse.urlsplit(upstream)
            if parsed.scheme != "http" or not parsed.hostname or not parsed.port:
                raise ValueError(f"upstream {upstream!r}: give http://HOST:PORT")
            self.upstreams.append((parsed.hostname, parsed.port))
        self.host = host
        self.port = port
        self.served = [0] * len(self.upstreams)  # requests passed to each upstream
        self._next = 0
        self._server: asyncio.base_events.Server | None = None
        self._handlers: set[asyncio.Task] = set()  # client connections being served

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}/"

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._handle, self.host, self.port, limit=HEAD_LIMIT)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            handlers = list(self._handlers)  # streams still open (a page's heartbeat): end them
            for handler in handlers:
                handler.cancel()
            await asyncio.gather(*handlers, return_exceptions=True)
            await self._server.wait_closed()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        upstream_writer = None
        handler = asyncio.current_task()
        self._handlers.add(handler)
        try:
            try:
                head = await reader.readuntil(b"\r\n\r\n")
            except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
                return
            head = rewrite_head(head, writer.get_extra_info("peername")[0])
            connected = await self._connect()
            if connected is None:
                writer.write(BAD_GATEWAY)
                await writer.drain()
                return
            upstream_reader, upstream_writer = connected
            upstream_writer.write(head)
            # The answer is over when the upstream closes (it was asked to); a client that closes its side
            # first has left (HTTP clients do not half-close), and the upstream is told by the close.
            pipes = {asyncio.ensure_future(_pipe(upstream_reader, writer)),
                     asyncio.ensure_future(_pipe(reader, upstream_writer))}
            await asyncio.wait(pipes, return_when=asyncio.FIRST_COMPLETED)
            for pipe in pipes:
                pipe.cancel()
            for pipe in pipes:
                with contextlib.suppress(asyncio.CancelledError, ConnectionError):
                    await pipe
        except asyncio.CancelledError:  # stop(): the connection just ends (asyncio 3.11 logs a cancelled handler)
            pass
        finally:
            self._handlers.discard(handler)
            for stream in (upstream_writer, writer):
                if stream is not None:
                    stream.close()

    async def _connect(self):
        """The next upstream in turn that accepts a connection (each is tried at most once)."""
        for _ in range(len(self.upstreams)):
            index = self._next
            self._next = (self._next + 1) % len(self.upstreams)
            host, port = self.upstreams[index]
            try:
                connected = await asyncio.wait_for(asyncio.open_connection(host, port), CONNECT_TIMEOUT)
            except (OSError, TimeoutError):
                continue
            self.served[index] += 1
            return connected
        return None


async def _pipe(source: asyncio.StreamReader, target: asyncio.StreamWriter) -> None:
    while chunk := await source.read(CHUNK):
        target.write(chunk)
        await target.drain()


def rewrite_head(head: bytes, client: str) -> bytes:
    """The request head with `Connection: close` (one request per connection) and the client appended
    to X-Forwarded-For."""
    lines = head.split(b"\r\n")
    kept = [lines[0]]
    forwarded_for = b""
    for line in lines[1:]:
        if not line:
            continue
        name, _, value = line.partition(b":")
        key = name.strip().lower()
        if key in _DROPPED:
            continue
        if key == b"x-forwarded-for":
            forwarded_for = value.strip() + b", "
            continue
        kept.append(line)
    kept.append(b"X-Forwarded-For: " + forwarded_for + client.encode())
    kept.append(b"Connection: close")
    return b"\r\n".join(kept) + b"\r\n\r\n"


@contextlib.contextmanager
def running_proxy(upstreams: list[str]) -> Iterator[RoundRobinProxy]:
    """The proxy on a free loopback port, in a thread of its own, until the block ends."""
    loop = asyncio.new_event_loop()
    proxy = RoundRobinProxy(upstreams)
    started = threading.Event()

    def run() -> None:
        asyncio.set_event_loop(loop)
        loop.run_until_complete(proxy.start())
        started.set()
        loop.run_forever()

    thread = threading.Thread(target=run, name="round-robin-proxy", daemon=True)
    thread.start()
    if not started.wait(10):
        raise RuntimeError("the round-robin proxy did not start")
    try:
        yield proxy
    finally:
        asyncio.run_coroutine_threadsafe(proxy.stop(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.replicas.proxy", description=__doc__.split("\n")[0])
    parser.add_argument("upstreams", nargs="+", help="http://HOST:PORT of each replica")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    args = parser.parse_args(argv)

    async def serve() -> None:
        proxy = RoundRobinProxy(args.upstreams, args.host, args.port)
        await proxy.start()
        print(f"round-robin over {len(proxy.upstreams)} upstreams at {proxy.url}", flush=True)
        await asyncio.Event().wait()

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve())


if __name__ == "__main__":
    main()
