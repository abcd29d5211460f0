"""The drawings database: every corrected drawing, in the app's database (store/).

    store = DrawingStore.from_environment()        # DATABASE_URL, else the SQLite file in DATA_DIR ($DRAWINGS_DB)
    new_id = store.add(label=7, png=..., model_input=...)

The tables are store/schema.py's `drawings` plus two counters kept in the same transaction
as every insert and delete: `drawing_counts` (drawings per digit) and the `drawings` change
counter. Counting and "has anything changed?" then read a few rows whatever the number of
drawings (GET /drawings/stats is open to everyone: issue 18 item 4), and the row cap is
exact under concurrent writers: bumping the change counter first locks its row (PostgreSQL;
SQLite's write lock does the same), so the cap check and the insert are one step.

The same code runs on SQLite and PostgreSQL; the store's errors (StoreUnavailableError: 503,
StoreDiskFullError: 507) and StoreFullError (the row cap: 507) carry user-facing messages.
"""
from __future__ import annotations

import datetime as _dt
import hashlib
import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from store import Database, shared_database
from store.errors import StoreDiskFullError, StoreError, StoreUnavailableError
from store.location import DB_NAME, LEGACY_DATA_DIR, data_dir, sqlite_path as default_db_path
from training.onnx_contract import to_pixels

log = logging.getLogger(__name__)

__all__ = ["DB_NAME", "LEGACY_DATA_DIR", "DrawingStore", "StoreDiskFullError", "StoreError", "StoreFullError",
           "StoreUnavailableError", "TrainingDrawings", "data_dir", "default_db_path", "is_held_out", "utc_now"]

MAX_ROWS = 10_000  # total drawings kept ($DRAWINGS_MAX_ROWS); ~10 KB each as canvas PNGs: ~100 MB
HOLD_OUT_EVERY = 5  # one drawing in this many (by id, see is_held_out) is never trained on: it measures the models
INPUT_SHAPE = (28, 28)  # the model input, stored as 784 uint8 bytes (MNIST's own precision)
TOPIC = "drawings"  # the change counter bumped by every insert and delete
BATCH = 500  # rows per read when going through all drawings (export, held-out measure): bounded memory
_LIST_COLUMNS = "id, label, predictions, model_versions, created_at, sha256"


class StoreFullError(StoreError):
    """The row cap is reached."""


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

    @classmethod
    def from_rows(cls, rows: list[tuple]) -> "TrainingDrawings":
        """From (id, label, input bytes) rows."""
        ids = np.array([row[0] for row in rows], dtype=np.int64)
        labels = np.array([row[1] for row in rows], dtype=np.int64)
        images = (np.frombuffer(b"".join(bytes(row[2]) for row in rows), dtype=np.uint8).reshape(-1, *INPUT_SHAPE)
                  if rows else np.zeros((0, *INPUT_SHAPE), np.uint8))
        return cls(ids, images, labels)


def is_held_out(drawing_id: int) -> bool:
    """A fixed one in HOLD_OUT_EVERY by id: the same drawings are held out in every run.

    By a hash of the id, not `id % 5`: someone correcting 0, 1, ..., 9 in turn would
    otherwise have only their 4s and 9s held out.
    """
    return int(hashlib.sha256(str(int(drawing_id)).encode()).hexdigest()[:8], 16) % HOLD_OUT_EVERY == 0


def utc_now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="milliseconds")


class DrawingStore:
    """The drawings table; safe to share between threads."""

    def __init__(self, database: Database | str | os.PathLike, *, max_rows: int = MAX_ROWS):
        # A path is a SQLite file (tests, benchmarks); the process shares one Database per file.
        self.database = database if isinstance(database, Database) else shared_database(sqlite_file=database)
        self.max_rows = max_rows

    @property
    def path(self) -> Path | None:
        """The SQLite file, or None on PostgreSQL."""
        return getattr(self.database, "path", None)

    @classmethod
    def from_environment(cls) -> "DrawingStore":
        rows = os.environ.get("DRAWINGS_MAX_ROWS", "")
        whole = rows.isascii() and rows.isdigit()  # not "²": isdigit() is true for it, int() refuses it
        if rows and not whole:
            log.warning("DRAWINGS_MAX_ROWS=%r is not a whole number: using %d", rows[:20], MAX_ROWS)
        return cls(shared_database(), max_rows=int(rows) if whole else MAX_ROWS)

    def exists(self) -> bool:
        """Whether the database has been created (reading creates it; a plain training run should not)."""
        return self.database.exists()

    # -- writing ------------------------------------------------------------

    def add(self, *, label: int, png: bytes, model_input: np.ndarray, predictions: dict[str, Any] | None = None,
            model_versions: dict[str, Any] | None = None, client: str | None = None,
            created_at: str | None = None, rate: tuple[int, float] | None = None) -> int:
        """Insert one drawing; returns its id. Raises StoreFullError at the row cap.

        `rate` = (count, seconds): refuse with ClientRateError when `client` has `count` drawings in the
        database from the last `seconds`. Counted in the insert's transaction, which every writer of
        every replica takes in turn (the counter bump below), so the rate holds across replicas and
        under parallel requests alike."""
        pixels = _input_bytes(model_input)
        if not 0 <= int(label) <= 9:
            raise ValueError(f"label must be a digit 0-9, got {label!r}")
        row = (int(label), bytes(png), pixels, json.dumps(predictions or {}), json.dumps(model_versions or {}),
               created_at or utc_now(), hashlib.sha256(png).hexdigest(), client)

        def insert(tx) -> int:
            self.database.bump(tx, TOPIC)  # first: it serialises the writers until the commit
            total = int(tx.execute("SELECT coalesce(sum(drawings), 0) FROM drawing_counts").fetchone()[0])
            if total >= self.max_rows:
                raise StoreFullError(f"The drawings database is full ({self.max_rows:,} drawings): "
                                     "delete some in the Drawings tab, or raise DRAWINGS_MAX_ROWS")
            if rate is not None and client is not None:
                _check_rate(tx, client, *rate)
            new_id = tx.execute(
                "INSERT INTO drawings (label, png, input, predictions, model_versions, created_at, sha256, client) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?) RETURNING id", row).fetchone()[0]
            tx.execute("UPDATE drawing_counts SET drawings = drawings + 1 WHERE label = ?", (int(label),))
            return int(new_id)

        return self.database.write(insert)

    def delete(self, drawing_id: int) -> bool:
        def remove(tx) -> bool:
            self.database.bump(tx, TOPIC)  # first, as in add: the same lock order, so no deadlock
            row = tx.execute("DELETE FROM drawings WHERE id = ? RETURNING label", (int(drawing_id),)).fetchone()
            if row is None:
                raise _NothingDeleted
            tx.execute("UPDATE drawing_counts SET drawings = drawings - 1 WHERE label = ?", (int(row[0]),))
            return True

        try:
            return self.database.write(remove)
        except _NothingDeleted:  # rolled back: the counter did not move for nothing
            return False

    # -- reading ------------------------------------------------------------

    def list(self, *, limit: int = 100, offset: int = 0, label: int | None = None) -> tuple[list[dict[str, Any]], int]:
        """(drawings newest first, without their pixels; the total matching `label`)."""
        where, params = ("WHERE label = ?", (int(label),)) if label is not None else ("", ())

        def query(tx):
            total = tx.execute(f"SELECT coalesce(sum(drawings), 0) FROM drawing_counts {where}", params).fetchone()[0]
            rows = tx.execute(f"SELECT {_LIST_COLUMNS} FROM drawings {where} ORDER BY id DESC LIMIT ? OFFSET ?",
                              (*params, int(limit), int(offset))).fetchall()
            return [_row_dict(row) for row in rows], int(total)

        return self.database.read(query)

    def get(self, drawing_id: int) -> dict[str, Any] | None:
        row = self.database.read(lambda tx: tx.execute(f"SELECT {_LIST_COLUMNS} FROM drawings WHERE id = ?",
                                                       (int(drawing_id),)).fetchone())
        return _row_dict(row) if row else None

    def png(self, drawing_id: int) -> bytes | None:
        row = self.database.read(lambda tx: tx.execute("SELECT png FROM drawings WHERE id = ?",
                                                       (int(drawing_id),)).fetchone())
        return bytes(row[0]) if row else None

    def count(self) -> int:
        return sum(self.counts().values())

    def counts(self) -> dict[int, int]:
        """Drawings per digit, every digit present (0 when none): ten rows, not a count of the table."""
        rows = self.database.read(lambda tx: tx.execute("SELECT label, drawings FROM drawing_counts").fetchall())
        counts = dict.fromkeys(range(10), 0)
        counts.update({int(label): int(number) for label, number in rows})
        return counts

    def changes(self) -> tuple[int, int]:
        """A key that differs after any insert or delete (and when the database itself was replaced): for caches."""
        counter = self.database.read(lambda tx: tx.execute("SELECT counter FROM change_counters WHERE topic = ?",
                                                           (TOPIC,)).fetchone())
        return self.database.generation, int(counter[0]) if counter else 0

    def contains_png(self, sha256: str) -> bool:
        return self.database.read(lambda tx: tx.execute("SELECT 1 FROM drawings WHERE sha256 = ? LIMIT 1",
                                                        (sha256,)).fetchone()) is not None

    def training_drawings(self) -> TrainingDrawings:
        """Every drawing's model input and label, in id order (one read transaction: a consistent snapshot)."""
        return TrainingDrawings.from_rows(self.database.read(
            lambda tx: tx.execute("SELECT id, label, input FROM drawings ORDER BY id").fetchall()))

    def labels(self) -> list[tuple[int, int]]:
        """(id, label) of every drawing, in id order (two numbers a row: no pixels)."""
        rows = self.database.read(lambda tx: tx.execute("SELECT id, label FROM drawings ORDER BY id").fetchall())
        return [(int(drawing_id), int(label)) for drawing_id, label in rows]

    def inputs(self, ids: list[int]) -> TrainingDrawings:
        """The model inputs of these drawings (those still stored), read BATCH at a time, in id order."""
        rows, wanted = [], sorted({int(i) for i in ids})
        for start in range(0, len(wanted), BATCH):
            part = wanted[start:start + BATCH]
            rows += self.database.read(lambda tx: tx.execute(
                f"SELECT id, label, input FROM drawings WHERE id IN ({', '.join('?' * len(part))}) ORDER BY id",
                part).fetchall())
        return TrainingDrawings.from_rows(rows)

    def iter_with_png(self, batch: int = 200) -> Iterator[tuple[dict[str, Any], bytes]]:
        """Every drawing with its PNG, oldest first, read in batches (for the export)."""
        last = 0
        while True:
            rows = self.database.read(lambda tx: tx.execute(
                f"SELECT {_LIST_COLUMNS}, png FROM drawings WHERE id > ? ORDER BY id LIMIT ?", (last, batch)).fetchall())
            if not rows:
                return
            for row in rows:
                yield _row_dict(row[:-1]), bytes(row[-1])
            last = rows[-1][0]


class _NothingDeleted(Exception):
    pass


class ClientRateError(Exception):
    """This client has saved its allowance of drawings in the window (DrawingStore.add's `rate`)."""

    def __init__(self, retry_after: float):
        super().__init__(f"rate reached: retry in {retry_after:.0f} s")
        self.retry_after = retry_after


def _check_rate(tx, client: str, count: int, seconds: float) -> None:
    now = _dt.datetime.now(_dt.timezone.utc)
    # The client's count-th newest drawing: within the window, the rate is reached until it leaves it.
    # (An index range of at most `count` entries: drawings_by_client.)
    row = tx.execute("SELECT created_at FROM drawings WHERE client = ? ORDER BY created_at DESC LIMIT 1 OFFSET ?",
                     (client, int(count) - 1)).fetchone()
    if row is not None:
        age = (now - _dt.datetime.fromisoformat(row[0])).total_seconds()
        if age < seconds:
            raise ClientRateError(max(0.1, seconds - age))


def _input_bytes(model_input: np.ndarray) -> bytes:
    """The [28, 28(, 1)] model input as 784 uint8 bytes (floats in [0, 1] are scaled by 255)."""
    return to_pixels(model_input).tobytes()


def _json_or_empty(text: str | None) -> dict[str, Any]:
    try:
        value = json.loads(text or "{}")
    except ValueError:  # a stored row is listed and exported whatever it holds (issue 18 item 11)
        return {}
    return value if isinstance(value, dict) else {}


def _row_dict(row: tuple) -> dict[str, Any]:
    drawing_id, label, predictions, versions, created_at, sha256 = row
    return {"id": int(drawing_id), "label": int(label), "created_at": created_at,
            "held_out": is_held_out(int(drawing_id)), "predictions": _json_or_empty(predictions),
            "model_versions": _json_or_empty(versions), "sha256": sha256}
