"""Where explanations are computed, and how many at once: the one gate REST, gradio_client and MCP share.

An explanation costs far more than a prediction (Model 2's integrated gradients run 16 images
forward and back), so nobody may make the server compute them without bound:

- They run in explanation worker processes (a PredictionPool of their own: EXPLAIN_WORKERS,
  default 1), never in the prediction workers, so a page that asks for explanations never
  delays anyone's answers. A worker's BLAS uses one thread (pool_worker.main): on the shared
  cores, OpenBLAS's two threads made the backward pass's small matrix products 40x slower
  (a [3872, 64] @ [64, 32] product: 12-38 ms with 2 threads under load, 0.3 ms with 1).
- At most `waiting` requests wait for a worker besides those it computes; beyond that the
  answer is 503 with Retry-After, in words.
- One client (its address) has at most `per_client` explanations admitted at once; beyond,
  429. The page asks for one at a time (ui/static/explain.js).
- Without a ready worker (starting, or EXPLAIN_WORKERS=0) they are computed one at a time in a
  thread of the server process, under the same counts.

Used from the server's one event loop, like inference/pool.py: the counts need no lock.
"""
from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import os
import sys
import time
import anyio

from inference.answer import encode, predict_answer
from inference.pool import PredictionPool
from inference.pool_worker import EXPLAIN_FLAG

log = logging.getLogger(__name__)

DEFAULT_WORKERS = 1  # $EXPLAIN_WORKERS: one core's worth at most, of the two this app is sized for
DEFAULT_WAITING = 4  # $EXPLAIN_WAITING: queued besides those computing (a queued one waits ~30 ms each)
DEFAULT_PER_CLIENT = 2  # $EXPLAIN_PER_CLIENT: the page keeps one in flight; two leave room for a retry
RETRY_AFTER = 1  # s
AFTER_TIMEOUT = 120.0  # s: the longest the explanation workers wait for the prediction workers to start


class ExplainRefused(Exception):
    """Too many explanations at once, for the server (503) or for this client (429), said in words."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message
        self.retry_after = RETRY_AFTER  # s

    @property
    def headers(self) -> dict[str, str]:
        return {"Retry-After": str(self.retry_after)}


def _setting(name: str, default: int) -> int:
    value = os.environ.get(name, "").strip()
    if not value:
        return default
    try:
        return max(0, int(value))
    except ValueError:
        log.warning("%s=%r is not a number; using %d", name, value, default)
        return default


class ExplainLane:
    def __init__(self, predictor, exports_dir, *, data_dir=None, workers: int | None = None,
                 waiting: int | None = None, per_client: int | None = None, pool: PredictionPool | None = None):
        """`exports_dir` and `data_dir`: what the explanation workers serve, as the prediction pool's."""
        self.predictor = predictor
        self.workers = _setting("EXPLAIN_WORKERS", DEFAULT_WORKERS) if workers is None else workers
        self.waiting = _setting("EXPLAIN_WAITING", DEFAULT_WAITING) if waiting is None else waiting
        self.per_client = max(1, _setting("EXPLAIN_PER_CLIENT", DEFAULT_PER_CLIENT) if per_client is None
                              else per_client)
        self.pool = pool if pool is not None else PredictionPool(
            exports_dir, size=self.workers,
            command=[sys.executable, "-m", "inference.pool_worker", str(exports_dir),
                     *([str(data_dir)] if data_dir is not None else []), EXPLAIN_FLAG])
        self.admitted = 0  # explanations being computed or waiting, server-wide
        self.answered = 0
        self.refused = 0
        self._by_client: collections.Counter[str] = collections.Counter()
        self._in_process = anyio.CapacityLimiter(1)
        self._explainer = None  # for the in-process fallback, opened on first use
        self._starter: asyncio.Task | None = None  # start(after=...) waiting for the prediction workers

    @property
    def capacity(self) -> int:
        """Explanations admitted at once: computing plus waiting."""
        return max(self.pool.size, 1) + self.waiting

    async def start(self, after: PredictionPool | None = None) -> None:
        """Start the explanation workers in the background. With `after` (the prediction pool), only once
        its workers are ready, or after AFTER_TIMEOUT: a worker's start is seconds of CPU (imports, the
        graphs opened and warmed), and starting them all at once on a busy 2-core machine delayed the
        server's first answers past gradio_client's 5 s timeout. Meanwhile explanations are computed
        in this process (one at a time)."""
        if after is None or after.size <= 0:
            await self.pool.start()
            return
        self._starter = asyncio.get_running_loop().create_task(self._start_after(after))

    async def _start_after(self, other: PredictionPool) -> None:
        deadline = time.monotonic() + AFTER_TIMEOUT
        while other.ready_workers < other.size and time.monotonic() < deadline:
            await asyncio.sleep(0.2)
        await self.pool.start()

    async def close(self) -> None:
        if self._starter is not None:
            self._starter.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._starter
        await self.pool.close()

    def describe(self) -> dict[str, int]:
        """For GET /env: the explanation workers and what the gate admitted and refused."""
        return {**self.pool.describe(), "admitted_now": self.admitted, "capacity": self.capacity,
                "per_client": self.per_client, "answered": self.answered, "refused": self.refused}

    async def answer(self, image: str, model: str, invert: bool = False, *, include_input: bool = False,
                     client: str | None = None) -> tuple[int, bytes]:
        """(HTTP status, JSON body) of a /predict answer with each model's "explanation"; raises
        ExplainRefused when the server or this client already has as many as it may."""
        key = client or "unknown client"
        if self._by_client[key] >= self.per_client:
            self.refused += 1
            raise ExplainRefused(429, f"This client already has {self._by_client[key]} explanations being computed "
                                      f"(at most {self.per_client} at once): wait for them before asking for more")
        if self.admitted >= self.capacity:
            self.refused += 1
            raise ExplainRefused(503, f"The server is busy explaining other drawings ({self.admitted} at once): "
                                      f"try again in a moment; predictions without \"explain\" are not affected")
        self.admitted += 1
        self._by_client[key] += 1
        try:
            answered = await self.pool.answer(image, model, invert, include_input=include_input, explain=True)
            if answered is None:  # no explanation worker is ready: one at a time in this process
                answered = await anyio.to_thread.run_sync(self._in_process_answer, image, model, invert,
                                                          include_input, limiter=self._in_process)
            self.answered += 1
            return answered
        finally:
            self.admitted -= 1
            self._by_client[key] -= 1
            if not self._by_client[key]:
                del self._by_client[key]

    def _in_process_answer(self, image: str, model: str, invert: bool, include_input: bool) -> tuple[int, bytes]:
        from inference.explain.explainer import Explainer

        if self._explainer is None:
            self._explainer = Explainer.for_predictor(self.predictor)
        # Explainer.explain holds BLAS to one thread (see the module docstring) while it computes.
        status, payload = predict_answer(self.predictor, image, model, invert, include_input, self._explainer)
        return status, encode(payload)
