"""The drawings database (drawings/store.py) on disk: rows, migrations, damage, concurrency, limits."""
from __future__ import annotations

import logging
import sqlite3
import threading

import numpy as np
import pytest

from drawings.corrections import LabelError, RateLimitedError, check_label, save_correction
from drawings.limits import RateLimiter
from drawings.store import (MIGRATIONS, SCHEMA_VERSION, DrawingStore, StoreFullError, StoreUnavailableError,
                            is_held_out)
from inference.image_io import EmptyImageError, ImageInputError
from inference.predictor import Predictor
from inference.preprocess import preprocess
from tests.segments import segment_digit

PNG = segment_digit(7, 0)


def add(store: DrawingStore, label: int = 7, png: bytes = b"png", **extra) -> int:
    return store.add(label=label, png=png, model_input=np.full((28, 28), 0.5, np.float32), **extra)


@pytest.fixture
def store(tmp_path) -> DrawingStore:
    return DrawingStore(tmp_path / "data" / "drawings.sqlite3")


def test_rows_round_trip_with_their_input_and_metadata(store):
    x = preprocess(PNG)
    new_id = store.add(label=7, png=PNG, model_input=x, predictions={"model1": {"digit": 1}},
                       model_versions={"model1": 3})
    assert store.png(new_id) == PNG
    row = store.get(new_id)
    assert row["label"] == 7 and row["predictions"] == {"model1": {"digit": 1}} and row["model_versions"] == {"model1": 3}
    assert row["created_at"].endswith("+00:00") and row["held_out"] == is_held_out(new_id)
    data = store.training_drawings()
    assert data.images.dtype == np.uint8 and data.images.shape == (1, 28, 28)
    np.testing.assert_allclose(data.images[0] / 255.0, x[:, :, 0], atol=1 / 255)  # the model input, uint8
    assert store.path.with_name("drawings.sqlite3").is_file()
    assert sqlite3.connect(store.path).execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_list_filters_pages_newest_first_and_deletes(store):
    ids = [add(store, label=digit % 3, png=bytes([digit])) for digit in range(9)]
    drawings, total = store.list(limit=2, offset=1, label=0)
    assert total == 3 and [d["id"] for d in drawings] == [ids[3], ids[0]]
    assert store.counts() == {**dict.fromkeys(range(10), 0), 0: 3, 1: 3, 2: 3}
    assert store.delete(ids[0]) and not store.delete(ids[0])
    assert store.count() == 8 and store.png(ids[0]) is None


def test_held_out_accuracy_is_measured_again_only_after_a_change(store, predictor):
    from drawings.heldout import held_out_accuracy

    ids = [save_correction(store, predictor, segment_digit(digit, seed), digit) for seed in range(3)
           for digit in range(10)]
    first = held_out_accuracy(store, predictor)
    assert first["held_out"] == sum(is_held_out(i) for i in ids) > 0
    assert held_out_accuracy(store, predictor) is first  # cached: nothing changed
    store.delete(next(i for i in ids if is_held_out(i)))
    again = held_out_accuracy(store, predictor)
    assert again is not first and again["held_out"] == first["held_out"] - 1


def test_held_out_share_is_about_one_in_five_and_fixed():
    held = [i for i in range(1, 1001) if is_held_out(i)]
    assert 170 <= len(held) <= 230
    assert held == [i for i in range(1, 1001) if is_held_out(i)]
    # Drawn 0, 1, ..., 9 in turn, every digit still gets held-out examples (unlike id % 5).
    assert {(i - 1) % 10 for i in held[:40]} == set(range(10))


def test_row_cap(tmp_path):
    store = DrawingStore(tmp_path / "capped.sqlite3", max_rows=3)
    for _ in range(3):
        add(store)
    with pytest.raises(StoreFullError, match="full"):
        add(store)
    assert store.count() == 3


def test_an_old_schema_is_migrated_keeping_its_rows(tmp_path):
    path = tmp_path / "old.sqlite3"
    connection = sqlite3.connect(path)
    connection.executescript(MIGRATIONS[0])
    connection.execute("INSERT INTO drawings (label, png, input, created_at) VALUES (4, x'00', ?, '2026-01-01')",
                       (bytes(784),))
    connection.execute("PRAGMA user_version = 1")
    connection.commit()
    connection.close()
    store = DrawingStore(path)
    assert store.count() == 1 and store.get(1)["label"] == 4 and store.get(1)["sha256"] is None
    assert sqlite3.connect(path).execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    add(store, client="abc")  # the new columns work


@pytest.mark.parametrize("damage", ["garbage", "truncated", "no_table"])
def test_a_damaged_file_is_moved_aside_and_recreated(tmp_path, caplog, damage):
    path = tmp_path / "drawings.sqlite3"
    store = DrawingStore(path)
    for _ in range(50):
        add(store, png=bytes(5000))
    if damage == "garbage":
        path.write_bytes(b"this is not a database" * 100)
    elif damage == "truncated":
        path.write_bytes(path.read_bytes()[:3000])  # a header, half a page
    else:
        sqlite3.connect(path).execute("DROP TABLE drawings")
    caplog.set_level(logging.WARNING, logger="drawings.store")
    fresh = DrawingStore(path)  # as the app starts with it
    assert fresh.count() == 0
    assert add(fresh) == 1
    moved = [record.getMessage() for record in caplog.records if "moved it to" in record.getMessage()]
    assert len(moved) == 1, caplog.text
    assert len(list(tmp_path.glob("drawings.sqlite3.corrupt-*Z"))) == 1  # its -wal and -shm go along


def test_damage_while_running_and_a_vanished_file(store, caplog):
    add(store)
    store.path.write_bytes(b"\0" * 4096 + b"junk")  # replaced under a running app
    caplog.set_level(logging.WARNING, logger="drawings.store")
    assert store.count() == 0 and add(store) == 1
    for side in store.path.parent.glob("drawings.sqlite3*"):
        side.unlink()
    assert store.count() == 0
    assert any("disappeared" in record.getMessage() for record in caplog.records)


def test_an_unusable_location_is_reported_not_raised_as_an_os_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    store = DrawingStore(blocker / "drawings.sqlite3")  # its folder would be a file
    with pytest.raises(StoreUnavailableError, match="DRAWINGS_DB"):
        store.count()


def test_concurrent_writers_while_a_trainer_reads(store):
    """16 threads write while another keeps reading the whole training set: no error, no lost row,
    and every snapshot the reader sees is consistent (as many labels as images)."""
    writers, per_writer = 16, 25
    errors, snapshots = [], []
    done = threading.Event()

    def write(worker: int) -> None:
        try:
            for index in range(per_writer):
                add(store, label=(worker + index) % 10, png=bytes([worker, index]) * 2000)
        except Exception as error:  # collected: the assertion below names it
            errors.append(error)

    def read() -> None:
        try:
            while not done.is_set():
                data = store.training_drawings()
                snapshots.append((len(data.ids), len(data.labels), len(data.images)))
        except Exception as error:
            errors.append(error)

    reader = threading.Thread(target=read)
    reader.start()
    threads = [threading.Thread(target=write, args=(worker,)) for worker in range(writers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    done.set()
    reader.join()
    assert errors == []
    assert store.count() == writers * per_writer
    assert len(snapshots) > 1 and all(a == b == c for a, b, c in snapshots)
    assert len(set(store.training_drawings().ids)) == writers * per_writer


# -- save_correction -----------------------------------------------------------------

@pytest.fixture(scope="module")
def predictor(exports_copy) -> Predictor:
    return Predictor(exports_copy)


def test_save_correction_keeps_the_png_as_sent_and_what_each_model_read(store, predictor):
    new_id = save_correction(store, predictor, PNG, 7, "client-1")
    row = store.get(new_id)
    assert store.png(new_id) == PNG
    assert set(row["predictions"]) == {"model1", "model2"}
    assert all(len(p["probabilities"]) == 10 and 0 <= p["digit"] <= 9 for p in row["predictions"].values())
    assert row["model_versions"] == {"model1": 1, "model2": 1}  # the shipped metadata names version 1
    import base64
    url_id = save_correction(store, predictor, "data:image/png;base64," + base64.b64encode(PNG).decode(), 7)
    assert store.png(url_id) == PNG


@pytest.mark.parametrize("label", [10, -1, "7", 7.0, True, None])
def test_bad_labels_are_refused(label):
    with pytest.raises(LabelError, match="0 to 9"):
        check_label(label)


def test_bad_images_store_nothing(store, predictor):
    import io

    from PIL import Image

    blank = io.BytesIO()
    Image.new("L", (280, 280), 255).save(blank, format="PNG")
    with pytest.raises(EmptyImageError):
        save_correction(store, predictor, blank.getvalue(), 3)
    with pytest.raises(ImageInputError):
        save_correction(store, predictor, "/etc/passwd", 3)  # a string is never a path
    with pytest.raises(ImageInputError):
        save_correction(store, predictor, b"not an image", 3)
    assert store.path.exists() is False or store.count() == 0


def test_rate_limit_per_client(store, predictor):
    now = [0.0]
    limiter = RateLimiter(3, clock=lambda: now[0])
    for _ in range(3):
        save_correction(store, predictor, PNG, 7, "a", limiter=limiter)
    with pytest.raises(RateLimitedError, match="wait 60 s"):
        save_correction(store, predictor, PNG, 7, "a", limiter=limiter)
    save_correction(store, predictor, PNG, 7, "b", limiter=limiter)  # another client is not held up
    now[0] = 60.5
    save_correction(store, predictor, PNG, 7, "a", limiter=limiter)  # the window moved on
    assert store.count() == 5


def test_rate_limiter_memory_is_bounded(monkeypatch):
    import drawings.limits as limits

    monkeypatch.setattr(limits, "TRACKED_CLIENTS", 100)
    limiter = RateLimiter(1)
    for client in range(1000):
        assert limiter.allow(str(client)) is None
    assert len(limiter._seen) == 100
