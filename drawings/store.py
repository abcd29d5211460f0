"""The drawings database: every corrected drawing, kept in one SQLite file.

    store = DrawingStore.from_environment()        # $DRAWINGS_DB, else $DATA_DIR/drawings.sqlite3
    new_id = store.add(label=7, png=..., model_input=...)

Why SQLite (standard library `sqlite3`): one file, transactions, and WAL mode lets
the training job read while visitors write. Every operation opens its own short
connection (~0.1 ms), so threads never share one, and a file replaced or removed
under the app is simply opened again.

Concurrency: writes take the write lock at once (BEGIN IMMEDIATE), so the row cap
check and the insert are one step; other writers wait up to BUSY_TIMEOUT seconds.
WAL readers (listing, exporting, a trainer loading the drawings) never block writers.

Damage: a file that is not an SQLite database, fails its quick check, or lost its
table is moved aside (`<name>.corrupt-<UTC time>`) and an empty database is created
in its place, with one warning in the log; the app keeps running.

Schema changes are numbered migrations (MIGRATIONS), applied in order from the
file's `PRAGMA user_version`, each in its own transaction.
"""
from __future__ import annotations

import datetime as _dt
import hashlib
import json
import logging
import os
import sqlite3
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, TypeVar

import numpy as np

from training.artifacts import PROJECT_ROOT
from training.onnx_contract import to_pixels

log = logging.getLogger(__name__)
T = TypeVar("T")

LEGACY_DATA_DIR = PROJECT_ROOT / "data"  # the default before DATA_DIR left the source tree (git-ignored)
DB_NAME = "drawings.sqlite3"
MAX_ROWS = 10_000  # total drawings kept ($DRAWINGS_MAX_ROWS); ~10 KB each as canvas PNGs: ~100 MB
BUSY_TIMEOUT = 10.0  # s a writer waits for another's transaction (each takes well under a millisecond)
HOLD_OUT_EVERY = 5  # one drawing in this many (by id, see is_held_out) is never trained on: it measures the models
INPUT_SHAPE = (28, 28)  # the model input, stored as 784 uint8 bytes (MNIST's own precision)

# Migration n brings a database from user_version n-1 to n.
MIGRATIONS: tuple[str, ...] = (
    """
    CREATE TABLE drawings (
        id INTEGER PRIMARY KEY AUTOINCREMENT,            -- never reused: the held-out rule is by id
        label INTEGER NOT NULL CHECK (label BETWEEN 0 AND 9),
        png BLOB NOT NULL,                               -- the drawing as sent
        input BLOB NOT NULL CHECK (length(input) = 784), -- 28x28 model input, uint8, white on black
        predictions TEXT NOT NULL DEFAULT '{}',          -- JSON: model -> {"digit", "probabilities"}
        model_versions TEXT NOT NULL DEFAULT '{}',       -- JSON: model -> version serving when it was saved
        created_at TEXT NOT NULL                         -- ISO 8601, UTC
    );
    CREATE INDEX drawings_by_label ON drawings (label);
    """,
    """
    ALTER TABLE drawings ADD COLUMN sha256 TEXT;        -- of the PNG: an import skips drawings already here
    ALTER TABLE drawings ADD COLUMN client TEXT;        -- hashed client id (rate limits, never the address)
    CREATE INDEX drawings_by_sha256 ON drawings (sha256);
    """,
)
SCHEMA_VERSION = len(MIGRATIONS)
_LIST_COLUMNS = "id, label, predictions, model_versions, created_at, sha256"
_DAMAGE_WORDS = ("malformed", "not a database", "no such table", "file is encrypted", "disk image")


class StoreError(RuntimeError):
    """Base class; the message is user-facing."""


class StoreFullError(StoreError):
    """The row cap is reached."""


class StoreUnavailableError(StoreError):
    """The database cannot be opened or created (e.g. its folder is not writable)."""


@dataclass(frozen=True)
class TrainingDrawings:
    """Drawings as model data: uint8 [N, 28, 28] white on black, int64 labels, their ids."""

    ids: np.ndarray
    images: np.ndarray
    labels: np.ndarray

    def __len__(self) -> int:
        return len(self.ids)

    def select(self, mask: np.ndarray) -> "TrainingDrawings":
        return TrainingDrawings(self.ids[mask], self.images[mask], self.labels[mask])

    def split(self) -> tuple["TrainingDrawings", "TrainingDrawings"]:
        """(trained on, held out): a drawing is held out when is_held_out(its id)."""
        held = np.array([is_held_out(drawing_id) for drawing_id in self.ids], dtype=bool)
        return self.select(~held), self.select(held)


def is_held_out(drawing_id: int) -> bool:
    """A fixed one in HOLD_OUT_EVERY by id: the same drawings are held out in every run.

    By a hash of the id, not `id % 5`: someone correcting 0, 1, ..., 9 in turn would
    otherwise have only their 4s and 9s held out.
    """
    return int(hashlib.sha256(str(int(drawing_id)).encode()).hexdigest()[:8], 16) % HOLD_OUT_EVERY == 0


def default_db_path() -> Path:
    """$DRAWINGS_DB, else <data dir>/drawings.sqlite3 (datadir.py: $DATA_DIR or the per-user folder).

    A database that an earlier version kept in ./data (its default) is still used, with a log line
    saying how to move it, until the data location has one: stored drawings are never left behind."""
    import datadir

    value = os.environ.get("DRAWINGS_DB")
    if value:
        return Path(value)
    path = datadir.data_dir() / DB_NAME
    legacy = LEGACY_DATA_DIR / DB_NAME
    if not os.environ.get("DATA_DIR") and not path.exists() and legacy.is_file():
        log.warning("using the drawings database in %s (the old default); move it to %s, or set DATA_DIR", legacy, path)
        return legacy
    return path


def utc_now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="milliseconds")


class DrawingStore:
    """The drawings table; safe to share between threads (each call has its own connection)."""

    def __init__(self, path: str | os.PathLike, *, max_rows: int = MAX_ROWS):
        self.path = Path(path)
        self.max_rows = max_rows
        self._init_lock = threading.Lock()
        self._ready = False

    @classmethod
    def from_environment(cls) -> "DrawingStore":
        rows = os.environ.get("DRAWINGS_MAX_ROWS", "")
        if rows and not rows.isdigit():
            log.warning("DRAWINGS_MAX_ROWS=%r is not a whole number: using %d", rows[:20], MAX_ROWS)
        return cls(default_db_path(), max_rows=int(rows) if rows.isdigit() else MAX_ROWS)

    # -- writing ------------------------------------------------------------

    def add(self, *, label: int, png: bytes, model_input: np.ndarray, predictions: dict[str, Any] | None = None,
            model_versions: dict[str, Any] | None = None, client: str | None = None,
            created_at: str | None = None) -> int:
        """Insert one drawing; returns its id. Raises StoreFullError at the row cap."""
        pixels = _input_bytes(model_input)
        if not 0 <= int(label) <= 9:
            raise ValueError(f"label must be a digit 0-9, got {label!r}")
        row = (int(label), bytes(png), pixels, json.dumps(predictions or {}), json.dumps(model_versions or {}),
               created_at or utc_now(), hashlib.sha256(png).hexdigest(), client)

        def insert(connection: sqlite3.Connection) -> int:
            count = connection.execute("SELECT count(*) FROM drawings").fetchone()[0]
            if count >= self.max_rows:
                raise StoreFullError(f"The drawings database is full ({self.max_rows:,} drawings): "
                                     "delete some in the Drawings tab, or raise DRAWINGS_MAX_ROWS")
            return int(connection.execute(
                "INSERT INTO drawings (label, png, input, predictions, model_versions, created_at, sha256, client) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?)", row).lastrowid)

        return self._write(insert)

    def delete(self, drawing_id: int) -> bool:
        return self._write(lambda c: c.execute("DELETE FROM drawings WHERE id = ?", (int(drawing_id),)).rowcount > 0)

    # -- reading ------------------------------------------------------------

    def list(self, *, limit: int = 100, offset: int = 0, label: int | None = None) -> tuple[list[dict[str, Any]], int]:
        """(drawings newest first, without their pixels; the total matching `label`)."""
        where, params = ("WHERE label = ?", (int(label),)) if label is not None else ("", ())

        def query(connection: sqlite3.Connection):
            total = connection.execute(f"SELECT count(*) FROM drawings {where}", params).fetchone()[0]
            rows = connection.execute(f"SELECT {_LIST_COLUMNS} FROM drawings {where} ORDER BY id DESC LIMIT ? OFFSET ?",
                                      (*params, int(limit), int(offset))).fetchall()
            return [_row_dict(row) for row in rows], int(total)

        return self._read(query)

    def get(self, drawing_id: int) -> dict[str, Any] | None:
        row = self._read(lambda c: c.execute(f"SELECT {_LIST_COLUMNS} FROM drawings WHERE id = ?",
                                             (int(drawing_id),)).fetchone())
        return _row_dict(row) if row else None

    def png(self, drawing_id: int) -> bytes | None:
        row = self._read(lambda c: c.execute("SELECT png FROM drawings WHERE id = ?", (int(drawing_id),)).fetchone())
        return bytes(row[0]) if row else None

    def count(self) -> int:
        return int(self._read(lambda c: c.execute("SELECT count(*) FROM drawings").fetchone()[0]))

    def counts(self) -> dict[int, int]:
        """Drawings per digit, every digit present (0 when none)."""
        rows = self._read(lambda c: c.execute("SELECT label, count(*) FROM drawings GROUP BY label").fetchall())
        counts = dict.fromkeys(range(10), 0)
        counts.update({int(label): int(number) for label, number in rows})
        return counts

    def state(self) -> tuple[int, int, int]:
        """(rows, highest id, sum of ids): differs after any insert (ids only grow) or delete; for caches."""
        row = self._read(lambda c: c.execute(
            "SELECT count(*), coalesce(max(id), 0), coalesce(sum(id), 0) FROM drawings").fetchone())
        return int(row[0]), int(row[1]), int(row[2])

    def contains_png(self, sha256: str) -> bool:
        return self._read(lambda c: c.execute("SELECT 1 FROM drawings WHERE sha256 = ? LIMIT 1",
                                              (sha256,)).fetchone()) is not None

    def training_drawings(self) -> TrainingDrawings:
        """Every drawing's model input and label, in id order (one read transaction: a consistent snapshot)."""
        rows = self._read(lambda c: c.execute("SELECT id, label, input FROM drawings ORDER BY id").fetchall())
        ids = np.array([row[0] for row in rows], dtype=np.int64)
        labels = np.array([row[1] for row in rows], dtype=np.int64)
        images = (np.frombuffer(b"".join(row[2] for row in rows), dtype=np.uint8).reshape(-1, *INPUT_SHAPE)
                  if rows else np.zeros((0, *INPUT_SHAPE), np.uint8))
        return TrainingDrawings(ids, images, labels)

    def iter_with_png(self, batch: int = 200) -> Iterator[tuple[dict[str, Any], bytes]]:
        """Every drawing with its PNG, oldest first, read in batches (for the export)."""
        last = 0
        while True:
            rows = self._read(lambda c: c.execute(
                f"SELECT {_LIST_COLUMNS}, png FROM drawings WHERE id > ? ORDER BY id LIMIT ?", (last, batch)).fetchall())
            if not rows:
                return
            for row in rows:
                yield _row_dict(row[:-1]), bytes(row[-1])
            last = rows[-1][0]

    # -- connections, schema, recovery ---------------------------------------

    def _write(self, work: Callable[[sqlite3.Connection], T]) -> T:
        """`work(connection)` in a write transaction (the write lock taken at once), committed at the end."""
        def transaction(connection: sqlite3.Connection) -> T:
            connection.execute("BEGIN IMMEDIATE")
            try:
                result = work(connection)
            except BaseException:
                connection.rollback()
                raise
            connection.commit()
            return result
        return self._run(transaction)

    def _read(self, work: Callable[[sqlite3.Connection], T]) -> T:
        """`work(connection)` in one read transaction: every statement sees the same snapshot."""
        def transaction(connection: sqlite3.Connection) -> T:
            connection.execute("BEGIN")
            try:
                return work(connection)
            finally:
                connection.rollback()
        return self._run(transaction)

    def _run(self, transaction: Callable[[sqlite3.Connection], T]) -> T:
        """Run on a healthy database; a damaged or vanished file is moved aside and recreated, then retried once."""
        for attempt in (1, 2):
            self._ensure_ready()
            try:
                connection = self._open()
                try:
                    return transaction(connection)
                finally:
                    connection.close()
            except sqlite3.DatabaseError as error:
                if attempt == 2 or not _is_damage(error) or not self._damage_confirmed():
                    raise
                self._recover(str(error))
        raise AssertionError("unreachable")

    def _open(self) -> sqlite3.Connection:
        # isolation_level=None: transactions are begun explicitly above.
        connection = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT, isolation_level=None, check_same_thread=False)
        # NORMAL is safe in WAL mode (no corruption on a crash; a power cut may lose the last commits).
        connection.execute("PRAGMA synchronous = NORMAL")
        return connection

    def _ensure_ready(self) -> None:
        if self._ready and self.path.exists():
            return
        with self._init_lock:
            if self._ready and self.path.exists():
                return
            if self._ready:
                log.warning("drawings database %s disappeared; creating an empty one", self.path)
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                try:
                    self._migrate()
                except sqlite3.DatabaseError as error:
                    self._move_aside(str(error))
                    self._migrate()
            except (OSError, sqlite3.Error) as error:
                raise StoreUnavailableError(f"The drawings database {self.path.name} cannot be opened or created "
                                            f"({error}); check DRAWINGS_DB / DATA_DIR") from error
            self._ready = True

    def _migrate(self) -> None:
        existed = self.path.exists() and self.path.stat().st_size > 0
        connection = self._open()
        try:
            if existed:
                problem = connection.execute("PRAGMA quick_check").fetchone()[0]
                if problem != "ok":
                    raise sqlite3.DatabaseError(f"quick_check: {problem}")
            connection.execute("PRAGMA journal_mode = WAL")  # persistent: stored in the file
            version = connection.execute("PRAGMA user_version").fetchone()[0]
            if version > SCHEMA_VERSION:
                raise sqlite3.DatabaseError(f"schema version {version} is newer than this app's {SCHEMA_VERSION}")
            if version > 0:
                connection.execute("SELECT count(*) FROM drawings").fetchone()  # the table must be there
            for number in range(version + 1, SCHEMA_VERSION + 1):
                connection.execute("BEGIN IMMEDIATE")
                try:
                    for statement in _statements(MIGRATIONS[number - 1]):
                        connection.execute(statement)
                    connection.execute(f"PRAGMA user_version = {number}")
                except BaseException:
                    connection.rollback()
                    raise
                connection.commit()
                if existed:
                    log.info("drawings database %s migrated to schema version %d", self.path, number)
            if not existed:
                log.info("created drawings database %s (schema version %d)", self.path, SCHEMA_VERSION)
        finally:
            connection.close()

    def _damage_confirmed(self) -> bool:
        """A damage error seen by an operation: is the file really unusable (not just a passing error)?"""
        try:
            connection = self._open()
            try:
                ok = connection.execute("PRAGMA quick_check").fetchone()[0] == "ok"
                connection.execute("SELECT count(*) FROM drawings").fetchone()
                return not ok
            finally:
                connection.close()
        except sqlite3.DatabaseError:
            return True

    def _recover(self, reason: str) -> None:
        with self._init_lock:
            self._move_aside(reason)
            self._ready = False

    def _move_aside(self, reason: str) -> None:
        stamp = _dt.datetime.now(_dt.timezone.utc).strftime("%Y%m%dT%H%M%S%fZ")
        aside = self.path.with_name(f"{self.path.name}.corrupt-{stamp}")
        if self.path.exists():
            os.replace(self.path, aside)
        for suffix in ("-wal", "-shm"):  # a stale log must not be applied to the new file
            side = self.path.with_name(self.path.name + suffix)
            if side.exists():
                os.replace(side, aside.with_name(aside.name + suffix))
        log.warning("drawings database %s was unreadable (%s): moved it to %s and started an empty one",
                    self.path, reason[:200], aside.name)


def _statements(script: str) -> list[str]:
    """The SQL statements of a migration (comments dropped), run one by one inside its transaction."""
    lines = [line.split("--", 1)[0] for line in script.splitlines()]
    return [statement.strip() for statement in "\n".join(lines).split(";") if statement.strip()]


def _is_damage(error: sqlite3.DatabaseError) -> bool:
    text = str(error).lower()
    return any(word in text for word in _DAMAGE_WORDS)


def _input_bytes(model_input: np.ndarray) -> bytes:
    """The [28, 28(, 1)] model input as 784 uint8 bytes (floats in [0, 1] are scaled by 255)."""
    return to_pixels(model_input).tobytes()


def _row_dict(row: tuple) -> dict[str, Any]:
    drawing_id, label, predictions, versions, created_at, sha256 = row
    return {"id": int(drawing_id), "label": int(label), "created_at": created_at,
            "held_out": is_held_out(int(drawing_id)), "predictions": json.loads(predictions or "{}"),
            "model_versions": json.loads(versions or "{}"), "sha256": sha256}
