"""Export and import the drawings as a zip in image-folder layout: `<label>/<id>.png` plus drawings.csv.

The layout is what image-classification tools read (one folder per class), and the CSV
keeps the metadata (id, label, time, what the models read, their versions).

Import treats the zip as hostile input:
- a name is only ever matched against `<digit>/<name>.png` and used as a key, never as a
  path: nothing is extracted to disk, so "../", absolute names or links cannot escape;
- entries are counted (MAX_ENTRIES), and each is read through a bounded read of at
  most MAX_ENTRY_BYTES, whatever size its header declares, with MAX_TOTAL_BYTES over
  the whole archive: a zip bomb stops at the limit instead of filling memory;
- only stored and deflated entries are read (what the export writes). zipfile bounds each
  read of a deflated entry, but it hands a bzip2 or LZMA decompressor every compressed
  chunk whole: a 1 KB bzip2 entry made the server inflate 1 GiB in one call (issue 18
  item 3). Other methods are refused in words before anything is decompressed;
- a drawing's time (drawings.csv) must lie between 1980 (the zip format's first year) and
  tomorrow; another one skips that drawing, counted with the reason (issue 18 item 11);
- every PNG goes through the same decoding limits and preprocessing as a correction
  (drawings/corrections.py), and the label comes from its folder, checked against the CSV;
- a drawing already in the database (same PNG bytes) is skipped, so export -> import
  round-trips without duplicates.
"""
from __future__ import annotations

import csv
import datetime as _dt
import hashlib
import io
import json
import re
import zipfile
from typing import IO, Any

from drawings.corrections import save_correction
from drawings.store import DrawingStore, StoreFullError
from inference.image_io import MAX_ENCODED_BYTES, ImageInputError
from inference.predictor import Predictor

CSV_NAME = "drawings.csv"
CSV_FIELDS = ("file", "id", "label", "created_at", "held_out", "sha256", "predictions", "model_versions")
MAX_ENTRIES = 20_000  # names in one archive (the database holds at most DRAWINGS_MAX_ROWS anyway)
MAX_ENTRY_BYTES = MAX_ENCODED_BYTES  # one PNG, as for a correction
MAX_CSV_BYTES = 16 * 1024 * 1024
MAX_TOTAL_BYTES = 256 * 1024 * 1024  # decompressed bytes read from one archive, all entries together
MAX_PROBLEMS = 20  # problems listed in the answer (all are counted)
READABLE_METHODS = {zipfile.ZIP_STORED: "stored", zipfile.ZIP_DEFLATED: "deflated"}
EARLIEST = _dt.datetime(1980, 1, 1, tzinfo=_dt.timezone.utc)  # a zip entry's time cannot be earlier
_DRAWING_NAME = re.compile(r"^([0-9])/([A-Za-z0-9_-]{1,64})\.png$")


class ArchiveError(ValueError):
    """The upload is not a usable drawings archive (the message is user-facing)."""


def export_zip(store: DrawingStore, target: IO[bytes]) -> int:
    """Write every drawing into `target` as a zip; returns how many. PNGs are stored, not deflated
    (they are compressed already); the CSV is deflated."""
    rows = []
    with zipfile.ZipFile(target, "w") as archive:
        for drawing, png in store.iter_with_png():
            name = f"{drawing['label']}/{drawing['id']}.png"
            archive.writestr(zipfile.ZipInfo(name, _zip_time(drawing["created_at"])), png,
                             compress_type=zipfile.ZIP_STORED)
            rows.append({"file": name, "id": drawing["id"], "label": drawing["label"],
                         "created_at": drawing["created_at"], "held_out": int(drawing["held_out"]),
                         "sha256": drawing["sha256"] or hashlib.sha256(png).hexdigest(),
                         "predictions": json.dumps(drawing["predictions"], separators=(",", ":")),
                         "model_versions": json.dumps(drawing["model_versions"], separators=(",", ":"))})
        text = io.StringIO()
        writer = csv.DictWriter(text, fieldnames=CSV_FIELDS)
        writer.writeheader()
        writer.writerows(rows)
        archive.writestr(CSV_NAME, text.getvalue(), compress_type=zipfile.ZIP_DEFLATED)
    return len(rows)


def import_zip(store: DrawingStore, predictor: Predictor, data: bytes) -> dict[str, Any]:
    """Add the drawings of an exported zip; returns {"imported", "skipped", "problems"}."""
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
    except (zipfile.BadZipFile, ValueError, OSError):
        raise ArchiveError("The upload is not a zip file: send a zip made by GET /drawings/export "
                           "(folders 0-9 of PNG drawings, plus drawings.csv)") from None
    with archive:
        entries = archive.infolist()
        if len(entries) > MAX_ENTRIES:
            raise ArchiveError(f"The zip holds {len(entries):,} entries; the limit is {MAX_ENTRIES:,}")
        budget = _Budget(MAX_TOTAL_BYTES)
        metadata = _read_csv(archive, entries, budget)
        imported, skipped, problems = 0, 0, []

        def skip(name: str, why: str) -> None:
            nonlocal skipped
            skipped += 1
            if len(problems) < MAX_PROBLEMS:
                problems.append(f"{name[:80]!r}: {why}")

        for entry in entries:
            if entry.is_dir() or entry.filename == CSV_NAME:
                continue
            match = _DRAWING_NAME.match(entry.filename)
            if match is None:
                skip(entry.filename, "not a drawing: expected '<digit>/<name>.png'")
                continue
            label = int(match.group(1))
            row = metadata.get(entry.filename, {})
            if row.get("label") not in (None, "", str(label)):
                skip(entry.filename, f"its folder says {label} but drawings.csv says {row['label']!r:.10}")
                continue
            created_at, time_problem = _created_at(row.get("created_at"))
            if time_problem:
                skip(entry.filename, time_problem)
                continue
            try:
                png = _bounded_read(archive, entry, MAX_ENTRY_BYTES, budget)
            except ArchiveError as error:
                if budget.exhausted:
                    raise
                skip(entry.filename, str(error))
                continue
            if store.contains_png(hashlib.sha256(png).hexdigest()):
                skip(entry.filename, "already in the database")
                continue
            try:
                save_correction(store, predictor, png, label, created_at=created_at)
            except ImageInputError as error:
                skip(entry.filename, str(error))
                continue
            except StoreFullError as error:
                problems.append(str(error))
                break
            imported += 1
    return {"imported": imported, "skipped": skipped, "problems": problems}


class _Budget:
    def __init__(self, total: int):
        self.left = total
        self.exhausted = False

    def take(self, count: int) -> None:
        self.left -= count
        if self.left < 0:
            self.exhausted = True
            raise ArchiveError(f"The zip decompresses to more than {MAX_TOTAL_BYTES // (1024 * 1024)} MB; "
                               "import the drawings in smaller parts")


def _bounded_read(archive: zipfile.ZipFile, entry: zipfile.ZipInfo, limit: int, budget: _Budget) -> bytes:
    """At most `limit` bytes of `entry`, whatever its header claims (a bomb's header may lie)."""
    if entry.compress_type not in READABLE_METHODS:
        raise ArchiveError(f"it is compressed with method {entry.compress_type} (bzip2 is 12, LZMA 14); only stored "
                           "or deflated entries are read, as GET /drawings/export writes them")
    if entry.file_size > limit:
        raise ArchiveError(f"it is {entry.file_size:,} bytes; the limit is {limit:,}")
    chunks, size = [], 0
    try:
        with archive.open(entry) as handle:
            while chunk := handle.read(64 * 1024):
                size += len(chunk)
                budget.take(len(chunk))
                if size > limit:
                    raise ArchiveError(f"it decompresses to more than {limit:,} bytes")
                chunks.append(chunk)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, NotImplementedError, RuntimeError, OSError, EOFError) as error:
        # RuntimeError: an encrypted entry; NotImplementedError: an unknown compression method.
        raise ArchiveError(f"it cannot be read from the zip ({type(error).__name__})") from None
    return b"".join(chunks)


def _read_csv(archive: zipfile.ZipFile, entries: list[zipfile.ZipInfo], budget: _Budget) -> dict[str, dict[str, str]]:
    entry = next((e for e in entries if e.filename == CSV_NAME), None)
    if entry is None:
        return {}
    try:
        text = _bounded_read(archive, entry, MAX_CSV_BYTES, budget).decode("utf-8")
    except (ArchiveError, UnicodeDecodeError) as error:
        raise ArchiveError(f"{CSV_NAME} in the zip cannot be read ({error}); export the drawings again") from None
    return {row.get("file") or "": row for row in csv.DictReader(io.StringIO(text))}


def _created_at(value: str | None) -> tuple[str | None, str | None]:
    """(the time to store in UTC ISO form, or None for "now" when the CSV has none; a problem, or None)."""
    if not value:
        return None, None
    try:
        parsed = _dt.datetime.fromisoformat(value)
        if parsed.tzinfo is None:
            parsed = parsed.replace(tzinfo=_dt.timezone.utc)
        parsed = parsed.astimezone(_dt.timezone.utc)  # OverflowError: 0001-01-01T00:00:00+14:00
    except (ValueError, OverflowError):
        return None, f"its created_at {value[:40]!r} is not an ISO 8601 time"
    if not EARLIEST <= parsed <= _dt.datetime.now(_dt.timezone.utc) + _dt.timedelta(days=1):
        return None, f"its created_at {value[:40]!r} is not between 1980 and today"
    return parsed.isoformat(timespec="milliseconds"), None


def _zip_time(created_at: str) -> tuple[int, int, int, int, int, int]:
    """The zip entry time of a stored drawing, whatever its created_at holds: the zip format stores
    1980-2107 only, and an export must never fail on a stored row (a 2200 time made it answer 500)."""
    try:
        moment = _dt.datetime.fromisoformat(created_at)
    except (TypeError, ValueError):
        moment = _dt.datetime.now(_dt.timezone.utc)
    if moment.year < 1980:
        return (1980, 1, 1, 0, 0, 0)
    if moment.year > 2107:
        return (2107, 12, 31, 23, 59, 58)
    return (moment.year, moment.month, moment.day, moment.hour, moment.minute, moment.second)
