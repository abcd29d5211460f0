"""The rows a damaged SQLite database still gives, copied into the new one that replaces it.

    copied = copy_readable_rows(set_aside_file, new_database_connection)

store/sqlite.py sets a damaged file of ours aside (`<name>.corrupt-<UTC time>`, with its -wal) and
builds an empty database in its place; before that database is linked into place, this copies
into it every row that can still be read, table by table, so the drawings (and the rest) stay
with the app instead of only in the file set aside. SQLite has a recovery API for this
(sqlite3_recover, the CLI's `.recover`), but Python's sqlite3 module does not expose it and the
CLI is not a dependency; the rows are read here with ordinary queries, by rowid, stepping over
what cannot be read:

- The set-aside files are read through a copy (with its -wal, so the writes acknowledged since the
  last checkpoint are read too; SQLite applies the log to the copy, never to the evidence).
- A table is read in rowid order, 256 rows a query. A query that fails is read again row by row up
  to the damage, then the reader jumps over it (rowid + 1, + 2, + 4, ...) until a read succeeds:
  a damaged leaf costs its own rows, a damaged interior page the rows under it.
- Every row goes through the new table's own constraints (a 784-byte input, a digit label, ...)
  and, where it records one, its content's SHA-256 (a drawing's PNG, a model file): one that fails
  is counted as refused, never stored.
- The derived rows are rebuilt, not trusted: the per-digit counts from the drawings copied, every
  change counter moved on by one (so a cache keyed on a counter sees the change), and the drawings'
  AUTOINCREMENT sequence kept at the old file's (an id is never reused: the held-out rule is by id).

Bounded: the file is as large as the row cap allows (drawings/store.py), each damaged spot costs at
most MAX_JUMPS failed queries, and a table at most MAX_FAILURES.
"""
from __future__ import annotations

import contextlib
import hashlib
import shutil
import sqlite3
import tempfile
from pathlib import Path
from typing import Iterator

import store.schema as schema

BATCH = 256  # rows a query
MAX_JUMPS = 48  # failed reads spent stepping over one damaged spot (rowid + 2**47 covers any id this app makes)
MAX_FAILURES = 2_000  # failed reads spent on one table before the rest of it is given up
SKIPPED_TABLES = ("schema_migrations",)  # the new file has its own
# Rows that record the SHA-256 of their content: (content column, hash column). A damaged overflow page can
# hand back other bytes without any error from SQLite (its pointer intact, its content not); such a row is
# refused here, not stored.
HASHED = {"drawings": ("png", "sha256"), "model_version_files": ("data", "sha256")}
DERIVED = {"drawing_counts"}  # rebuilt from the drawings copied (rebuild below), never copied


def copy_readable_rows(damaged: Path, into: sqlite3.Connection) -> dict[str, dict[str, int]]:
    """Copy what `damaged` (the set-aside main file; its -wal beside it as `<name>-wal`) still gives into
    `into`, an open connection to the new database (its schema complete, no transaction open), in one
    transaction. Returns {table: {"copied": rows, "refused": rows its constraints or hash refused,
    "failed_reads": queries that failed}}; an empty dict when nothing of the file can be read at all.
    Raises sqlite3.Error for the new database (rolled back: it stays empty) and OSError when no temporary
    folder can be made beside the file; the caller decides."""
    with tempfile.TemporaryDirectory(prefix=".salvage-", dir=damaged.parent) as folder:
        copy = Path(folder) / "damaged.sqlite3"
        try:
            shutil.copyfile(damaged, copy)
            with contextlib.suppress(FileNotFoundError):
                shutil.copyfile(f"{damaged}-wal", f"{copy}-wal")
        except OSError:
            return {}  # no room for the copy, say: the set-aside file keeps the rows
        try:
            source = sqlite3.connect(copy.absolute().as_uri() + "?mode=rw", uri=True, isolation_level=None)
        except sqlite3.Error:
            return {}
        try:
            return _copy(source, into)
        finally:
            source.close()


def _copy(source: sqlite3.Connection, into: sqlite3.Connection) -> dict[str, dict[str, int]]:
    report: dict[str, dict[str, int]] = {}
    into.execute("BEGIN IMMEDIATE")
    try:
        for table in schema.TABLES:
            if table in SKIPPED_TABLES or table in DERIVED:
                continue
            columns = _shared_columns(source, into, table)
            if not columns:
                continue
            report[table] = _copy_table(source, into, table, columns)
        _rebuild_derived(source, into)
        into.execute("COMMIT")
    except BaseException:
        with contextlib.suppress(sqlite3.Error):
            into.execute("ROLLBACK")
        raise
    return report


def _columns(connection: sqlite3.Connection, table: str) -> list[str]:
    return [row[1] for row in connection.execute(f'PRAGMA table_info("{table}")')]


def _shared_columns(source: sqlite3.Connection, into: sqlite3.Connection, table: str) -> list[str]:
    """The new table's columns the damaged one has too (an older schema lacks some: their defaults apply)."""
    try:
        present = set(_columns(source, table))
    except sqlite3.DatabaseError:  # its schema page is gone: nothing of this table can be found
        return []
    return [column for column in _columns(into, table) if column in present]


def _copy_table(source: sqlite3.Connection, into: sqlite3.Connection, table: str, columns: list[str]
                ) -> dict[str, int]:
    names = ", ".join(f'"{column}"' for column in columns)
    # OR REPLACE: the new file's own rows (a change counter, say) give way to the old file's.
    insert = f'INSERT OR REPLACE INTO "{table}" ({names}) VALUES ({", ".join("?" * len(columns))})'
    copied = refused = 0
    failed = {"failures": 0}  # reads that failed, counted by _readable_rows
    content, digest = HASHED.get(table, (None, None))
    hashed = (columns.index(content), columns.index(digest)) if content in columns and digest in columns else None
    # NOT INDEXED: the rows are read from the table itself, whatever became of its indexes.
    for row in _readable_rows(source, f'SELECT rowid, {names} FROM "{table}" NOT INDEXED', failed):
        if hashed and not _matches(row[1 + hashed[0]], row[1 + hashed[1]]):
            refused += 1
            continue
        try:
            into.execute(insert, row[1:])
            copied += 1
        except sqlite3.IntegrityError:  # damaged contents that the table's own rules refuse
            refused += 1
    return {"copied": copied, "refused": refused, "failed_reads": failed["failures"]}


def _matches(content, digest) -> bool:
    """The content hashes to its recorded SHA-256 (a row without one recorded, made before it was, passes)."""
    if digest is None:
        return True
    return isinstance(content, bytes) and hashlib.sha256(content).hexdigest() == digest


def _readable_rows(source: sqlite3.Connection, select: str, report: dict[str, int]) -> Iterator[tuple]:
    """The rows of `select` (which begins with the rowid) in rowid order, stepping over what fails to read."""
    after = -(2 ** 63)  # below every rowid
    batch = BATCH
    while report["failures"] < MAX_FAILURES:
        try:
            rows = source.execute(f"{select} WHERE rowid > ? ORDER BY rowid LIMIT ?", (after, batch)).fetchall()
        except sqlite3.DatabaseError:
            report["failures"] += 1
            if batch > 1:
                batch = 1  # read up to the damage one row at a time
                continue
            after = _past_the_damage(source, select, after, report)
            if after is None:
                return
            batch = BATCH
            continue
        if not rows:
            return
        yield from rows
        after = rows[-1][0]


def _past_the_damage(source: sqlite3.Connection, select: str, after: int, report: dict[str, int]) -> int | None:
    """The smallest rowid bound past `after` (the last row read) from which reading works again, or None.

    Jumps 1, 2, 4, ... past it until a read works, then halves the last jump back (a jump past the damaged
    page must not skip the readable rows after it). The app's rowids start at 1."""
    def readable_after(bound: int) -> bool:
        try:
            source.execute(f"{select} WHERE rowid > ? ORDER BY rowid LIMIT 1", (bound,)).fetchall()
            return True
        except sqlite3.DatabaseError:
            report["failures"] += 1
            return False

    start = max(after, 0)
    failing = start
    for power in range(MAX_JUMPS):
        bound = start + 2 ** power
        if readable_after(bound):
            while bound - failing > 1:  # the first bound that works, between the last failing one and this
                middle = (failing + bound) // 2
                if readable_after(middle):
                    bound = middle
                else:
                    failing = middle
            return bound
        failing = bound
    return None


def _rebuild_derived(source: sqlite3.Connection, into: sqlite3.Connection) -> None:
    into.execute("UPDATE drawing_counts SET drawings = (SELECT count(*) FROM drawings "
                 "WHERE drawings.label = drawing_counts.label)")
    into.execute("UPDATE change_counters SET counter = counter + 1")
    try:
        old = source.execute("SELECT seq FROM sqlite_sequence WHERE name = 'drawings'").fetchone()
    except sqlite3.DatabaseError:
        old = None
    # Also when its row was unreadable: the highest id copied is a floor (SQLite keeps its own row by then).
    if old is not None and isinstance(old[0], int):
        into.execute("UPDATE sqlite_sequence SET seq = max(seq, ?) WHERE name = 'drawings'", (old[0],))
        into.execute("INSERT INTO sqlite_sequence (name, seq) SELECT 'drawings', ? "
                     "WHERE NOT EXISTS (SELECT 1 FROM sqlite_sequence WHERE name = 'drawings')", (old[0],))
