"""What every database backend offers the domain packages (drawings, later versions and jobs).

    db.write(lambda tx: tx.execute("INSERT ... VALUES (?, ?)", (a, b)).fetchone())
    rows = db.read(lambda tx: tx.execute("SELECT ...").fetchall())   # one consistent snapshot
    with db.locked("train:model1", timeout=0): ...                    # an advisory lock, across processes
    watcher = db.watch(lambda topic, counter: ...)                    # "something changed" signals

SQL uses `?` placeholders and the types both databases share. `work(tx)` may run twice
(a SQLite file repaired between the attempts), so it must not have effects outside the
database. Errors are the store's (store/errors.py), never a driver's, except for real
bugs (a bad statement).
"""
from __future__ import annotations

import abc
import contextlib
import hashlib
import logging
import threading
from typing import Any, Callable, Iterator, Protocol, TypeVar

from store.errors import LockTimeout

log = logging.getLogger(__name__)
T = TypeVar("T")
WATCH_INTERVAL = 1.0  # s between polls of the change counters (PostgreSQL also wakes on NOTIFY at once)
LOCK_POLL = 0.05  # s between attempts while waiting for an advisory lock


class Cursor(Protocol):
    rowcount: int

    def fetchone(self) -> Any: ...

    def fetchall(self) -> list[Any]: ...


class Transaction(Protocol):
    dialect: str

    def execute(self, sql: str, params: tuple | list = ()) -> Cursor: ...


class AdvisoryLock(abc.ABC):
    """A named lock held by this process until released (or until the process dies: the
    database or the operating system frees it then, so a killed holder never blocks anyone)."""

    def __init__(self, name: str):
        self.name = name

    @abc.abstractmethod
    def release(self) -> None: ...

    @abc.abstractmethod
    def held(self) -> bool:
        """Whether the lock is still ours (a PostgreSQL restart ends the session that held it)."""

    def __enter__(self) -> "AdvisoryLock":
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


class Database(abc.ABC):
    dialect: str

    def __init__(self) -> None:
        # Bumped when the store behind this object is replaced (a damaged SQLite file recreated):
        # a cache keyed on change counters must not mistake the new database's counter 5 for the old one's.
        self.generation = 0

    # -- transactions ----------------------------------------------------------

    @abc.abstractmethod
    def read(self, work: Callable[[Transaction], T]) -> T:
        """`work(tx)` in a read-only transaction that sees one snapshot."""

    @abc.abstractmethod
    def write(self, work: Callable[[Transaction], T]) -> T:
        """`work(tx)` in a write transaction, committed when it returns, rolled back when it raises."""

    @abc.abstractmethod
    def ensure_ready(self) -> None:
        """Create or migrate the schema now (the app calls it at start); raises the store's errors."""

    @abc.abstractmethod
    def exists(self) -> bool:
        """Whether the database has been created (a SQLite file not yet made: False)."""

    @abc.abstractmethod
    def describe(self) -> dict[str, Any]:
        """What it is, for logs and GET /env; never a password."""

    def close(self) -> None:
        """Release connections and files (the object is not used again)."""

    # -- change counters ---------------------------------------------------------

    def bump(self, tx: Transaction, topic: str) -> int:
        """Count a change of `topic` inside the writer's transaction; returns the new counter.

        It also serialises the writers of `topic`: the counter's row stays locked until the
        transaction ends (PostgreSQL; SQLite's write lock already does), so a check made after
        bump (a row cap) holds until the commit."""
        return int(tx.execute("INSERT INTO change_counters (topic, counter) VALUES (?, 1) ON CONFLICT (topic) "
                              "DO UPDATE SET counter = change_counters.counter + 1 RETURNING counter",
                              (topic,)).fetchone()[0])

    def counters(self) -> dict[str, int]:
        rows = self.read(lambda tx: tx.execute("SELECT topic, counter FROM change_counters").fetchall())
        return {str(topic): int(counter) for topic, counter in rows}

    def watch(self, on_change: Callable[[str, int], None], interval: float = WATCH_INTERVAL) -> "Watcher":
        """Call `on_change(topic, counter)` (in a background thread) whenever a topic's counter moves,
        whoever moved it: this process, another one, another machine on the same PostgreSQL.
        A callback that raises StoreUnavailableError (it could not read what changed: the database went
        away again, or is still in its back-off) is called again at the next poll until it succeeds."""
        return Watcher(self, on_change, interval)

    def _change_waiter(self) -> "ChangeWaiter":
        """What a Watcher sleeps on between polls (PostgreSQL: LISTEN, woken by NOTIFY)."""
        return ChangeWaiter()

    # -- advisory locks -----------------------------------------------------------

    @abc.abstractmethod
    def try_lock(self, name: str) -> AdvisoryLock | None:
        """The lock `name` if no one (no thread, process or replica) holds it now, else None."""

    @contextlib.contextmanager
    def locked(self, name: str, timeout: float | None = None) -> Iterator[AdvisoryLock]:
        """Hold the lock `name` for the block, waiting at most `timeout` s for it (None: as long as it takes);
        raises LockTimeout."""
        import time

        deadline = None if timeout is None else time.monotonic() + timeout
        while (lock := self.try_lock(name)) is None:
            if deadline is not None and time.monotonic() >= deadline:
                raise LockTimeout(f"{name!r} is held elsewhere; try again when it is released")
            time.sleep(LOCK_POLL)
        with lock:
            yield lock


def lock_key(name: str) -> int:
    """A lock name as a signed 64-bit key (PostgreSQL's advisory-lock key type)."""
    return int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "big", signed=True)


class ChangeWaiter:
    """Sleeps between polls; a backend with push notifications wakes early."""

    def __init__(self) -> None:
        self._stop = threading.Event()

    def wait(self, timeout: float) -> None:
        self._stop.wait(timeout)

    def close(self) -> None:
        self._stop.set()


class Watcher:
    """A daemon thread comparing the change counters with what it saw last."""

    def __init__(self, database: Database, on_change: Callable[[str, int], None], interval: float):
        self._database = database
        self._on_change = on_change
        self._interval = interval
        self._stopped = threading.Event()
        self._waiter: ChangeWaiter | None = None
        self._seen: dict[str, int] | None = None
        self._thread = threading.Thread(target=self._run, name="store-watcher", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stopped.set()
        if self._waiter is not None:
            self._waiter.close()
        self._thread.join(timeout=5)

    def _run(self) -> None:
        from store.errors import StoreError

        self._waiter = self._database._change_waiter()
        try:
            while not self._stopped.is_set():
                try:
                    counters = self._database.counters()
                except StoreError as error:  # down for a while: keep trying, quietly
                    log.debug("change watcher: %s", error)
                else:
                    if self._seen is not None:
                        for topic, counter in counters.items():
                            if self._seen.get(topic) != counter and not self._notify(topic, counter):
                                # Not handled: keep the old counter, so the next poll calls again. A replica
                                # told of a switch just as PostgreSQL came back read nothing (503) and served
                                # the old version until the next switch (seen in a suite run under load).
                                counters[topic] = self._seen.get(topic, -1)
                    self._seen = counters
                self._waiter.wait(self._interval)
        finally:
            self._waiter.close()

    def _notify(self, topic: str, counter: int) -> bool:
        """Whether the callback handled the change (False: the database could not answer it; call again).
        Only unavailability is retried: damaged data would fail the same way at every poll."""
        from store.errors import StoreUnavailableError

        try:
            self._on_change(topic, counter)
        except StoreUnavailableError as error:
            log.info("change watcher: %r not handled yet (%s); trying again at the next poll", topic, error)
            return False
        except Exception:  # a subscriber's bug must not stop the signal for the others
            log.exception("change watcher: the callback for %r failed", topic)
        return True
