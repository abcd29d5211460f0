"""Run Keras `model.fit` in a worker thread and stream its progress to a generator.

Keras reports progress through callbacks, which it calls from inside `fit`; a
generator trainer has to *yield* its progress instead. The bridge runs `fit` in a
worker thread whose callback puts events on a queue, and the generator blocks on
that queue (no polling, no sleeps):

    history = yield from stream_fit(lambda callbacks: model.fit(..., callbacks=callbacks))

- every `report_every` training batches and at each epoch end, a `FitEvent` is yielded;
- an exception raised inside `fit` is re-raised in the generator, so it reaches the caller;
- when the consumer stops (closes the generator, or an exception such as
  KeyboardInterrupt interrupts it), the callback raises `TrainingCancelled` inside
  `fit` at the next batch, and the generator waits for the worker to end before it
  returns, so no training is left running behind the caller's back.

The queue is unbounded on purpose: training never waits for a slow consumer (a UI
that renders a chart per event), and an epoch makes only a few dozen events.
Keras is imported inside `stream_fit` only.
"""
from __future__ import annotations

import queue
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Generator

REPORT_EVERY = 20  # training batches between two batch events


class TrainingCancelled(Exception):
    """Raised inside `fit`, from the bridge's callback, once the consumer has stopped listening."""


@dataclass(frozen=True)
class FitEvent:
    kind: str  # "batch" (every report_every batches) or "epoch" (at each epoch end, with val_* logs)
    epoch: int  # 1-based
    batch: int | None  # 1-based within the epoch; None for epoch events
    logs: dict[str, float] = field(default_factory=dict)  # Keras logs: running loss/accuracy of the epoch so far
    elapsed: float = 0.0  # seconds since fit started, when the event happened (not when it was consumed)


def stream_fit(
    fit: Callable[[list], Any],
    *,
    report_every: int = REPORT_EVERY,
    thread_name: str = "keras-fit",
) -> Generator[FitEvent, None, Any]:
    """Run `fit(callbacks)` in a worker thread; yield its FitEvents; return what `fit` returned.

    `fit` must pass `callbacks` on to `model.fit`.
    """
    import keras

    events: queue.Queue = queue.Queue()
    cancelled = threading.Event()
    started = time.perf_counter()
    report_every = max(1, int(report_every))

    def emit(kind: str, epoch: int, batch: int | None, logs) -> None:
        values = {key: float(value) for key, value in (logs or {}).items()}
        events.put(("event", FitEvent(kind, epoch, batch, values, time.perf_counter() - started)))

    class Bridge(keras.callbacks.Callback):
        epoch = 0

        def _stop_if_cancelled(self) -> None:
            if cancelled.is_set():
                # stop_training alone would still finish the batch loop's validation pass;
                # raising stops fit at once (the worker swallows TrainingCancelled).
                self.model.stop_training = True
                raise TrainingCancelled("training cancelled")

        def on_epoch_begin(self, epoch, logs=None):
            self.epoch = epoch + 1
            self._stop_if_cancelled()

        def on_train_batch_end(self, batch, logs=None):
            self._stop_if_cancelled()
            if (batch + 1) % report_every == 0:
                emit("batch", self.epoch, batch + 1, logs)

        def on_test_batch_end(self, batch, logs=None):
            self._stop_if_cancelled()

        def on_epoch_end(self, epoch, logs=None):
            self._stop_if_cancelled()
            emit("epoch", epoch + 1, None, logs)

    def work() -> None:
        try:
            outcome = ("done", fit([Bridge()]))
        except BaseException as error:  # noqa: BLE001 - handed to the generator, which re-raises it
            outcome = ("error", error)
        events.put(outcome)

    worker = threading.Thread(target=work, name=thread_name, daemon=True)
    worker.start()
    try:
        while True:
            kind, payload = events.get()
            if kind == "event":
                yield payload
            elif kind == "done":
                return payload
            else:
                raise payload
    finally:
        # Reached on success, on an error from fit, and when the consumer closes the
        # generator (GeneratorExit at the yield): in the last case fit is still running.
        cancelled.set()
        worker.join()
