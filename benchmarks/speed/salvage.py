"""What repairing a damaged SQLite drawings database costs, and what it keeps (store/salvage.py).

    python -m benchmarks.speed.salvage [--drawings 10000] [--png-bytes 10000] [--torn 3]

Fills a new database in a temporary folder with that many drawings (random PNG bytes of that size),
closes it, tears `--torn` pages spread through the file (their first 20 bytes kept, the rest
overwritten), then times the first request of a new store on it: the quick check, setting the file
aside and copying the rows it still gives. Prints one JSON line; nothing outside the folder is written.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def measure(drawings: int, png_bytes: int, torn: int) -> dict:
    from drawings.store import DrawingStore
    from store.sqlite import SQLiteDatabase

    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "drawings.sqlite3"
        store = DrawingStore(SQLiteDatabase(path), max_rows=drawings)
        random = np.random.default_rng(0)
        for index in range(drawings):
            store.add(label=index % 10, png=random.bytes(png_bytes), model_input=np.zeros((28, 28), np.float32))
        store.database.close()
        data = bytearray(path.read_bytes())
        page_size = int.from_bytes(data[16:18], "big")
        pages = len(data) // page_size
        for k in range(1, torn + 1):
            page = pages * k // (torn + 1)
            data[page * page_size + 20:(page + 1) * page_size] = b"\xa5" * (page_size - 20)
        path.write_bytes(bytes(data))
        fresh = DrawingStore(SQLiteDatabase(path), max_rows=drawings)
        started = time.perf_counter()
        kept = fresh.count()
        seconds = time.perf_counter() - started
        return {"drawings": drawings, "file_mib": round(len(data) / 2 ** 20, 1), "torn_pages": torn,
                "kept": kept, "first_request_seconds": round(seconds, 2)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.speed.salvage", description=__doc__.splitlines()[0])
    parser.add_argument("--drawings", type=int, default=10_000)
    parser.add_argument("--png-bytes", type=int, default=10_000)
    parser.add_argument("--torn", type=int, default=3)
    args = parser.parse_args(argv)
    if args.drawings < 1 or args.png_bytes < 1 or args.torn < 0:
        parser.error("--drawings and --png-bytes must be positive, --torn not negative")
    print(json.dumps(measure(args.drawings, args.png_bytes, args.torn)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
