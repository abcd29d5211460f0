"""Where a prediction runs, for every path into the predictor: REST `POST /predict` (api/app.py), the
gradio_client `predict` endpoint and the MCP `recognize_digit` tool (ui/). One object per process, so a
large image takes the same one-at-a-time lane whichever door it came in by (issue 18 item 5: 120
parallel MCP calls with a 2048x2048 PNG were decoded in up to 40 of Gradio's threads at once in the
server process, and 7 of 11 `/env` probes took over a second; through REST the same load left 0 of 97).

Each choice measured on this 2-core machine, 280x280 canvas PNG:
- Requests that overlap go to the worker processes (inference/pool.py): one process is GIL-bound at
  ~2 ms of CPU per request, ~430 req/s at 8 clients however many threads it uses; with workers the
  server process keeps only the HTTP work: 530-640.
- A lone canvas-sized PNG is answered right here on the event loop: the hop to a worker and back costs
  ~0.35 ms (1 client p50 2.96 ms here vs 3.32 ms via a worker). Yielding once first lets requests that
  arrived together reach this point, so overlap is seen; otherwise every request would find the
  server idle.
- Without ready workers (starting, PREDICT_WORKERS=0), anything else runs in at most PREDICT_THREADS
  threads, so a big upload never stalls the loop (which also serves the UI). Two, not anyio's default
  40: the work keeps retaking the GIL, and more threads only add handoffs (all requests in threads, 8
  clients: 40 threads 305 req/s, 2 threads 380).
- An image that declares over LARGE_PIXELS (tens of ms to decode, up to a few hundred MB for the
  largest allowed), or whose size the first 64 KB do not tell, waits its turn in the large lane:
  LARGE_AT_ONCE at a time, checked from the header before anything is decoded, so large uploads
  never hold more than that share of the workers and canvas-sized requests keep their latency.
"""
from __future__ import annotations

import asyncio
import contextlib
from typing import AsyncIterator

import anyio

from inference.answer import ALL_MODELS, encode, predict_answer
from inference.image_io import LARGE_PIXELS, declared_size, png_size
from inference.pool import PredictionPool
from inference.predictor import Predictor

PREDICT_THREADS = 2  # predictions at once in threads when there is no pool (see the module doc)
# An idle server answers a PNG this small on the event loop (see fits_inline).
INLINE_MAX_IMAGE_CHARS = 64 * 1024
INLINE_MAX_PIXELS = 640 * 640
LARGE_AT_ONCE = 1  # predictions (and explanations) of a large image decoded at once


class PredictionLanes:
    """The one place that decides where a prediction runs (see the module doc). `answer()` gives the
    (HTTP status, JSON bytes) of inference/answer.py's predict_answer, wherever it was computed."""

    def __init__(self, predictor: Predictor, pool: PredictionPool | None = None) -> None:
        self.predictor = predictor
        self.pool = pool
        self._threads = anyio.CapacityLimiter(PREDICT_THREADS)
        self._large: asyncio.Semaphore | None = None  # made on the event loop that uses it
        self._in_threads = 0  # these two are only touched on the event loop: no lock needed
        self._in_flight = 0

    @contextlib.asynccontextmanager
    async def admitted(self, image: str) -> AsyncIterator[bool]:
        """Hold the large lane while the block runs if `image` is large (by its header); yields whether it
        fits inline (a small canvas PNG). Explanations of a large image take the same lane."""
        if self._large is None:
            self._large = asyncio.Semaphore(LARGE_AT_ONCE)
        inline = fits_inline(image)
        self._in_flight += 1
        try:
            if not inline and is_large(image):
                async with self._large:
                    yield inline
            else:
                yield inline
        finally:
            self._in_flight -= 1

    async def answer(self, image: str, model: str, invert: bool = False, *,
                     include_input: bool = False) -> tuple[int, bytes]:
        """(HTTP status, JSON body) for one prediction: the REST /predict contract's payload."""
        if model != ALL_MODELS and model not in self.predictor.models:
            return self._here(image, model, invert, include_input)  # a 422 at once, nothing to decode
        async with self.admitted(image) as inline:
            return await self._answer(image, model, invert, include_input, inline)

    async def _answer(self, image: str, model: str, invert: bool, include_input: bool,
                      inline: bool) -> tuple[int, bytes]:
        small = self._in_threads == 0 and inline
        pool = self.pool
        if pool is not None and pool.ready_workers:
            await asyncio.sleep(0)
            if not small or self._in_flight > 1 or pool.waiting:
                answered = await pool.answer(image, model, invert, include_input=include_input)
                if answered is not None:
                    return answered
        if small:
            return self._here(image, model, invert, include_input)
        self._in_threads += 1
        try:
            return await anyio.to_thread.run_sync(self._here, image, model, invert, include_input,
                                                  limiter=self._threads)
        finally:
            self._in_threads -= 1

    def _here(self, image: str, model: str, invert: bool, include_input: bool) -> tuple[int, bytes]:
        status, payload = predict_answer(self.predictor, image, model, invert, include_input=include_input)
        return status, encode(payload)


def fits_inline(image: str) -> bool:
    """A short PNG of canvas-like size: ~1-2 ms of work, fine to do on the event loop. The header
    is checked too, because a few KB of PNG can declare a huge flat image (tens of ms to decode)."""
    if len(image) > INLINE_MAX_IMAGE_CHARS:
        return False
    size = png_size(image)
    return size is not None and size[0] * size[1] <= INLINE_MAX_PIXELS


def is_large(image: str) -> bool:
    """Whether the image declares more than LARGE_PIXELS, or does not say in its first 64 KB."""
    size = declared_size(image)
    return size is None or size[0] * size[1] > LARGE_PIXELS
