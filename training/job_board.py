"""Training jobs in the database, so that replicas behave as one app (issue 20 item 3).

Each process keeps its own jobs in its JobManager (training/jobs.py: threads, events, cancel). The
board is what the others see of them, one row per model in `training_jobs`:

    who trains it (the replica), its state, progress, status line, accuracy, the last events, and
    whether someone asked it to stop.

- One training per model across replicas: a run holds the advisory lock `train:<model>` from its start
  to its end (store/: a PostgreSQL session lock, or a file lock on SQLite), so a second start anywhere
  is refused (409), and a replica killed with kill -9 frees it at once (the database ends the session,
  the system the file lock).
- The running replica writes its row as the run goes (at most every PUBLISH_EVERY s, and at once at
  the end); every replica polls the rows every POLL_EVERY s and mirrors a run of another replica into
  its own JobManager, so its REST /train_status, its Train tab's live progress and its Train button
  follow that run as they follow their own.
- A row that says "running" while its lock is free belongs to a replica that died: the first reader
  marks it failed ("the replica training it stopped"); the serving version never changed, since a run
  only makes its version serve at its very end.
- A cancel on another replica sets the row's `cancel_requested`; the running replica sees it when it
  next writes the row and cancels its job.
"""
from __future__ import annotations

import datetime as _dt
import json
import logging
import os
import socket
import uuid
from dataclasses import dataclass
from typing import Any

from store import AdvisoryLock, Database, StoreError

log = logging.getLogger(__name__)

PUBLISH_EVERY = 0.5  # s between two writes of a running job's row (the trainer may report every batch)
POLL_EVERY = 0.5  # s between two reads of the rows by the other replicas (one small SELECT)
EVENTS_KEPT = 200  # last events in a row: the other replicas' curves and status history


@dataclass(frozen=True)
class BoardRow:
    model: str
    replica: str
    state: str
    progress: float
    status: str
    accuracy: float | None
    error: str | None
    events: list[dict[str, Any]]
    published: int  # the row's write count: a cheap "anything new?"
    cancel_requested: bool
    started_at: float | None
    finished_at: float | None


def replica_id() -> str:
    """This process's name on the board: host, process id and a random part (a pid can come back)."""
    return f"{socket.gethostname()[:40]}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


class JobBoard:
    """The `training_jobs` rows over one database, written and read by this replica (`replica`)."""

    def __init__(self, database: Database, replica: str | None = None):
        self.database = database
        self.replica = replica or replica_id()

    # -- the one-training-per-model rule -------------------------------------------------------

    def claim(self, model: str) -> AdvisoryLock | None:
        """The lock `train:<model>` if no replica trains it now, else None. Hold it for the whole run."""
        return self.database.try_lock(f"train:{model}")

    def holder_alive(self, model: str) -> bool:
        """Whether some replica holds `train:<model>` (a free lock means its holder is gone)."""
        lock = self.claim(model)
        if lock is None:
            return True
        lock.release()
        return False

    # -- rows -------------------------------------------------------------------------------------

    def publish(self, model: str, job: dict[str, Any]) -> bool:
        """Write this replica's job (JobManager.status() of it) into `model`'s row; returns whether
        another replica asked it to stop."""
        events = job.get("history") or []
        values = (self.replica, job["state"], float(job["progress"]), str(job["status"])[:500],
                  job.get("accuracy"), (job.get("error") or None), json.dumps(events[-EVENTS_KEPT:]),
                  job.get("started_at"), job.get("finished_at"), _now(), model)

        def write(tx) -> bool:
            updated = tx.execute(
                "UPDATE training_jobs SET replica = ?, state = ?, progress = ?, status = ?, accuracy = ?, "
                "error = ?, events = ?, started_at = ?, finished_at = ?, updated_at = ?, published = published + 1 "
                "WHERE model = ? RETURNING cancel_requested", values).fetchone()
            if updated is None:
                tx.execute("INSERT INTO training_jobs (replica, state, progress, status, accuracy, error, events, "
                           "started_at, finished_at, updated_at, model, published, cancel_requested) "
                           "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 1, 0)", values)
                return False
            return bool(updated[0])

        return self.database.write(write)

    def start(self, model: str, job: dict[str, Any]) -> None:
        """A new run of this replica: its row, with any old stop request cleared."""
        self.database.write(lambda tx: tx.execute(
            "UPDATE training_jobs SET cancel_requested = 0 WHERE model = ?", (model,)))
        self.publish(model, job)

    def request_cancel(self, model: str) -> bool:
        """Ask the replica running `model` to stop; False when the row shows no running job."""
        return self.database.write(lambda tx: tx.execute(
            "UPDATE training_jobs SET cancel_requested = 1 WHERE model = ? AND state = 'running'",
            (model,)).rowcount > 0)

    def rows(self) -> dict[str, BoardRow]:
        """Every model's row (one small read)."""
        found = self.database.read(lambda tx: tx.execute(
            "SELECT model, replica, state, progress, status, accuracy, error, events, published, cancel_requested, "
            "started_at, finished_at FROM training_jobs").fetchall())
        return {str(row[0]): BoardRow(str(row[0]), str(row[1]), str(row[2]), float(row[3]), str(row[4]),
                                      None if row[5] is None else float(row[5]), row[6], _events(row[7]),
                                      int(row[8]), bool(row[9]), row[10], row[11]) for row in found}

    def mark_failed(self, model: str, replica: str, message: str) -> bool:
        """Mark `replica`'s running row of `model` failed (it died); False if it had already changed."""
        return self.database.write(lambda tx: tx.execute(
            "UPDATE training_jobs SET state = 'failed', status = ?, error = ?, updated_at = ?, "
            "published = published + 1 WHERE model = ? AND replica = ? AND state = 'running'",
            ("Training failed", message, _now(), model, replica)).rowcount > 0)


_last_problem: dict[str, str] = {}  # what -> the last error said, so a database down for an hour logs once


def safely(what: str, work, default=None):
    """Run a board call; a database that is down costs the board, never the training or the request."""
    try:
        value = work()
    except StoreError as error:
        if _last_problem.get(what) != str(error):
            _last_problem[what] = str(error)
            log.warning("training jobs board: %s failed: %s", what, error)
        return default
    _last_problem.pop(what, None)
    return value


def _events(text: Any) -> list[dict[str, Any]]:
    try:
        events = json.loads(text or "[]")
    except ValueError:
        return []
    return [event for event in events if isinstance(event, dict)] if isinstance(events, list) else []


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat()
