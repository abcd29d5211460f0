"""The replica directory: which `python app.py` processes serve this deployment, and where a peer reaches each.

    directory = ReplicaDirectory.from_environment()   # None unless $REPLICA_URL is set: one replica
    directory.start()                                 # register, then heartbeat every BEAT_EVERY s
    directory.peer_url("3f2a9c0d4b1e8f76")            # -> "http://10.0.0.6:7860", or None

Why it exists: Gradio keeps each session's queue events, State and uploads in the process that
took them (api/affinity.py says why and what crosses replicas). A replica with REPLICA_URL set gets
a random id at start, registers it with that URL in the `replicas` table of the shared database and
heartbeats every BEAT_EVERY seconds; a replica not seen for DEAD_AFTER seconds is dead. Each replica
keeps the live set in memory, so looking a peer up costs a dict read, never a query.

The ids are random per process start, not derived from the URL: a replica restarted at the same
address has lost its sessions, so a cookie naming its previous life must not reach it as if it were
the same. Registering removes the rows of earlier lives at the same URL (that address is ours now).

The table lives in the database DATABASE_URL names: PostgreSQL (`postgresql://...`) for replicas on
many machines; unset, a SQLite file in DATA_DIR, which processes on one machine share. Times are the
database's clock (`now()`), so replicas on machines whose clocks disagree still agree on who is live.
Only the two small table classes below touch SQL: when the store layer (issue 20) provides the shared
connection, they move onto it.
"""
from __future__ import annotations

import asyncio
import logging
import os
import re
import secrets
import sqlite3
import threading
import time
import urllib.parse
from pathlib import Path
from typing import Protocol

log = logging.getLogger(__name__)

BEAT_EVERY = 2.0  # s between heartbeats
DEAD_AFTER = 10.0  # s without a heartbeat: the replica is dead (five missed beats: a busy process still makes it)
FORGET_AFTER = 3600.0  # s: rows of replicas dead this long are deleted (housekeeping)
# A cookie naming an id this replica does not know may be a peer that started since the last beat:
# the live set is read again at once, but at most this often (a forged id cannot make queries).
REFRESH_AT_MOST_EVERY = 0.5  # s
SQLITE_NAME = "replicas.sqlite3"  # in DATA_DIR, when DATABASE_URL is unset
SQLITE_BUSY_TIMEOUT = 5.0  # s
POSTGRES_CONNECT_TIMEOUT = 5  # s
ID_PATTERN = re.compile(r"[0-9a-f]{16}")  # what new_replica_id() makes; anything else is not an id


def new_replica_id() -> str:
    return secrets.token_hex(8)


class ReplicaTable(Protocol):
    """Where replicas record themselves: one row per replica (id, url, started, last seen)."""

    def beat(self, replica_id: str, url: str, *, first: bool) -> None:
        """Record `replica_id` at `url` as seen now; `first`: also remove earlier lives at `url` and long-dead rows."""

    def live(self, dead_after: float) -> dict[str, str]:
        """id -> url of every replica seen within the last `dead_after` seconds (itself included)."""

    def remove(self, replica_id: str) -> None:
        """Delete the replica's row (it is shutting down)."""


class SqliteReplicaTable:
    """The table in a SQLite file: processes on one machine sharing DATA_DIR (or one file system)."""

    NOW = "((julianday('now') - 2440587.5) * 86400.0)"  # Unix seconds, fractional, from SQLite's clock

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self._connect() as connection:
            connection.execute("PRAGMA journal_mode=WAL")  # readers never wait for a beat
            connection.execute("CREATE TABLE IF NOT EXISTS replicas (id TEXT PRIMARY KEY, url TEXT NOT NULL, "
                               "started_at REAL NOT NULL, last_seen REAL NOT NULL)")

    def _connect(self) -> sqlite3.Connection:
        # A connection per operation (~0.1 ms): the beat thread and a refresh never share one.
        return sqlite3.connect(self.path, timeout=SQLITE_BUSY_TIMEOUT, isolation_level=None)

    def beat(self, replica_id: str, url: str, *, first: bool) -> None:
        connection = self._connect()
        try:
            connection.execute("BEGIN IMMEDIATE")
            if first:
                connection.execute("DELETE FROM replicas WHERE (url = ? AND id <> ?) OR last_seen < "
                                   f"{self.NOW} - ?", (url, replica_id, FORGET_AFTER))
            connection.execute(f"INSERT INTO replicas (id, url, started_at, last_seen) VALUES (?, ?, {self.NOW}, "
                               f"{self.NOW}) ON CONFLICT (id) DO UPDATE SET url = excluded.url, "
                               "last_seen = excluded.last_seen", (replica_id, url))
            connection.execute("COMMIT")
        finally:
            connection.close()

    def live(self, dead_after: float) -> dict[str, str]:
        connection = self._connect()
        try:
            rows = connection.execute(f"SELECT id, url FROM replicas WHERE last_seen > {self.NOW} - ?",
                                      (dead_after,)).fetchall()
        finally:
            connection.close()
        return dict(rows)

    def remove(self, replica_id: str) -> None:
        connection = self._connect()
        try:
            connection.execute("DELETE FROM replicas WHERE id = ?", (replica_id,))
        finally:
            connection.close()


class PostgresReplicaTable:
    """The table in PostgreSQL: replicas on many machines. One autocommit connection, opened again
    after a failure; the beat thread and a refresh take turns on it (a query takes about a millisecond)."""

    def __init__(self, url: str):
        self.url = url
        self._connection = None
        self._lock = threading.Lock()
        with self._lock:
            connection = self._connect()
            with connection.transaction():
                # Replicas starting together would race on CREATE TABLE IF NOT EXISTS (a unique
                # violation in pg_type): one at a time, under a transaction-scoped advisory lock.
                connection.execute("SELECT pg_advisory_xact_lock(hashtext('digit_studio.replicas'))")
                connection.execute("CREATE TABLE IF NOT EXISTS replicas (id text PRIMARY KEY, url text NOT NULL, "
                                   "started_at timestamptz NOT NULL DEFAULT now(), "
                                   "last_seen timestamptz NOT NULL DEFAULT now())")

    def _connect(self):
        import psycopg

        if self._connection is None or self._connection.closed:
            self._connection = psycopg.connect(self.url, autocommit=True, connect_timeout=POSTGRES_CONNECT_TIMEOUT)
        return self._connection

    def _run(self, work):
        import psycopg

        with self._lock:
            try:
                return work(self._connect())
            except psycopg.OperationalError:
                if self._connection is not None:  # a broken connection is opened again on the next call
                    self._connection.close()
                    self._connection = None
                raise

    def beat(self, replica_id: str, url: str, *, first: bool) -> None:
        def work(connection):
            with connection.transaction():
                if first:
                    connection.execute("DELETE FROM replicas WHERE (url = %s AND id <> %s) OR "
                                       "last_seen < now() - make_interval(secs => %s)", (url, replica_id, FORGET_AFTER))
                connection.execute("INSERT INTO replicas (id, url) VALUES (%s, %s) ON CONFLICT (id) DO UPDATE "
                                   "SET url = excluded.url, last_seen = now()", (replica_id, url))

        self._run(work)

    def live(self, dead_after: float) -> dict[str, str]:
        return dict(self._run(lambda connection: connection.execute(
            "SELECT id, url FROM replicas WHERE last_seen > now() - make_interval(secs => %s)",
            (dead_after,)).fetchall()))

    def remove(self, replica_id: str) -> None:
        self._run(lambda connection: connection.execute("DELETE FROM replicas WHERE id = %s", (replica_id,)))

    def close(self) -> None:
        with self._lock:
            if self._connection is not None:
                self._connection.close()
                self._connection = None


class ReplicaDirectory:
    """This replica's id and URL, its heartbeat, and the live peers as of the last beat."""

    def __init__(self, table: ReplicaTable, url: str, *, replica_id: str | None = None,
                 beat_every: float = BEAT_EVERY, dead_after: float = DEAD_AFTER):
        self.table = table
        self.url = url
        self.id = replica_id or new_replica_id()
        self.beat_every = beat_every
        self.dead_after = dead_after
        self._peers: dict[str, str] = {}  # replaced whole, never changed in place: the event loop reads it
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._failing = False
        self._refreshed_at = 0.0
        self._refresh_lock: asyncio.Lock | None = None

    @classmethod
    def from_environment(cls) -> "ReplicaDirectory | None":
        """The directory for $REPLICA_URL on the database $DATABASE_URL names; None when REPLICA_URL is
        unset (one replica: nothing to route). A bad setting stops the start with one line that says so."""
        value = os.environ.get("REPLICA_URL", "").strip()
        if not value:
            return None
        url = replica_url(value)
        try:
            table = table_from_environment()
        except SystemExit:
            raise
        except Exception as error:  # psycopg.OperationalError, sqlite3.Error, OSError: say which and why
            first_line = (str(error).strip().splitlines() or [""])[0]
            raise SystemExit(f"REPLICA_URL is set but the replica directory's database cannot be used: "
                             f"{type(error).__name__}: {first_line}") from None
        return cls(table, url)

    # -- lifecycle (the app's lifespan: api/affinity.install) ---------------------------------

    def start(self) -> None:
        """Register (before the server accepts connections), then heartbeat in a daemon thread."""
        self._beat(first=True)
        self._thread = threading.Thread(target=self._run, name="replica-heartbeat", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=self.beat_every + 5)
        try:
            self.table.remove(self.id)  # peers stop sending us their visitors at once, not in DEAD_AFTER s
        except Exception:  # the database is down: the row simply ages out
            log.warning("could not remove replica %s from the directory", self.id, exc_info=True)
        close = getattr(self.table, "close", None)
        if close is not None:
            close()

    def _run(self) -> None:
        while not self._stop.wait(self.beat_every):
            self._beat(first=False)

    def _beat(self, *, first: bool) -> None:
        try:
            self.table.beat(self.id, self.url, first=first)
            self._peers = self._without_self(self.table.live(self.dead_after))
        except Exception as error:
            # The database is down: keep the last live set (a forward to a peer that died meanwhile
            # fails to connect and is served here instead), say so once, and keep beating.
            if not self._failing:
                log.warning("replica directory: cannot reach the database (%s: %s); routing with the last "
                            "known replicas until it is back", type(error).__name__,
                            (str(error).strip().splitlines() or [""])[0])
            self._failing = True
            if first:
                raise
            return
        if self._failing:
            log.warning("replica directory: the database answers again")
        self._failing = False
        self._refreshed_at = time.monotonic()

    def _without_self(self, live: dict[str, str]) -> dict[str, str]:
        return {replica_id: url for replica_id, url in live.items() if replica_id != self.id}

    # -- lookups (the event loop) ---------------------------------------------------------------

    def peer_url(self, replica_id: str) -> str | None:
        """Where to reach the live peer `replica_id`; None for this replica, a dead or an unknown one."""
        return self._peers.get(replica_id)

    @property
    def peers(self) -> dict[str, str]:
        return dict(self._peers)

    async def refresh(self) -> None:
        """Read the live set now (a peer may have started since the last beat); at most every
        REFRESH_AT_MOST_EVERY seconds however many requests ask, and one query at a time."""
        if self._refresh_lock is None:
            self._refresh_lock = asyncio.Lock()
        async with self._refresh_lock:
            if time.monotonic() - self._refreshed_at < REFRESH_AT_MOST_EVERY:
                return
            self._refreshed_at = time.monotonic()
            try:
                live = await asyncio.to_thread(self.table.live, self.dead_after)
            except Exception:  # the beat thread reports the database being down
                return
            self._peers = self._without_self(live)


def replica_url(value: str) -> str:
    """REPLICA_URL checked: where peers reach this process, http(s)://host:port with no path or query."""
    parsed = urllib.parse.urlsplit(value)
    if parsed.scheme not in ("http", "https") or not parsed.hostname or parsed.path.strip("/") or parsed.query \
            or parsed.fragment or parsed.username or parsed.password:
        raise SystemExit(f"REPLICA_URL={value!r} is not the address where the other replicas reach this one: "
                         "give http://HOST:PORT (for example http://10.0.0.5:7860), with no path")
    try:
        parsed.port
    except ValueError:
        raise SystemExit(f"REPLICA_URL={value!r} has a port that is not a number: give http://HOST:PORT") from None
    return f"{parsed.scheme}://{parsed.netloc}"


def table_from_environment() -> ReplicaTable:
    """PostgreSQL when DATABASE_URL names one; unset, a SQLite file in DATA_DIR (one machine)."""
    database_url = os.environ.get("DATABASE_URL", "").strip()
    if database_url.startswith(("postgresql://", "postgres://")):
        return PostgresReplicaTable(database_url)
    if database_url.startswith("sqlite:///"):
        return SqliteReplicaTable(Path(database_url[len("sqlite:///"):]).expanduser())
    if database_url:
        raise SystemExit(f"DATABASE_URL={database_url.split('@')[-1]!r} is neither postgresql://... nor "
                         "sqlite:///PATH; leave it unset for a SQLite file in DATA_DIR")
    from drawings.store import data_dir

    return SqliteReplicaTable(data_dir() / SQLITE_NAME)
