"""Background training jobs, shared by the UI and the REST API.

A job consumes a registry trainer (a generator of `Progress` events ending with
one `Result`) in a daemon thread and keeps what consumers need: the latest
progress, a bounded history of events, the result or the error. One job per
model at a time; different models may train side by side.

Cancel sets a flag; the worker closes the generator at its next event, and the
trainer stops on GeneratorExit without writing anything (writes are atomic and
happen only at the end), so the previous model stays in place. The renames that put
a run's files in place happen inside this manager's commit gate (training/artifacts.py),
under the same lock as cancel(): a cancel that comes first stops the commit (nothing
is renamed); once the files are renamed, cancel() answers False (too late) and the job
ends as succeeded, saying so. Either way, what the job reports is what is on disk.

Streaming consumers call `wait_for_update(name, seen, timeout)`, which blocks on
a Condition (no polling) until events past `seen` exist or the job finishes, or,
on an event loop, `await wait_for_change_async(...)`, which waits the same way
without holding a thread (a hundred open Train tabs must not take the web
server's worker threads from predictions).
Every job ends with one terminal event carrying `"state"` ("succeeded",
"failed" or "cancelled"), so a consumer's loop can stop on it.

With a `board` (training/job_board.py: the database's training_jobs rows), the manager is one of
several replicas: a start takes the model's advisory lock for the run (another replica's start is a
JobAlreadyRunningError, 409 in REST), the run's progress is written to its row, and the runs of the
other replicas are mirrored here as jobs of their own (`"replica"` in their status), so that status(),
the waits and the Train tab follow them as they follow this process's runs. A cancel of a mirrored run
asks its replica to stop.
"""
from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

from pydantic import TypeAdapter, ValidationError

from training import job_board
from training.artifacts import CommitCancelled, commit_gate
from training.events import Progress, Result
from training.job_board import JobBoard
from training.options import TrainOptions
from training.registry import MODELS, ModelSpec

log = logging.getLogger(__name__)

HISTORY_LIMIT = 2000  # events kept per job; enough for a per-batch log of a quick run
PRESETS = ("default", "quick")  # options["preset"]: which base options the others update

RUNNING, SUCCEEDED, FAILED, CANCELLED, IDLE = "running", "succeeded", "failed", "cancelled", "idle"
TERMINAL_STATES = (SUCCEEDED, FAILED, CANCELLED)

OnSuccess = Callable[[str, Result], Any]

_OPTIONS_ADAPTER = TypeAdapter(TrainOptions)


class JobAlreadyRunningError(RuntimeError):
    """A second start for a model that is still training."""


class TrainingUnavailableError(RuntimeError):
    """Training cannot run here (TensorFlow missing, MNIST not found); the message says how to fix it."""


@dataclass
class _Job:
    name: str
    options: TrainOptions
    started_at: float = field(default_factory=time.time)
    state: str = RUNNING
    progress: float = 0.0
    status: str = "Starting"
    accuracy: float | None = None
    error: str | None = None
    result: dict[str, Any] | None = None
    finished_at: float | None = None
    history: deque = field(default_factory=lambda: deque(maxlen=HISTORY_LIMIT))
    cancel_requested: threading.Event = field(default_factory=threading.Event)
    saved: bool = False  # its files are renamed into place: too late to cancel
    late_cancel: bool = False  # a cancel came after that
    thread: threading.Thread | None = None
    lock: Any = None  # the board's train:<model> lock, held for the run (None without a board)
    published_at: float = 0.0  # monotonic time of the last write of its board row
    replica: str | None = None  # a run of another replica, mirrored from the board (None: this process's own)
    mirrored: int = 0  # the board row's write count last mirrored
    mirrored_events: int = 0  # the last event number of that replica's run mirrored


class JobManager:
    """Runs registry trainers in background threads; thread-safe."""

    def __init__(self, on_success: OnSuccess | None = None, *, models: Mapping[str, ModelSpec] | None = None,
                 exports_dir: str | None = None, history_limit: int = HISTORY_LIMIT, board: JobBoard | None = None):
        self.on_success = on_success
        self.models: dict[str, ModelSpec] = dict(models if models is not None else MODELS)
        self.exports_dir = exports_dir  # None: the trainer's default ($EXPORTS_DIR or ./exports)
        self.history_limit = history_limit
        self._jobs: dict[str, _Job] = {}
        # Event numbers keep counting across a model's jobs, so a consumer's `seen` stays valid.
        self._seq: dict[str, int] = {name: 0 for name in self.models}
        self._changed = threading.Condition()
        self._async_waiters: set[tuple[asyncio.AbstractEventLoop, asyncio.Event]] = set()  # under _changed
        self.board = board
        self._stopped = threading.Event()
        if board is not None:
            threading.Thread(target=self._follow_board, name="training-board", daemon=True).start()

    # -- starting and stopping -------------------------------------------

    def start(self, name: str, options: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """Start training `name` in the background; returns its status.

        Raises KeyError (unknown model), ValueError (bad options),
        TrainingUnavailableError, JobAlreadyRunningError.
        """
        spec = self._spec(name)
        reason = spec.unavailable_reason()
        if reason:
            raise TrainingUnavailableError(reason)
        mnist_problem = self._mnist_problem()
        if mnist_problem:
            raise TrainingUnavailableError(mnist_problem)
        try:
            trainer = spec.trainer()
        except ImportError as error:  # a broken install, not the user's fault: say so instead of a 500
            raise TrainingUnavailableError(
                f"{spec.title} cannot be trained here: its trainer failed to import ({error})") from error
        train_options = self.parse_options(spec, options)
        with self._changed:
            current = self._jobs.get(name)
            if current is not None and current.state == RUNNING:
                raise JobAlreadyRunningError(_already_running(spec, current))
        lock = self._claim(spec)  # another replica's run: JobAlreadyRunningError (database calls: not under the lock)
        with self._changed:
            current = self._jobs.get(name)
            if current is not None and current.state == RUNNING:  # started here meanwhile
                if lock is not None:
                    lock.release()
                raise JobAlreadyRunningError(_already_running(spec, current))
            job = _Job(name=name, options=train_options, history=deque(maxlen=self.history_limit), lock=lock)
            self._jobs[name] = job
            self._record(job, {"progress": 0.0, "status": "Starting"})
            job.thread = threading.Thread(target=self._run, args=(job, trainer), name=f"train-{name}", daemon=True)
            started, view = self._status_locked(name), _board_view(job)
        if self.board is not None:  # the row first, so the run's own writes find it
            job_board.safely("writing the new run", lambda: self.board.start(name, view))
        job.thread.start()
        return started

    def cancel(self, name: str) -> bool:
        """Ask the running job for `name` to stop; False when nothing is running, or when the run has
        already saved its files (too late: it ends as succeeded; its status has "saved": True)."""
        self._spec(name)
        with self._changed:
            job = self._jobs.get(name)
            if job is None or job.state != RUNNING:
                return False
            if job.replica is not None:  # another replica's run: ask it (it stops at its next report)
                if not job_board.safely("asking for a cancel", lambda: self.board.request_cancel(name), False):
                    return False
                job.status = "Cancelling (asked the replica that runs it)"
                self._record(job, {"progress": round(job.progress, 1), "status": job.status})
                return True
            if job.saved:
                job.late_cancel = True
                return False
            job.cancel_requested.set()
            job.status = "Cancelling"
            self._record(job, {"progress": round(job.progress, 1), "status": job.status})
            return True

    def join(self, name: str, timeout: float | None = None) -> bool:
        """Wait for the current job of `name` to end; True when it has."""
        job = self._jobs.get(name)
        if job is None or job.thread is None:
            return True
        job.thread.join(timeout)
        return not job.thread.is_alive()

    def shutdown(self, timeout: float = 10.0) -> None:
        """Cancel every running job of this process and wait (bounded) for them to stop (another
        replica's runs go on)."""
        self._stopped.set()
        for name in self.models:
            job = self._jobs.get(name)
            if job is not None and job.replica is None:
                self.cancel(name)
        deadline = time.monotonic() + timeout
        for name in self.models:
            self.join(name, max(0.0, deadline - time.monotonic()))

    # -- queries ------------------------------------------------------------

    def is_running(self, name: str) -> bool:
        job = self._jobs.get(name)
        return job is not None and job.state == RUNNING

    def status(self, name: str, history: int | None = None) -> dict[str, Any]:
        """The current (or last) job of `name`; `history` keeps only its last N events."""
        self._spec(name)
        with self._changed:
            return self._status_locked(name, history)

    def wait_for_update(self, name: str, seen: int, timeout: float) -> tuple[list[dict[str, Any]], int]:
        """Events numbered after `seen` (blocking up to `timeout` s until there are some).

        Returns (new events, new seen). Start with seen=0 to get the current job's whole
        kept history. Returns at once with no events when no job is running and nothing is new.
        """
        self._spec(name)
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                events = self._events_after(name, seen)
                if events or not self.is_running(name):
                    return events, self._seq[name]
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return [], self._seq[name]
                self._changed.wait(remaining)

    def seq(self, name: str) -> int:
        """The number of `name`'s latest event (it counts across jobs): cheap, for "anything new?"."""
        with self._changed:
            return self._seq[name]

    async def wait_for_change_async(self, name: str, seen: int, timeout: float, *, while_idle: bool = False) -> int:
        """For coroutines: the latest event number, as soon as it differs from `seen` or no job runs
        (with `while_idle`: also while none runs, until one starts), else after `timeout` s.
        Awaited on the event loop, holding no thread; no history is copied."""
        self._spec(name)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            woken = asyncio.Event()
            with self._changed:
                if self._seq[name] != seen or (not while_idle and not self.is_running(name)):
                    return self._seq[name]
                remaining = deadline - loop.time()
                if remaining <= 0:
                    return self._seq[name]
                waiter = (loop, woken)
                self._async_waiters.add(waiter)
            try:
                await asyncio.wait_for(woken.wait(), remaining)
            except asyncio.TimeoutError:
                pass
            finally:
                with self._changed:
                    self._async_waiters.discard(waiter)

    # -- options ------------------------------------------------------------

    def parse_options(self, spec: ModelSpec, options: Mapping[str, Any] | None) -> TrainOptions:
        """TrainOptions from a user's dict: unknown keys and bad values raise ValueError."""
        if options is not None and not isinstance(options, Mapping):
            raise ValueError('options must be a JSON object such as {"epochs": 2}')
        options = dict(options or {})
        preset = options.pop("preset", "default")
        if preset not in PRESETS:
            raise ValueError(f"preset must be one of {', '.join(PRESETS)}, got {preset!r}")
        known = TrainOptions.field_names()
        unknown = sorted(set(options) - set(known))
        if unknown:
            raise ValueError(f"unknown option(s) {', '.join(unknown)}; valid options: "
                             f"{', '.join(known)} (and preset: {' or '.join(PRESETS)})")
        base = spec.quick() if preset == "quick" else spec.defaults()
        try:
            # Pydantic checks the types the dataclass declares (ints stay ints, limit may be null).
            # An explicit null is kept (limit: null = all images), unlike TrainOptions.updated().
            checked = _OPTIONS_ADAPTER.validate_python({**base.to_dict(), **options})
        except ValidationError as error:
            problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in error.errors())
            raise ValueError(f"invalid option value: {problems}") from None
        return spec.check_options(checked.validate())  # issue 21 item 5: what its trainer does not do

    # -- internals ------------------------------------------------------------

    def _spec(self, name: str) -> ModelSpec:
        try:
            return self.models[name]
        except KeyError:
            raise KeyError(f"unknown model {name!r}; choose one of: {', '.join(self.models)}") from None

    @staticmethod
    def _mnist_problem() -> str | None:
        from training.mnist import download_allowed, locate_mnist

        if locate_mnist() is not None or download_allowed():
            return None
        return ("MNIST was not found and downloading it is disabled (MNIST_DOWNLOAD=0): set MNIST_DIR to a "
                "folder holding the four MNIST IDX files (e.g. train-images-idx3-ubyte.gz), or unset MNIST_DOWNLOAD")

    def _run(self, job: _Job, trainer: Callable[..., Any]) -> None:
        """The worker thread: consume the trainer, record events, end in a terminal state."""
        generator = None
        try:
            with commit_gate(lambda: self._saving(job)):
                generator = trainer(job.options, exports_dir=self.exports_dir)
                result = self._consume(job, generator)
            if result is not None:
                self._succeed(job, result)  # files are written: a late cancel cannot undo that
            elif job.cancel_requested.is_set():
                generator.close()  # GeneratorExit inside the trainer: it stops and writes nothing
                self._finish(job, CANCELLED, f"Cancelled at {job.progress:.0f}%; the previous model is unchanged")
            else:
                self._finish(job, FAILED, "Training failed", error="the trainer ended without a result")
        except CommitCancelled:  # the cancel came while the trainer was exporting: nothing was renamed
            self._finish(job, CANCELLED, f"Cancelled at {job.progress:.0f}%, before the new model was saved; "
                                         "the previous model is unchanged")
        except Exception as error:  # any trainer failure becomes the job's status, never a lost thread
            if _expected_failure(error):  # e.g. no MNIST: one line with the reason; no traceback
                log.warning("training %s cannot run: %s", job.name, " ".join(str(error).split()))
            else:  # a bug: the traceback is what finds it
                log.exception("training %s failed", job.name)
            self._finish(job, FAILED, "Training failed", error=f"{type(error).__name__}: {error}")
        finally:
            if generator is not None and hasattr(generator, "close"):
                try:
                    generator.close()
                except Exception:
                    log.exception("closing the %s trainer failed", job.name)
            self._publish(job, force=True)  # the end, for the other replicas; then the model is free
            if job.lock is not None:
                job.lock.release()

    def _consume(self, job: _Job, generator) -> Result | None:
        """Record the trainer's events until it ends (its Result) or a cancel is seen (None)."""
        result = None
        for event in generator:
            if isinstance(event, Result):
                result = event  # the last item; keep iterating so the trainer ends normally
                continue
            if job.cancel_requested.is_set():
                break
            if isinstance(event, Progress):
                with self._changed:
                    job.progress = max(job.progress, float(event.progress))
                    job.status = event.status
                    job.accuracy = _first_not_none(event.val_accuracy, event.accuracy, job.accuracy)
                    self._record(job, event.to_dict())
                self._publish(job)
        return result

    @contextlib.contextmanager
    def _saving(self, job: _Job):
        """The commit gate of `job`'s trainer: refuse the renames if a cancel came first; otherwise
        rename under the lock cancel() takes, and mark the job saved."""
        with self._changed:
            if job.cancel_requested.is_set():
                raise CommitCancelled
            yield
            job.saved = True

    def _succeed(self, job: _Job, result: Result) -> None:
        summary = result.to_dict()
        error = None
        if self.on_success is not None:
            try:
                self.on_success(job.name, result)
            except Exception as exc:
                log.exception("on_success for %s failed", job.name)
                error = f"trained and saved, but loading the new model failed: {type(exc).__name__}: {exc}"
        with self._changed:
            job.result = summary
            job.accuracy = result.test_accuracy
        prepared = "" if result.data_seconds is None else f" (and {result.data_seconds:.1f} s preparing the data)"
        status = (f"Done: test accuracy {result.test_accuracy:.2%} in {result.train_seconds:.1f} s of training{prepared}"
                  if error is None else "Trained, but the new model could not be loaded")
        if job.late_cancel:
            status += " (the cancel came after the new model was saved: it is in use)"
        self._finish(job, SUCCEEDED if error is None else FAILED, status, error=error, progress=100.0)

    def _finish(self, job: _Job, state: str, status: str, *, error: str | None = None,
                progress: float | None = None) -> None:
        with self._changed:
            job.state = state
            job.status = status
            job.error = error
            job.finished_at = time.time()
            if progress is not None:
                job.progress = progress
            event = {"progress": round(job.progress, 1), "status": status, "state": state}
            if error:
                event["error"] = error
            if job.accuracy is not None:
                event["accuracy"] = job.accuracy
            self._record(job, event)

    def _record(self, job: _Job, event: dict[str, Any]) -> None:
        """Append an event and wake waiters; caller holds the condition."""
        self._seq[job.name] += 1
        job.history.append((self._seq[job.name], event))
        self._changed.notify_all()
        for loop, woken in self._async_waiters:
            try:
                loop.call_soon_threadsafe(woken.set)
            except RuntimeError:  # that loop has closed; its waiter is gone with it
                pass

    # -- the board: this process's runs for the other replicas, theirs here ----------------------------

    def _claim(self, spec: ModelSpec) -> Any:
        """The board's lock on `spec`'s model for a new run (None without a board, or while the database
        is down: the run goes on, only this process knowing of it); JobAlreadyRunningError when another
        replica holds it."""
        if self.board is None:
            return None
        try:
            lock = self.board.claim(spec.name)
        except job_board.StoreError as error:
            log.warning("training %s without the jobs board: %s", spec.name, error)
            return None
        if lock is None:
            row = job_board.safely("reading the jobs board", self.board.rows, {}).get(spec.name)
            where = f"on another replica ({row.progress:.0f}% done: {row.status})" if row else "on another replica"
            raise JobAlreadyRunningError(f"{spec.title} is already training {where}; wait for it to finish or "
                                         "cancel it first")
        return lock

    def _publish(self, job: _Job, force: bool = False) -> None:
        """Write `job`'s row (at most every PUBLISH_EVERY s unless `force`); a cancel asked by another
        replica is applied here."""
        if self.board is None or job.replica is not None:
            return
        now = time.monotonic()
        if not force and now - job.published_at < job_board.PUBLISH_EVERY:
            return
        job.published_at = now
        with self._changed:
            view = _board_view(job)
        asked = job_board.safely("publishing progress", lambda: self.board.publish(job.name, view), False)
        if asked and job.state == RUNNING:
            self.cancel(job.name)

    def _follow_board(self) -> None:
        """The poller thread: mirror the other replicas' runs (see the module doc)."""
        while not self._stopped.wait(job_board.POLL_EVERY):
            try:
                rows = job_board.safely("reading the jobs board", self.board.rows, {})
                for name, row in rows.items():
                    if name in self.models and row.replica != self.board.replica:
                        self._mirror(name, row)
            except Exception:  # a bad row or a driver's surprise must not end the poller for good
                log.exception("following the jobs board failed; trying again")

    def _mirror(self, name: str, row: job_board.BoardRow) -> None:
        if row.state == RUNNING and not job_board.safely("checking a run", lambda: self.board.holder_alive(name), True):
            job_board.safely("marking a dead replica's run", lambda: self.board.mark_failed(
                name, row.replica, f"The replica training it ({row.replica}) stopped before the run ended; "
                                   "the serving model is unchanged"))
            return  # the next poll mirrors it failed
        with self._changed:
            job = self._jobs.get(name)
            if job is not None and job.replica is None and job.state == RUNNING:
                return  # this process runs it (its row is being rewritten by us)
            same_run = job is not None and job.replica == row.replica and job.started_at == row.started_at
            if not same_run:
                if row.state != RUNNING and job is not None and (job.finished_at or 0) >= (row.finished_at or 0):
                    return  # an older run than the one shown here
                job = _Job(name=name, options=TrainOptions(), history=deque(maxlen=self.history_limit),
                           replica=row.replica, started_at=row.started_at or time.time())
                self._jobs[name] = job
            elif job.mirrored == row.published:
                return
            job.mirrored = row.published
            job.progress, job.status, job.accuracy, job.error = row.progress, row.status, row.accuracy, row.error
            for event in row.events:
                number = int(event.get("n", 0))
                if number > job.mirrored_events:
                    job.mirrored_events = number
                    self._record(job, {key: value for key, value in event.items() if key != "n"})
            if row.state != RUNNING and job.state == RUNNING:
                job.state, job.finished_at = row.state, row.finished_at or time.time()
                if not any(event.get("state") for _, event in list(job.history)[-1:]):
                    self._record(job, {"progress": round(job.progress, 1), "status": job.status, "state": job.state,
                                       **({"error": job.error} if job.error else {})})
            elif not row.events:
                self._record(job, {"progress": round(job.progress, 1), "status": job.status})

    def _events_after(self, name: str, seen: int) -> list[dict[str, Any]]:
        job = self._jobs.get(name)
        if job is None or self._seq[name] <= seen:
            return []
        return [event for number, event in job.history if number > seen]

    def _status_locked(self, name: str, history: int | None = None) -> dict[str, Any]:
        job = self._jobs.get(name)
        if job is None:
            return {"model": name, "state": IDLE, "running": False, "progress": 0.0, "status": "Not started",
                    "accuracy": None, "error": None, "result": None, "saved": False, "history": [], "seq": self._seq[name],
                    "options": None, "started_at": None, "finished_at": None, "elapsed": None, "replica": None}
        end = job.finished_at or time.time()
        return {
            "model": name,
            "state": job.state,
            "running": job.state == RUNNING,
            "progress": round(job.progress, 1),
            "status": job.status,
            "accuracy": job.accuracy,
            "error": job.error,
            "result": job.result,
            "saved": job.saved,
            "history": _last([event for _, event in job.history], history),
            "seq": self._seq[name],
            "options": job.options.to_dict(),
            "started_at": job.started_at,
            "finished_at": job.finished_at,
            "elapsed": round(end - job.started_at, 2),
            "replica": job.replica,  # None: this process runs it; else the replica that does
        }


def _board_view(job: _Job) -> dict[str, Any]:
    """What the board keeps of this process's `job` (caller holds the condition): its state and its last
    events, each with its number ("n") so another replica appends only the new ones."""
    events = [{"n": number, **event} for number, event in list(job.history)[-job_board.EVENTS_KEPT:]]
    return {"state": job.state, "progress": round(job.progress, 1), "status": job.status, "accuracy": job.accuracy,
            "error": job.error, "history": events, "started_at": job.started_at, "finished_at": job.finished_at}


def _already_running(spec: ModelSpec, job: _Job) -> str:
    where = " on another replica" if job.replica is not None else ""
    return (f"{spec.title} is already training{where} ({job.progress:.0f}% done, started "
            f"{time.time() - job.started_at:.0f} s ago); wait for it to finish or cancel it first")


def _expected_failure(error: Exception) -> bool:
    """A condition of the machine, not a bug: MNIST missing, damaged or not downloadable."""
    from training.mnist import MnistError

    return isinstance(error, MnistError)


def _last(items: list, count: int | None) -> list:
    if count is None:
        return items
    return items[-count:] if count > 0 else []


def _first_not_none(*values):
    for value in values:
        if value is not None:
            return value
    return None
