"""The SQLite file's guards (store/sqlite.py): migrations of older files, damage repaired one at a time,
files the app did not make left untouched (issue 18 item 8), acknowledged writes kept while the file is
truncated, overwritten or deleted under concurrent writers (item 7), a full disk (item 12)."""
from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from drawings.store import DrawingStore
from store import StoreDiskFullError, StoreUnavailableError, schema
from store.sqlite import APPLICATION_ID, CHECKPOINT_BYTES, SQLiteDatabase

# The SQL of the app's first two schema versions, as files made before store/ hold them.
LEGACY_SCHEMA = """
CREATE TABLE drawings (id INTEGER PRIMARY KEY AUTOINCREMENT, label INTEGER NOT NULL CHECK (label BETWEEN 0 AND 9),
    png BLOB NOT NULL, input BLOB NOT NULL CHECK (length(input) = 784), predictions TEXT NOT NULL DEFAULT '{}',
    model_versions TEXT NOT NULL DEFAULT '{}', created_at TEXT NOT NULL);
CREATE INDEX drawings_by_label ON drawings (label);
"""


def add(store: DrawingStore, label: int = 7, png: bytes = b"png") -> int:
    return store.add(label=label, png=png, model_input=np.full((28, 28), 0.5, np.float32))


def fresh_store(path: Path) -> DrawingStore:
    """A store over its own SQLiteDatabase (not the process's shared one): as the app starts with it."""
    return DrawingStore(SQLiteDatabase(path))


def fingerprint(path: Path) -> tuple:
    status = path.stat()
    return status.st_ino, status.st_size, status.st_mtime_ns, hashlib.sha256(path.read_bytes()).hexdigest()


def is_damaged(aside: Path) -> bool:
    """Whether a moved-aside database (with its -wal, if any) really is damaged: a copy fails its quick check."""
    import shutil
    import tempfile

    with tempfile.TemporaryDirectory() as folder:
        copy = Path(folder) / "copy.sqlite3"
        shutil.copy(aside, copy)
        if Path(f"{aside}-wal").exists():
            shutil.copy(f"{aside}-wal", f"{copy}-wal")
        try:
            with contextlib.closing(sqlite3.connect(copy)) as connection:
                verdict = connection.execute("PRAGMA quick_check").fetchone()[0]
                connection.execute("SELECT count(*) FROM drawings").fetchone()
        except sqlite3.DatabaseError:
            return True
        return verdict != "ok"


def test_an_old_schema_is_migrated_keeping_its_rows(tmp_path):
    path = tmp_path / "old.sqlite3"
    connection = sqlite3.connect(path)
    connection.executescript(LEGACY_SCHEMA)
    for label in (4, 4, 9):
        connection.execute("INSERT INTO drawings (label, png, input, created_at) VALUES (?, x'00', ?, '2026-01-01')",
                           (label, bytes(784)))
    connection.execute("PRAGMA user_version = 1")
    connection.commit()
    connection.close()
    store = fresh_store(path)
    assert store.count() == 3 and store.counts()[4] == 2 and store.get(1)["sha256"] is None
    connection = sqlite3.connect(path)
    assert connection.execute("PRAGMA user_version").fetchone()[0] == schema.SCHEMA_VERSION
    assert connection.execute("PRAGMA application_id").fetchone()[0] == APPLICATION_ID
    recorded = connection.execute("SELECT version, description FROM schema_migrations").fetchall()
    assert [version for version, _ in recorded] == list(range(1, schema.SCHEMA_VERSION + 1))
    assert "recorded from PRAGMA user_version" in recorded[0][1]
    add(store)  # the new columns and counters work
    assert store.count() == 4


def damage(path: Path, how: str) -> None:
    if how == "truncated":
        path.write_bytes(path.read_bytes()[:3000])  # a header, half a page
    elif how == "zeroed_pages":
        with open(path, "r+b") as handle:  # in place: the same file, its pages after the first zeroed
            handle.seek(4096)
            handle.write(bytes(path.stat().st_size - 4096))
    else:
        connection = sqlite3.connect(path)
        connection.execute("DROP TABLE drawings")
        connection.commit()
        connection.close()


@pytest.mark.parametrize("how", ["truncated", "zeroed_pages", "no_table"])
def test_a_damaged_database_of_ours_is_moved_aside_and_recreated(tmp_path, caplog, how):
    path = tmp_path / "drawings.sqlite3"
    store = fresh_store(path)
    for _ in range(50):
        add(store, png=bytes(5000))
    store.database.close()
    damage(path, how)
    caplog.set_level(logging.WARNING, logger="store.sqlite")
    fresh = fresh_store(path)  # as the app starts with it
    assert fresh.count() == 0
    assert add(fresh) == 1
    moved = [record.getMessage() for record in caplog.records if "moved it to" in record.getMessage()]
    assert len(moved) == 1, caplog.text
    assert len(list(tmp_path.glob("drawings.sqlite3.corrupt-*Z"))) == 1  # its -wal and -shm go along


def marked_png(index: int) -> bytes:
    """A PNG body no other drawing has, findable in the file's bytes."""
    return f"<drawing {index:04d}>".encode() * 40  # 520 bytes: several rows a page, no overflow pages


@pytest.mark.parametrize("torn", [0, 150, 299])  # the page of the first drawing, a middle one, the last one
def test_a_damaged_page_costs_its_own_rows_and_the_rest_are_copied_into_the_new_database(tmp_path, caplog, torn):
    path = tmp_path / "drawings.sqlite3"
    store = fresh_store(path)
    originals = {add(store, label=index % 10, png=marked_png(index)): index for index in range(300)}
    store.database.close()  # its log folded into the file
    data = bytearray(path.read_bytes())
    page_size = int.from_bytes(data[16:18], "big")
    hit = data.index(marked_png(torn)[:14]) // page_size  # the page holding that drawing's row
    data[hit * page_size + 20:(hit + 1) * page_size] = b"\xa5" * (page_size - 20)  # keep its first bytes: torn
    path.write_bytes(bytes(data))
    damaged = path.read_bytes()
    caplog.set_level(logging.WARNING, logger="store.sqlite")

    fresh = fresh_store(path)  # as the app starts with it
    kept = {row["id"]: row for row in fresh.list(limit=1000)[0]}
    lost = sorted(originals[drawing_id] for drawing_id in set(originals) - set(kept))
    assert torn in lost and 1 <= len(lost) <= 6  # a page's rows (two or three), at most its neighbours'
    assert lost == list(range(lost[0], lost[-1] + 1))  # next to each other: every row after the damage is read
    for drawing_id in kept:  # each as it was written
        assert fresh.png(drawing_id) == marked_png(originals[drawing_id])
        assert kept[drawing_id]["label"] == originals[drawing_id] % 10
    expected = dict.fromkeys(range(10), 0)
    for drawing_id in kept:
        expected[kept[drawing_id]["label"]] += 1
    assert fresh.counts() == expected  # rebuilt from the rows copied, not from the damaged counts
    assert add(fresh) == 301  # an id is never reused (the held-out rule is by id), a lost one neither
    assert fresh.counts()[7] == expected[7] + 1
    aside = [p for p in tmp_path.glob("drawings.sqlite3.corrupt-*") if not p.name.endswith(("-wal", "-shm"))]
    assert len(aside) == 1 and aside[0].read_bytes() == damaged  # read through a copy: the evidence as it was
    assert not list(tmp_path.glob(".salvage-*"))
    copied = [record.getMessage() for record in caplog.records if "copied from the damaged file" in record.getMessage()]
    assert len(copied) == 1 and f"{len(kept)} drawings" in copied[0], caplog.text


def test_writes_still_in_the_log_of_a_damaged_file_are_copied_too(tmp_path):
    """A copy of the files taken while the app runs (as a crash leaves them): the drawings acknowledged since
    the last checkpoint are only in the -wal; the main file is damaged where the log does not cover it."""
    path = tmp_path / "drawings.sqlite3"
    store = fresh_store(path)
    written = [add(store, label=3, png=marked_png(index)) for index in range(5)]  # ~30 KB of log each
    log_file = Path(f"{path}-wal")
    # The rows are in the log, not yet in the file: it is folded in at CHECKPOINT_BYTES.
    assert 0 < log_file.stat().st_size < CHECKPOINT_BYTES
    assert marked_png(0)[:14] not in path.read_bytes()
    copy = tmp_path / "copy" / "drawings.sqlite3"
    copy.parent.mkdir()
    copy.write_bytes(path.read_bytes())
    Path(f"{copy}-wal").write_bytes(log_file.read_bytes())
    store.database.close()
    data = bytearray(copy.read_bytes())
    page_size = int.from_bytes(data[16:18], "big")
    data[page_size:] = bytes(len(data) - page_size)  # every page but the first: the tables the log has no copy of
    copy.write_bytes(bytes(data))

    fresh = fresh_store(copy)
    assert fresh.count() == 5 and fresh.counts()[3] == 5
    assert list(copy.parent.glob("drawings.sqlite3.corrupt-*"))  # it was damaged and set aside
    assert [fresh.png(drawing_id) for drawing_id in written] == [marked_png(index) for index in range(5)]


def test_a_drawing_whose_bytes_changed_without_an_error_is_refused_by_its_hash(tmp_path):
    """A damaged overflow page whose pointer survived hands back other bytes and SQLite says nothing: the
    drawing's recorded SHA-256 of its PNG is what tells."""
    path = tmp_path / "drawings.sqlite3"
    store = fresh_store(path)
    originals = {add(store, png=marked_png(index) * 12): index for index in range(20)}  # 6 KB: overflow pages
    store.database.close()
    data = bytearray(path.read_bytes())
    at = data.rindex(marked_png(10)[:14])  # the end of drawing 10's PNG: on an overflow page
    data[at:at + 14] = b"<drawing 9999>"
    path.write_bytes(bytes(data))
    # SQLite sees nothing wrong with that; damage the app does see (a table lost) makes it repair the file.
    with contextlib.closing(sqlite3.connect(path)) as connection:
        connection.execute("DROP TABLE training_jobs")
        connection.commit()
    fresh = fresh_store(path)
    kept = {row["id"] for row in fresh.list(limit=100)[0]}
    assert {originals[drawing_id] for drawing_id in kept} == set(range(20)) - {10}
    assert all(fresh.png(drawing_id) == marked_png(originals[drawing_id]) * 12 for drawing_id in kept)


def test_a_file_that_gives_nothing_leaves_an_empty_database(tmp_path, caplog):
    path = tmp_path / "drawings.sqlite3"
    store = fresh_store(path)
    add(store)
    store.database.close()
    path.write_bytes(path.read_bytes()[:100] + b"\xff" * 8000)  # our header, then nothing readable
    caplog.set_level(logging.WARNING, logger="store.sqlite")
    fresh = fresh_store(path)
    assert fresh.count() == 0 and add(fresh) == 1
    assert any("no row could be read" in record.getMessage() for record in caplog.records), caplog.text


def test_damage_in_place_while_running_and_a_vanished_file(tmp_path, caplog):
    store = fresh_store(tmp_path / "drawings.sqlite3")
    add(store)
    store.path.write_bytes(b"\0" * 4096 + b"junk")  # overwritten in place: the file the app made
    caplog.set_level(logging.WARNING, logger="store.sqlite")
    assert store.count() == 0 and add(store) == 1
    assert len(list(tmp_path.glob("drawings.sqlite3.corrupt-*Z"))) == 1
    for side in tmp_path.glob("drawings.sqlite3*"):
        if not side.name.startswith("drawings.sqlite3.corrupt"):
            side.unlink()
    assert store.count() == 0
    assert any("disappeared" in record.getMessage() for record in caplog.records)


FOREIGN = {
    "text": lambda path: path.write_text("my notes, not a database\n" * 100),
    "other_sqlite": lambda path: sqlite3.connect(path).executescript(
        "CREATE TABLE accounts (name TEXT); INSERT INTO accounts VALUES ('alice');").close(),
    "newer_schema": None,  # made by a newer Digit Studio
}


@pytest.mark.parametrize("kind", ["text", "other_sqlite", "directory", "newer_schema"])
def test_a_path_that_is_not_our_database_is_refused_and_never_touched(tmp_path, kind):
    """Issue 18 item 8: DRAWINGS_DB at a directory renamed it (with its files) to *.corrupt-..., and a file
    the app did not make was moved aside the same way."""
    path = tmp_path / "target"
    if kind == "directory":
        path.mkdir()
        (path / "keep.txt").write_text("precious")
        words = "is a directory"
    elif kind == "newer_schema":
        store = fresh_store(path)
        add(store)
        store.database.close()
        connection = sqlite3.connect(path)
        connection.execute("INSERT INTO schema_migrations VALUES (99, 'from the future', '2030-01-01')")
        connection.commit()
        connection.close()
        words = "newer Digit Studio"
    else:
        FOREIGN[kind](path)
        words = "not a Digit Studio database"
    before = sorted(os.listdir(tmp_path))
    print_before = None if kind == "directory" else fingerprint(path)
    store = fresh_store(path)
    for _ in range(3):
        with pytest.raises(StoreUnavailableError, match=words):
            add(store)
        with pytest.raises(StoreUnavailableError, match=words):
            store.counts()
    assert sorted(os.listdir(tmp_path)) == before  # nothing moved, nothing created beside it
    if kind == "directory":
        assert os.listdir(path) == ["keep.txt"] and (path / "keep.txt").read_text() == "precious"
    else:
        assert fingerprint(path) == print_before


def test_the_refusal_ends_when_the_file_is_moved_away(tmp_path):
    path = tmp_path / "drawings.sqlite3"
    path.write_text("not ours")
    store = fresh_store(path)
    with pytest.raises(StoreUnavailableError):
        store.count()
    path.unlink()  # what the answer tells the operator to do
    assert add(store) == 1 and store.count() == 1


def test_an_empty_file_becomes_the_database(tmp_path):
    path = tmp_path / "drawings.sqlite3"
    path.touch()
    store = fresh_store(path)
    assert add(store) == 1 and path.stat().st_size > 0


def test_an_unusable_location_is_reported_not_raised_as_an_os_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    store = fresh_store(blocker / "drawings.sqlite3")  # its folder would be a file
    with pytest.raises(StoreUnavailableError, match="DRAWINGS_DB"):
        store.count()


def test_normal_work_never_rechecks_the_file_and_checkpoints_keep_the_log_small(tmp_path, monkeypatch):
    """The guard costs nothing while no one else touches the file: no look at the file (a quick check) in
    600 writes and reads after it was made, with checkpoints folding the log in along the way."""
    import store.sqlite as sqlite_module

    monkeypatch.setattr(sqlite_module, "CHECKPOINT_BYTES", 256 * 1024)
    store = fresh_store(tmp_path / "drawings.sqlite3")
    checks = []
    real = SQLiteDatabase._check_and_migrate
    monkeypatch.setattr(SQLiteDatabase, "_check_and_migrate", lambda self: checks.append(1) or real(self))
    threads = [threading.Thread(target=lambda w=w: [add(store, png=bytes([w, i]) * 1000) for i in range(100)])
               for w in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert store.count() == 600 and len(store.training_drawings()) == 600
    assert checks == []
    assert Path(f"{store.path}-wal").stat().st_size < 2 * 256 * 1024


WRITER = """
import sys
import numpy as np
from drawings.store import DrawingStore
from store.sqlite import SQLiteDatabase
store = DrawingStore(SQLiteDatabase(sys.argv[1]))
print(sum(1 for i in range(300) if store.add(label=i % 10, png=b"other" + i.to_bytes(4, "big") * 300,
                                           model_input=np.zeros((28, 28)))), flush=True)
"""


def test_two_processes_on_one_file_keep_every_write_without_full_checks(tmp_path, monkeypatch):
    """Replicas on one machine share the SQLite file (README, Deploy): the other process's checkpoints change
    the file under this one, which takes a look without reading every page (a full check here costs ~0.5 s
    per 100 MB, under the gate)."""
    import store.sqlite as sqlite_module

    from tests.app_server import ROOT

    monkeypatch.setattr(sqlite_module, "CHECKPOINT_BYTES", 64 * 1024)  # many checkpoints in both processes
    path = tmp_path / "shared.sqlite3"
    store = fresh_store(path)
    add(store)
    full_checks = []
    real = SQLiteDatabase._check_and_migrate
    monkeypatch.setattr(SQLiteDatabase, "_check_and_migrate",
                        lambda self, full=True: full_checks.append(full) or real(self, full=full))
    other = subprocess.Popen([sys.executable, "-c", WRITER, str(path)], cwd=ROOT, stdout=subprocess.PIPE, text=True,
                             env={**os.environ, "PYTHONPATH": str(ROOT)})
    mine = [add(store, png=b"mine" + i.to_bytes(4, "big") * 300) for i in range(300)]
    assert other.communicate(timeout=120)[0].strip() == "300"
    assert store.count() == 601 and len(set(mine)) == 300
    assert full_checks.count(True) == 0 and full_checks  # it looked, cheaply


def test_acknowledged_writes_between_events_are_in_the_database_before_the_next_one(tmp_path):
    """Issue 18 item 7 in one process: 8 threads write while the file is truncated, overwritten in place and
    deleted. Before each event, every write acknowledged since the previous one is in the database; every
    failure is the store's 503 error; only damaged files are moved aside, at most one per event."""
    path = tmp_path / "drawings.sqlite3"
    store = fresh_store(path)
    add(store)
    acknowledged, errors, stop, lock = [], [], threading.Event(), threading.Lock()

    def write(worker: int) -> None:
        index = 0
        while not stop.is_set():
            index += 1
            started = time.monotonic()
            try:
                new_id = add(store, png=bytes([worker]) + index.to_bytes(4, "big") * 500)
            except StoreUnavailableError:
                continue  # allowed: the client is told to try again
            except Exception as error:  # collected: the assertion names it
                errors.append(repr(error))
                continue
            with lock:
                acknowledged.append((started, time.monotonic(), new_id))

    threads = [threading.Thread(target=write, args=(worker,)) for worker in range(8)]
    for thread in threads:
        thread.start()
    missing = []
    try:
        previous = time.monotonic()
        for how in ["truncate", "garbage", "delete"] * 2:
            time.sleep(0.4)
            with lock:
                due = [new_id for started, _, new_id in acknowledged if started > previous]
            with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as reader:
                present = {row[0] for row in reader.execute("SELECT id FROM drawings")}
            missing += [new_id for new_id in due if new_id not in present]
            if how == "truncate":
                os.truncate(path, max(4096, path.stat().st_size // 2))
            elif how == "garbage":
                path.write_bytes(b"garbage! " * 2000)
            else:
                path.unlink()
            previous = time.monotonic()
    finally:
        stop.set()
        for thread in threads:
            thread.join()
    assert errors == [] and missing == [] and len(acknowledged) > 50
    corrupt = [p for p in tmp_path.glob("drawings.sqlite3.corrupt-*") if not p.name.endswith(("-wal", "-shm"))]
    assert 1 <= len(corrupt) <= 4 and all(is_damaged(p) for p in corrupt), [p.name for p in corrupt]


@pytest.mark.parametrize("cut", ["truncate", "truncate and regrow"])
def test_a_file_cut_as_a_checkpoint_begins_is_looked_at_before_more_writes_are_acknowledged(tmp_path, monkeypatch,
                                                                                          cut):
    """The instant of the 8-writer test above that lost rows under load, made on purpose: the file is cut
    after the checkpoint's own look at it and before SQLite folds the log in ("truncate": the checkpoint then
    fails; "truncate and regrow": it succeeds and writes the file back to its full length over a hole). Every
    write acknowledged after the cut must be in the database that serves afterwards, and that database whole."""
    path = tmp_path / "drawings.sqlite3"
    store = fresh_store(path)
    for index in range(150):
        add(store, png=index.to_bytes(4, "big") * 800)
    real_log_is_long = SQLiteDatabase._log_is_long
    done = []

    def log_is_long(self):  # called a second time inside the checkpoint's gate, after its look at the file
        long = real_log_is_long(self)
        if long and self._gate._exclusive and not done:
            os.truncate(path, path.stat().st_size // 2)
            if cut == "truncate and regrow":
                os.truncate(path, path.stat().st_size * 2)
            done.append(cut)
        return long

    monkeypatch.setattr(SQLiteDatabase, "_log_is_long", log_is_long)
    acknowledged = []  # writes begun after the cut (those committed before it are in the log of the file cut)
    for index in range(150):
        after_the_cut = bool(done)
        try:
            new_id = add(store, png=b"after" + index.to_bytes(4, "big") * 800)
        except StoreUnavailableError:
            continue  # allowed: the client is told to try again
        if after_the_cut:
            acknowledged.append(new_id)
    assert done and len(acknowledged) > 100
    store.count()  # a read meets whatever damage is left, and the file is repaired
    with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as reader:
        present = {row[0] for row in reader.execute("SELECT id FROM drawings")}
        verdict = reader.execute("PRAGMA quick_check").fetchall()
    assert [new_id for new_id in acknowledged if new_id not in present] == []
    assert verdict == [("ok",)], verdict[:3]  # not a damaged file taken for whole (its losses come later)


def tmpfs(folder: Path, size: str):
    """Mount a small tmpfs on `folder` (needs root); skips, saying why, where mounting is not allowed."""
    folder.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)],
                          capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"a full disk is made with a small tmpfs, and mounting one is not allowed here "
                    f"({done.stderr.strip()[:120] or done.returncode})")
    return folder


@pytest.fixture
def small_disk(tmp_path):
    folder = tmpfs(tmp_path / "small", "2m")
    yield folder
    subprocess.run(["umount", "-l", str(folder)], check=False)


def fill(folder: Path) -> Path:
    """Take every free byte of `folder`'s filesystem with one file; returns it (remove it to free the room)."""
    filler = folder / "filler"
    with open(filler, "wb", buffering=0) as handle:
        try:
            while True:
                handle.write(bytes(64 * 1024))
        except OSError:
            pass
    return filler


def test_a_full_disk_is_said_in_words_and_nothing_is_lost(small_disk):
    """Issue 18 item 12 at the store: writes refused with StoreDiskFullError (not an OperationalError), the
    rows stored before kept and readable, and writing again once there is room."""
    store = fresh_store(small_disk / "drawings.sqlite3")
    stored = [add(store, png=bytes([i]) * 3000) for i in range(20)]
    filler = fill(small_disk)
    with pytest.raises(StoreDiskFullError, match="disk is full"):
        for i in range(200):  # the log may still have room for a few
            stored.append(add(store, png=bytes([i]) * 3000))
    assert store.count() == len(stored) and store.get(stored[0]) is not None
    with pytest.raises(StoreDiskFullError):
        add(store)
    filler.unlink()  # the operator frees some room
    assert store.get(add(store)) is not None and store.count() == len(stored) + 1
