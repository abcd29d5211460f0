"""The Train tab's work: who may train, and a running job as a stream of page updates."""
from __future__ import annotations

import asyncio
import hmac
import time
from typing import Any, AsyncIterator

from training.jobs import JobManager
from training.options import TrainOptions
from training.registry import ModelSpec
from ui import plots, views

STREAM_INTERVAL = 0.3  # s between streamed updates: smooth, without flooding the browser
STREAM_WAIT = 5.0  # s: longest wait for the next training event before looking at the job again


def training_blocked(spec: ModelSpec, token: str | None, train_token: str | None) -> str | None:
    """Why this page may not train `spec` now (TensorFlow missing, token missing or wrong), or None."""
    reason = spec.unavailable_reason()
    if reason:
        return reason
    if train_token:
        if not token:
            return "Training is protected on this server: enter the training token first."
        if not token_matches(token, train_token):
            return "Wrong training token: nothing was started or cancelled."
    return None


def token_matches(token: str | None, train_token: str | None) -> bool:
    """Whether `token` is the server's TRAIN_TOKEN (always True when the server has none)."""
    return not train_token or (bool(token) and hmac.compare_digest(token.encode(), train_token.encode()))


def can_train(spec: ModelSpec, token: str | None, train_token: str | None) -> bool:
    """Whether the Train button is enabled (the token itself is checked on click)."""
    return spec.unavailable_reason() is None and (not train_token or bool(token))


def option_values(options: TrainOptions) -> list[Any]:
    """The option fields' values: epochs, batch size, learning rate, training images (0 = all)."""
    return [options.epochs, options.batch_size, options.learning_rate, options.limit or 0]


def options_from_fields(epochs, batch_size, learning_rate, limit) -> dict[str, Any]:
    """JobManager options from the fields; an emptied field keeps the model's default."""
    options = {key: value for key, value in
               (("epochs", epochs), ("batch_size", batch_size), ("learning_rate", learning_rate))
               if value is not None}
    options["limit"] = int(limit) if limit else None  # 0 or empty: all 60,000 training images
    return options


def training_view(job: dict[str, Any], status: str | None = None) -> tuple:
    """(progress, status, accuracy curve, loss curve, summary) from JobManager.status()."""
    accuracy, loss = plots.training_curves(job["history"])
    return (job["progress"], status or views.training_status_line(job), accuracy, loss,
            views.training_summary(job))


async def stream_job(jobs: JobManager, name: str, interval: float = STREAM_INTERVAL) -> AsyncIterator[tuple]:
    """Views of `name`'s job while it runs, ending with its final state.

    Awaits the job manager's changes (wait_for_change_async) instead of polling or holding a
    thread: every open Train tab follows a run this way, and a blocked thread per tab took
    Gradio's worker threads from predictions (60 tabs: a prediction took 11.8 s). At most one
    update per `interval` s however fast the trainer reports (it may report every batch),
    and the view of one job state is computed once for all the tabs that show it.
    """
    shown, last_shown = -1, 0.0
    while True:
        latest = await jobs.wait_for_change_async(name, shown, STREAM_WAIT)
        finished = not jobs.is_running(name)
        if latest == shown and not finished:
            continue  # nothing new within STREAM_WAIT: keep waiting
        pause = interval - (time.monotonic() - last_shown)
        if pause > 0 and not finished:
            await asyncio.sleep(pause)
            finished = not jobs.is_running(name)
        view, shown = shared_view(jobs, name)
        yield view
        last_shown = time.monotonic()
        if finished:
            return


# (job manager, model) -> (event number, view): one entry per model, replaced as the job moves on.
_shared_views: dict[tuple[int, str], tuple[int, tuple]] = {}


def shared_view(jobs: JobManager, name: str) -> tuple[tuple, int]:
    """(training_view of `name`'s job, its event number), computed once per job state for every tab."""
    key = (id(jobs), name)
    cached = _shared_views.get(key)
    if cached is not None and cached[0] == jobs.seq(name):
        return cached[1], cached[0]
    job = jobs.status(name)
    view = training_view(job)
    _shared_views[key] = (job["seq"], view)
    return view, job["seq"]
