"""Export and import of the drawings zip (drawings/archive.py), including hostile zips."""
from __future__ import annotations

import csv
import io
import os
import zipfile

import numpy as np
import pytest

from drawings.archive import CSV_NAME, MAX_ENTRY_BYTES, ArchiveError, export_zip, import_zip
from drawings.corrections import save_correction
from drawings.store import DrawingStore
from inference.predictor import Predictor
from tests.segments import segment_digit


@pytest.fixture(scope="module")
def predictor(exports_copy) -> Predictor:
    return Predictor(exports_copy)


@pytest.fixture
def store(make_store) -> DrawingStore:
    return make_store()


def compressed_bomb(method: int, size: int = 32 * 1024 * 1024, name: str = "3/bomb.png") -> bytes:
    """A zip of one entry of `size` zero bytes compressed with `method` (bzip2: ~100 bytes for 32 MB),
    written in 1 MB pieces, whose headers declare 100 bytes (as the report's attack did)."""
    import struct

    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        with archive.open(_info(name, method), "w") as entry:
            for _ in range(size // (1024 * 1024)):
                entry.write(bytes(1024 * 1024))
    data = buffer.getvalue()
    assert data.count(struct.pack("<I", size)) == 2  # the local header and the central directory
    return data.replace(struct.pack("<I", size), struct.pack("<I", 100))


def _info(name: str, method: int) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(name)
    info.compress_type = method
    return info


def zip_of(entries: dict[str, bytes], compression=zipfile.ZIP_DEFLATED) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression) as archive:
        for name, data in entries.items():
            archive.writestr(name, data)
    return buffer.getvalue()


def test_export_is_image_folders_plus_csv_and_imports_back(make_store, store, predictor):
    pngs = {digit: segment_digit(digit, 5) for digit in (0, 3, 3, 9)}
    ids = [save_correction(store, predictor, segment_digit(digit, seed), digit)
           for seed, digit in enumerate((0, 3, 3, 9))]
    buffer = io.BytesIO()
    assert export_zip(store, buffer) == 4
    archive = zipfile.ZipFile(io.BytesIO(buffer.getvalue()))
    names = sorted(archive.namelist())
    assert names == sorted([CSV_NAME, f"0/{ids[0]}.png", f"3/{ids[1]}.png", f"3/{ids[2]}.png", f"9/{ids[3]}.png"])
    rows = list(csv.DictReader(io.StringIO(archive.read(CSV_NAME).decode())))
    assert [row["label"] for row in rows] == ["0", "3", "3", "9"] and all(row["predictions"] for row in rows)
    assert archive.read(f"9/{ids[3]}.png") == store.png(ids[3])

    other = make_store()
    assert import_zip(other, predictor, buffer.getvalue()) == {"imported": 4, "skipped": 0, "problems": []}
    assert other.counts()[3] == 2 and other.counts()[9] == 1
    assert sorted(other.png(i) for i in range(1, 5)) == sorted(store.png(i) for i in ids)
    assert [d["created_at"] for d in other.list()[0]] == [d["created_at"] for d in store.list()[0]]
    again = import_zip(other, predictor, buffer.getvalue())  # the same zip twice adds nothing
    assert again["imported"] == 0 and again["skipped"] == 4 and "already in the database" in again["problems"][0]
    del pngs


def test_names_are_never_paths(tmp_path, store, predictor, monkeypatch):
    monkeypatch.chdir(tmp_path)
    store.count()  # the database exists before the import (its own files are the only ones expected)
    png = segment_digit(1, 0)
    hostile = zip_of({"../../escape.png": png, "/abs/1.png": png, "1/../../x.png": png, "1\\..\\y.png": png,
                      "11/a.png": png, "1/good.png": png, "1/.png": png, "1/a.png.exe": png})
    summary = import_zip(store, predictor, hostile)
    assert summary["imported"] == 1 and summary["skipped"] == 7
    assert store.counts()[1] == 1
    assert all(name.startswith("db") for name in os.listdir(tmp_path))  # nothing extracted
    assert not (tmp_path.parent / "escape.png").exists() and not (tmp_path.parent.parent / "escape.png").exists()


def test_a_zip_bomb_stops_at_the_limit(store, predictor):
    bomb = zip_of({"1/bomb.png": b"\0" * (MAX_ENTRY_BYTES + 10)})  # 5 MB of zeros: a few KB compressed
    assert len(bomb) < 100_000
    summary = import_zip(store, predictor, bomb)
    assert summary["imported"] == 0 and "limit" in summary["problems"][0]


def test_a_lying_size_header_is_not_trusted(store, predictor, monkeypatch):
    # A header claiming 10 bytes for an entry that inflates to 6 MB: the bounded read stops it.
    data = bytearray(zip_of({"2/liar.png": b"\0" * (6 * 1024 * 1024)}))
    import struct
    real = struct.pack("<I", 6 * 1024 * 1024)
    data = bytes(data).replace(real, struct.pack("<I", 10))
    summary = import_zip(store, predictor, data)
    assert summary["imported"] == 0 and summary["skipped"] == 1, summary


def test_bad_entries_are_skipped_with_reasons(store, predictor):
    zipped = zip_of({"4/broken.png": b"\x89PNG\r\n\x1a\nnot really", "5/blank.png": segment_digit(5, 0)[:0] or b"",
                     CSV_NAME: b"file,label\n6/x.png,7\n", "6/x.png": segment_digit(6, 0)})
    summary = import_zip(store, predictor, zipped)
    assert summary["imported"] == 0 and summary["skipped"] == 3
    assert any("csv says" in problem for problem in summary["problems"])


@pytest.mark.parametrize("data", [b"", b"not a zip", b"PK\x03\x04broken"])
def test_not_a_zip(store, predictor, data):
    with pytest.raises(ArchiveError, match="not a zip"):
        import_zip(store, predictor, data)


def test_too_many_entries(store, predictor, monkeypatch):
    import drawings.archive as archive

    monkeypatch.setattr(archive, "MAX_ENTRIES", 5)
    with pytest.raises(ArchiveError, match="entries"):
        import_zip(store, predictor, zip_of({f"1/{i}.png": b"x" for i in range(6)}))


@pytest.mark.parametrize("method, words", [(zipfile.ZIP_BZIP2, "method 12"), (zipfile.ZIP_LZMA, "method 14")])
def test_bzip2_and_lzma_entries_are_refused_before_anything_is_decompressed(store, predictor, method, words):
    """Issue 18 item 3: zipfile bounds deflate reads but gives bzip2/LZMA whole compressed chunks to
    the decompressor; a ~100-byte entry inflated 32 MB here in one call (1 GiB from 1 KB in the report).
    Measured with tracemalloc: the refused entry costs no memory."""
    import tracemalloc

    bomb = compressed_bomb(method)
    assert len(bomb) < 20_000
    tracemalloc.start()
    try:
        summary = import_zip(store, predictor, bomb)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert summary["imported"] == 0 and summary["skipped"] == 1 and words in summary["problems"][0], summary
    assert peak < 4 * 1024 * 1024, f"{peak / 1e6:.1f} MB allocated for a refused entry"
    csv_bomb = compressed_bomb(method, name=CSV_NAME)  # the CSV too
    with pytest.raises(ArchiveError, match="cannot be read"):
        import_zip(store, predictor, csv_bomb)


def test_times_out_of_range_are_skipped_and_counted_and_export_never_fails(store, predictor):
    """Issue 18 item 11: a 2200 time made the export answer 500 (struct.error), a year-1 time with +14:00
    made the import 500 (OverflowError) partway."""
    rows = {"1/a.png": "2200-01-01T00:00:00+00:00", "2/b.png": "0001-01-01T00:00:00+14:00",
            "3/c.png": "1979-12-31T23:59:59+00:00", "4/d.png": "yesterday", "5/e.png": "2025-03-01T12:00:00+02:00",
            "6/f.png": ""}
    text = "file,label,created_at\n" + "".join(f"{name},{name[0]},{when}\n" for name, when in rows.items())
    pngs = {name: segment_digit(int(name[0]), 40) for name in rows}
    summary = import_zip(store, predictor, zip_of({CSV_NAME: text.encode(), **pngs}))
    assert summary["imported"] == 2 and summary["skipped"] == 4, summary
    assert sum("between 1980 and today" in problem for problem in summary["problems"]) == 2
    assert sum("not an ISO 8601 time" in problem for problem in summary["problems"]) == 2
    stored = {d["label"]: d["created_at"] for d in store.list()[0]}
    assert stored[5] == "2025-03-01T10:00:00.000+00:00" and stored[6].startswith("20")

    # Rows stored with odd times by anything (an older version, a hand edit) still export.
    for when in ("2200-01-01T00:00:00+00:00", "0001-01-01T00:00:00+00:00", "not a time"):
        store.add(label=8, png=segment_digit(8, len(when)), model_input=np.zeros((28, 28)), created_at=when)
    buffer = io.BytesIO()
    assert export_zip(store, buffer) == 5
    exported = zipfile.ZipFile(io.BytesIO(buffer.getvalue()))
    assert {info.date_time[0] for info in exported.infolist() if info.filename.startswith("8/")} <= {1980, 2107,
                                                                                                   *range(2020, 2100)}
