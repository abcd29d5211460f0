"""PostgreSQL (DATABASE_URL=postgresql://...): one database for several app processes or machines.

psycopg 3 with psycopg_pool's ConnectionPool: each operation borrows a connection for one
transaction. What a public server needs on top:
- at start, the server must answer within START_WAIT s and the migrations run under an
  advisory lock (replicas starting together migrate once); otherwise DatabaseConfigError,
  which the app prints as one line before it stops;
- while the server is down or restarting, an operation fails at once with
  StoreUnavailableError (HTTP 503) instead of holding a request thread: after a failed
  connection, operations are refused for DOWN_BACKOFF s; otherwise an operation waits at most
  POOL_WAIT s for a connection (the waiters are bounded by the server's request threads). Connections are checked before use
  (one round trip), so the first request after a restart does not get a dead one;
- connections go back to the pool whatever happens (the pool's context manager), and the pool
  never holds more than POOL_SIZE.
Advisory locks are PostgreSQL's session locks on a connection of their own (not the pool's):
the server frees them when the holder's process dies.
"""
from __future__ import annotations

import functools
import logging
import os
import threading
import time
from typing import Any, Callable, TypeVar

import psycopg
import psycopg_pool
from psycopg import conninfo as _conninfo

import store.schema as schema  # not "from store import": the package imports this module (late)
from store.database import AdvisoryLock, ChangeWaiter, Database, lock_key
from store.errors import DatabaseConfigError, StoreDiskFullError, StoreUnavailableError

log = logging.getLogger(__name__)
T = TypeVar("T")

POOL_SIZE = 8  # connections per app process ($DATABASE_POOL_SIZE); PostgreSQL allows 100 in all by default
POOL_WAIT = 3.0  # s an operation waits for a free connection
CONNECT_TIMEOUT = 3  # s for one connection attempt (libpq's connect_timeout)
START_WAIT = 10.0  # s the app waits at start for the server (e.g. started beside it by docker compose)
DOWN_BACKOFF = 1.0  # s operations are refused at once after the server failed to answer
# s the pool keeps retrying one lost connection before it gives up (the next operation starts a fresh try).
# psycopg_pool's default is 300 s of retries whose gaps double (1, 2, 4, 8, 16 s...) with no ceiling, so the
# app came back late after a long outage: down 20 s -> first answer 9.1 s after the server was back, down 40 s
# -> 24.0 s (scratch measurement, this VM). With a 4 s window the gaps stay at 1-2 s: 0.x s after any outage.
RECONNECT_WINDOW = 4.0
APPLICATION_NAME = "digit-studio"  # pg_stat_activity shows the app's connections under this name
NOTIFY_CHANNEL = "digit_studio_changes"
LISTENER_NAME = APPLICATION_NAME + ":listen"  # a Watcher's LISTEN connection (the model versions' mirror)
_MIGRATION_LOCK = "digit-studio:migrations"
# psycopg_pool logs a warning (three lines) at every reconnection attempt: 45 in a 40 s outage
# (tests/test_store.py), which buried the app's own two lines ("does not answer", "answers again").
# The first passes, then one each RECONNECT_LOG_EVERY seconds, saying how many were left out.
RECONNECT_LOG_EVERY = 60.0


class QuietReconnectLog(logging.Filter):
    """On the "psycopg.pool" logger: its reconnection warnings, at most one each `every` seconds."""

    MESSAGES = frozenset({"error connecting in %r: %s", "reconnection attempt in pool %r failed after %s sec"})

    def __init__(self, every: float = RECONNECT_LOG_EVERY, clock: Callable[[], float] = time.monotonic):
        super().__init__()
        self.every, self._clock = every, clock
        self._lock = threading.Lock()  # the pool's workers log from their own threads
        self._last: float | None = None
        self.left_out = 0

    def filter(self, record: logging.LogRecord) -> bool:
        if record.msg not in self.MESSAGES:
            return True
        now = self._clock()
        with self._lock:
            if self._last is not None and now - self._last < self.every:
                self.left_out += 1
                return False
            left_out, self.left_out, self._last = self.left_out, 0, now
        if left_out:  # (no % in the text added: the record's own arguments are formatted into msg later)
            record.msg = f"{record.msg} [{left_out} more such warnings left out since the last one]"
        return True


logging.getLogger("psycopg.pool").addFilter(QuietReconnectLog())


class PostgresDatabase(Database):
    dialect = "postgresql"

    def __init__(self, url: str, *, pool_size: int | None = None):
        super().__init__()
        try:
            params = _conninfo.conninfo_to_dict(url)
        except psycopg.ProgrammingError as error:
            raise DatabaseConfigError(f"DATABASE_URL is not a valid PostgreSQL address ({_first_line(error)})") from None
        port = str(params.get("port") or "5432")
        if not all(part.isascii() and part.isdigit() and 0 < int(part) < 65536 for part in port.split(",")):
            raise DatabaseConfigError(f"DATABASE_URL is not a valid PostgreSQL address (port {port[:20]!r} is not a "
                                      "number from 1 to 65535)")
        self._url = url
        self.where = f"{params.get('host') or 'localhost'}:{params.get('port') or 5432}/{params.get('dbname') or ''}"
        self._connect_args = {"application_name": APPLICATION_NAME, "connect_timeout": CONNECT_TIMEOUT}
        self._down_until = 0.0
        self._down_logged = False
        self._migrate_at_start()
        size = pool_size or _pool_size_from_environment()
        self._pool = psycopg_pool.ConnectionPool(
            url, min_size=1, max_size=size, kwargs={**self._connect_args, "autocommit": True},
            check=psycopg_pool.ConnectionPool.check_connection, timeout=POOL_WAIT,
            reconnect_timeout=RECONNECT_WINDOW,
            name="digit-studio", open=False)
        self._pool.open(wait=False)
        log.info("database: PostgreSQL at %s (pool of at most %d connections)", self.where, size)

    # -- Database ----------------------------------------------------------------

    def read(self, work: Callable[[Any], T]) -> T:
        return self._run(work, write=False)

    def write(self, work: Callable[[Any], T]) -> T:
        return self._run(work, write=True)

    def ensure_ready(self) -> None:
        pass  # migrated in __init__

    def exists(self) -> bool:
        return True

    def describe(self) -> dict[str, Any]:
        stats = self._pool.get_stats()
        return {"backend": "postgresql", "pool": {"size": stats.get("pool_size", 0),
                                                  "available": stats.get("pool_available", 0),
                                                  "waiting": stats.get("requests_waiting", 0),
                                                  "max": self._pool.max_size}}

    def close(self) -> None:
        self._pool.close()

    def bump(self, tx: Any, topic: str) -> int:
        counter = super().bump(tx, topic)
        tx.execute("SELECT pg_notify(?, ?)", (NOTIFY_CHANNEL, topic))  # delivered at commit, not before
        return counter

    def try_lock(self, name: str) -> AdvisoryLock | None:
        key = lock_key(name)
        connection = self._connect_alone()
        try:
            granted = connection.execute("SELECT pg_try_advisory_lock(%s)", (key,)).fetchone()[0]
        except psycopg.Error as error:
            connection.close()
            raise self._unavailable(error) from None
        if not granted:
            connection.close()
            return None
        return _SessionLock(name, connection, key)

    def _change_waiter(self) -> ChangeWaiter:
        return _Listener(self)

    # -- running an operation --------------------------------------------------------

    def _run(self, work: Callable[[Any], T], *, write: bool) -> T:
        if time.monotonic() < self._down_until:
            raise StoreUnavailableError(_DOWN)
        try:
            with self._pool.connection() as connection:
                with connection.transaction():
                    if not write:
                        connection.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
                    result = work(_Transaction(connection))
        except (psycopg.OperationalError, psycopg_pool.PoolTimeout, psycopg.errors.ReadOnlySqlTransaction,
                psycopg.InterfaceError) as error:
            raise self._unavailable(error) from None
        if self._down_logged:
            log.warning("database: PostgreSQL at %s answers again", self.where)
            self._down_logged = False
        return result

    def _unavailable(self, error: Exception) -> StoreUnavailableError:
        if isinstance(error, psycopg.errors.DiskFull):
            return StoreDiskFullError("The database server's disk is full, so nothing was saved: try again later")
        if isinstance(error, psycopg.errors.ReadOnlySqlTransaction):
            return StoreUnavailableError("The database server accepts no writes right now (a standby?): try again "
                                         "in a moment")
        sqlstate = getattr(error, "sqlstate", None)
        if isinstance(error, (psycopg_pool.PoolTimeout, psycopg.InterfaceError)) or sqlstate is None \
                or sqlstate.startswith(("08", "57P")):
            # The server is down, restarting or unreachable: refuse at once for a moment.
            self._down_until = time.monotonic() + DOWN_BACKOFF
            if not self._down_logged:
                log.warning("database: PostgreSQL at %s does not answer (%s); answering 503 until it does",
                            self.where, _first_line(error))
                self._down_logged = True
            return StoreUnavailableError(_DOWN)
        return StoreUnavailableError(f"The database could not do this right now ({type(error).__name__}): "
                                     "try again in a moment")

    def _connect_alone(self) -> psycopg.Connection:
        """A connection outside the pool (locks, LISTEN: they are held for long)."""
        try:
            return psycopg.connect(self._url, autocommit=True, **self._connect_args)
        except psycopg.Error as error:
            raise self._unavailable(error) from None

    def _migrate_at_start(self) -> None:
        deadline = time.monotonic() + START_WAIT
        while True:
            try:
                connection = psycopg.connect(self._url, autocommit=True, **self._connect_args)
                break
            except psycopg.OperationalError as error:
                if time.monotonic() >= deadline:
                    raise DatabaseConfigError(f"DATABASE_URL: cannot connect to PostgreSQL at {self.where} within "
                                              f"{START_WAIT:g} s ({_first_line(error)})") from None
                time.sleep(0.5)
        try:
            with connection.transaction():
                # Replicas starting together: the first migrates, the others wait and find nothing to do.
                connection.execute("SELECT pg_advisory_xact_lock(%s)", (lock_key(_MIGRATION_LOCK),))
                applied = schema.migrate(_Transaction(connection).execute, self.dialect)
        except psycopg.Error as error:
            raise DatabaseConfigError(f"DATABASE_URL: the database at {self.where} cannot be prepared "
                                      f"({_first_line(error)})") from None
        finally:
            connection.close()
        if applied:
            log.info("database: PostgreSQL at %s migrated to schema version %d", self.where, applied[-1])


_DOWN = "The database server does not answer right now (restarting?): try again in a moment"


class _Transaction:
    dialect = "postgresql"

    def __init__(self, connection: psycopg.Connection):
        self._connection = connection

    def execute(self, sql: str, params: tuple | list = ()) -> psycopg.Cursor:
        if not params:
            return self._connection.execute(sql)
        return self._connection.execute(_placeholders(sql), params)


@functools.lru_cache(maxsize=256)
def _placeholders(sql: str) -> str:
    """The store's `?` placeholders as psycopg's `%s` (a literal % doubled)."""
    return sql.replace("%", "%%").replace("?", "%s")


class _SessionLock(AdvisoryLock):
    def __init__(self, name: str, connection: psycopg.Connection, key: int):
        super().__init__(name)
        self._connection: psycopg.Connection | None = connection
        self._key = key
        self._guard = threading.Lock()

    def release(self) -> None:
        with self._guard:
            if self._connection is None:
                return
            try:
                self._connection.execute("SELECT pg_advisory_unlock(%s)", (self._key,))
            except psycopg.Error:
                pass  # the session is gone, and the lock with it
            finally:
                self._connection.close()
                self._connection = None

    def held(self) -> bool:
        with self._guard:
            if self._connection is None or self._connection.closed:
                return False
            try:
                return bool(self._connection.execute(
                    "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND pid = pg_backend_pid() "
                    "AND granted AND ((classid::bigint << 32) | objid::bigint) = %s", (self._key,)).fetchone()[0])
            except psycopg.Error:
                return False


class _Listener(ChangeWaiter):
    """LISTEN on a connection of its own; wait() returns early when a change is announced."""

    def __init__(self, database: PostgresDatabase):
        super().__init__()
        self._database = database
        self._connection: psycopg.Connection | None = None

    def wait(self, timeout: float) -> None:
        if self._stop.is_set():
            return
        try:
            if self._connection is None or self._connection.closed:
                # Named apart from the pool's: one long-lived connection per watcher, not a pool's leak.
                self._connection = psycopg.connect(self._database._url, autocommit=True,
                                                   **{**self._database._connect_args,
                                                      "application_name": LISTENER_NAME})
                self._connection.execute(f"LISTEN {NOTIFY_CHANNEL}")
            for _ in self._connection.notifies(timeout=timeout, stop_after=1):
                break
        except psycopg.Error:
            if self._connection is not None:
                self._connection.close()
            self._connection = None
            self._stop.wait(timeout)  # down: poll at the normal pace until it answers again

    def close(self) -> None:
        super().close()
        if self._connection is not None:
            try:
                self._connection.close()
            except psycopg.Error:
                pass


def _pool_size_from_environment() -> int:
    value = os.environ.get("DATABASE_POOL_SIZE", "")
    if value.isascii() and value.isdigit() and 1 <= int(value) <= 100:  # not "²": int() refuses it
        return int(value)
    if value:
        log.warning("DATABASE_POOL_SIZE=%r is not a whole number from 1 to 100: using %d", value[:20], POOL_SIZE)
    return POOL_SIZE


def _first_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return text[0][:300] if text else type(error).__name__
