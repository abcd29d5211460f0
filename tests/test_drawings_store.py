"""The drawings database (drawings/store.py) on SQLite and on PostgreSQL: rows, counters, the row cap,
concurrency, the held-out measure, corrections and their limits. The SQLite file's own guards
(damage, foreign files) are in test_store_sqlite.py; the store package in test_store.py."""
from __future__ import annotations

import sqlite3
import threading

import numpy as np
import pytest

from drawings.corrections import LabelError, RateLimitedError, check_label, save_correction
from drawings.limits import RateLimiter
from drawings.store import ClientRateError, DrawingStore, StoreFullError, is_held_out
from inference.image_io import EmptyImageError, ImageInputError
from inference.predictor import Predictor
from inference.preprocess import preprocess
from tests.fakes import in_parallel
from tests.segments import segment_digit
from training.registry import MODELS

PNG = segment_digit(7, 0)


def add(store: DrawingStore, label: int = 7, png: bytes = b"png", **extra) -> int:
    return store.add(label=label, png=png, model_input=np.full((28, 28), 0.5, np.float32), **extra)


@pytest.fixture
def store(make_store) -> DrawingStore:
    return make_store()


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
    if store.path is not None:
        assert store.path.name == "drawings.sqlite3" and store.path.is_file()
        assert sqlite3.connect(store.path).execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_list_filters_pages_newest_first_and_deletes(store):
    ids = [add(store, label=digit % 3, png=bytes([digit])) for digit in range(9)]
    drawings, total = store.list(limit=2, offset=1, label=0)
    assert total == 3 and [d["id"] for d in drawings] == [ids[3], ids[0]]
    assert store.counts() == {**dict.fromkeys(range(10), 0), 0: 3, 1: 3, 2: 3}
    changes = store.changes()
    assert store.delete(ids[0]) and not store.delete(ids[0])
    assert store.count() == 8 and store.png(ids[0]) is None
    assert store.changes() == (changes[0], changes[1] + 1)  # one change: the failed delete counted nothing
    assert store.counts()[0] == 2 and store.list(label=0)[1] == 2


def test_counters_match_the_rows_after_any_mix_of_writes(store):
    rng = np.random.default_rng(3)
    ids = []
    for step in range(120):
        if ids and rng.random() < 0.3:
            store.delete(ids.pop(int(rng.integers(len(ids)))))
        else:
            ids.append(add(store, label=int(rng.integers(10)), png=bytes([step % 256, step // 256])))
    labels = [store.get(i)["label"] for i in ids]
    assert store.counts() == {digit: labels.count(digit) for digit in range(10)}
    assert store.list(limit=500)[1] == len(ids) == store.count()


def test_stored_rows_with_odd_metadata_are_still_listed(store):
    new_id = add(store)
    store.database.write(lambda tx: tx.execute("UPDATE drawings SET predictions = 'not json', model_versions = '[1]' "
                                               "WHERE id = ?", (new_id,)))
    row = store.get(new_id)
    assert row["predictions"] == {} and row["model_versions"] == {}


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


def test_held_out_accuracy_is_measured_once_for_many_callers_at_once(store, predictor, monkeypatch):
    """Issue 18 item 4: 40 callers right after a change share one measure (each used to make its own)."""
    import drawings.heldout as heldout

    for seed in range(2):
        for digit in range(10):
            save_correction(store, predictor, segment_digit(digit, seed), digit)
    measures = []
    real = heldout._measure
    monkeypatch.setattr(heldout, "_measure", lambda *args: measures.append(1) or real(*args))
    results = []
    threads = [threading.Thread(target=lambda: results.append(heldout.held_out_accuracy(store, predictor)))
               for _ in range(40)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(results) == 40 and len(measures) == 1 and all(result is results[0] for result in results)


def test_held_out_measure_reads_only_what_a_model_has_not_read(store, predictor, monkeypatch, exports_copy):
    """After a new drawing, each model reads that one drawing, not every held-out one again; a model whose
    file changed (a version served) reads them all."""
    import os

    from drawings.heldout import held_out_accuracy

    for seed in range(3):
        for digit in range(10):
            save_correction(store, predictor, segment_digit(digit, seed), digit)
    first = held_out_accuracy(store, predictor)
    read = []
    real = predictor.predict_digits
    monkeypatch.setattr(predictor, "predict_digits", lambda images, name: read.append(len(images)) or real(images, name))
    while not is_held_out(add(store, label=3)):  # until one new drawing is held out
        pass
    again = held_out_accuracy(store, predictor)
    assert again["held_out"] == first["held_out"] + 1 and read == [1] * len(MODELS)  # one drawing, each model once
    read.clear()
    onnx = exports_copy / "model1.onnx"
    os.utime(onnx, ns=(onnx.stat().st_atime_ns, onnx.stat().st_mtime_ns + 1_000_000_000))
    held_out_accuracy(store, predictor)
    assert read == [again["held_out"]]  # model1 reads all its held-out drawings again; the others none


def test_held_out_share_is_about_one_in_five_and_fixed():
    held = [i for i in range(1, 1001) if is_held_out(i)]
    assert 170 <= len(held) <= 230
    assert held == [i for i in range(1, 1001) if is_held_out(i)]
    # Drawn 0, 1, ..., 9 in turn, every digit still gets held-out examples (unlike id % 5).
    assert {(i - 1) % 10 for i in held[:40]} == set(range(10))


def test_row_cap(make_store):
    store = make_store(max_rows=3)
    for _ in range(3):
        add(store)
    with pytest.raises(StoreFullError, match="full"):
        add(store)
    assert store.count() == 3


def test_row_cap_is_exact_under_concurrent_writers(make_store):
    """24 threads race for 50 places: exactly 50 rows, every other attempt refused as full."""
    store = make_store(max_rows=50)
    stored, full = [], []

    def write(worker: int) -> None:
        for index in range(5):
            try:
                stored.append(add(store, png=bytes([worker, index])))
            except StoreFullError:
                full.append(1)

    errors = in_parallel(write, 24)
    assert errors == [] and len(stored) == 50 and len(full) == 24 * 5 - 50
    assert store.count() == 50 and len(set(stored)) == 50


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
    assert set(row["predictions"]) == set(MODELS)
    assert all(len(p["probabilities"]) == 10 and 0 <= p["digit"] <= 9 for p in row["predictions"].values())
    assert row["model_versions"] == {name: 1 for name in MODELS}  # the shipped metadata names version 1
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
    assert store.count() == 0


def test_rate_limit_per_client(store, predictor):
    now = [0.0]
    limiter = RateLimiter(3, clock=lambda: now[0])
    for _ in range(3):
        save_correction(store, predictor, PNG, 7, "a", limiter=limiter)
    with pytest.raises(RateLimitedError, match="wait 60 s"):
        save_correction(store, predictor, PNG, 7, "a", limiter=limiter)
    save_correction(store, predictor, PNG, 7, "b", limiter=limiter)  # another client is not held up
    now[0] = 60.5
    with pytest.raises(RateLimitedError):  # this process's window moved on, the database's has not
        save_correction(store, predictor, PNG, 7, "a", limiter=RateLimiter(3, clock=lambda: now[0]))
    store.database.write(lambda tx: tx.execute("UPDATE drawings SET created_at = ?", ("2026-01-01T00:00:00.000+00:00",)))
    save_correction(store, predictor, PNG, 7, "a", limiter=limiter)  # both windows moved on
    assert store.count() == 5


@pytest.fixture(params=["sqlite", "postgresql"])
def two_replicas(request, tmp_path):
    """Two DrawingStores on one database, each with a Database of its own where the backend allows
    (PostgreSQL: two pools, as two replicas have; SQLite: one per file in a process, by design)."""
    from store import open_database

    if request.param == "sqlite":
        yield DrawingStore(tmp_path / "one.sqlite3"), DrawingStore(tmp_path / "one.sqlite3")
        return
    server = request.getfixturevalue("postgres_server")
    url = server.new_database()
    databases = [open_database(url), open_database(url)]
    yield tuple(DrawingStore(database) for database in databases)
    for database in databases:
        database.close()
    server.drop_database(url)


def test_a_clients_rate_is_counted_in_the_database_across_replicas_and_parallel_requests(two_replicas):
    """24 threads post as one client through two stores on one database at once, 5 a minute allowed:
    exactly 5 rows, whichever store each went through; the other client and old rows do not count."""
    a, b = two_replicas
    for _ in range(6):  # older than the window: not counted
        add(a, client="c", created_at="2026-01-01T00:00:00.000+00:00")
    stored, refused = [], []

    def post(worker: int) -> None:
        try:
            stored.append(add(a if worker % 2 else b, png=bytes([worker]), client="c", rate=(5, 60.0)))
        except ClientRateError as error:
            refused.append(error.retry_after)

    errors = in_parallel(post, 24)
    assert errors == [] and len(stored) == 5 and len(refused) == 19
    assert all(0 < wait <= 60 for wait in refused)
    assert add(b, client="d", rate=(5, 60.0))  # another client has a rate of its own
    assert add(a, client="c") and a.count() == 6 + 5 + 2  # no rate asked (the token holder): stored


def test_rate_limiter_memory_is_bounded(monkeypatch):
    import drawings.limits as limits

    monkeypatch.setattr(limits, "TRACKED_CLIENTS", 100)
    limiter = RateLimiter(1)
    for client in range(1000):
        assert limiter.allow(str(client)) is None
    assert len(limiter._seen) == 100
