"""The database under attack and failure, against a live `python app.py` (issue 18 items 3, 4, 7, 8, 11,
12; issue 20 item 5). Each test would fail if its hole came back.

Two servers, each shared by its module's tests, which run in order:
- on SQLite (the default), its data folder on a small tmpfs where mounting is allowed: DRAWINGS_DB
  at a directory and at files the app did not make (503, untouched), then 10,000 drawings and 40
  parallel GET /drawings/stats x 3 rounds (memory), bzip2/LZMA bombs and odd times in an import, the
  file truncated, overwritten and deleted under
  8 writers (every 201 kept), and a full disk (507);
- on PostgreSQL (the session's server): the server restarted under writers (503 in words, back
  without restarting the app, every 201 kept), and the connection pool after abuse (no connection left
  out).
"""
from __future__ import annotations

import base64
import contextlib
import hashlib
import io
import os
import shutil
import sqlite3
import subprocess
import sys
import threading
import time
import zipfile
from pathlib import Path

import httpx
import numpy as np
import pytest

from tests.app_server import ROOT, copy_exports, running_app
from tests.postgres import wait_until
from tests.segments import segment_digit
from tests.test_store_sqlite import is_damaged


def correction(digit: int, seed: int) -> dict:
    return {"image": "data:image/png;base64," + base64.b64encode(segment_digit(digit, seed)).decode(),
            "label": digit}


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


class Writers:
    """`count` threads posting corrections until stopped; records (sent, answered, status, id or error)."""

    def __init__(self, url: str, count: int):
        self.url, self.results, self._stop = url, [], threading.Event()
        self._lock = threading.Lock()
        self._threads = [threading.Thread(target=self._run, args=(worker,)) for worker in range(count)]

    def __enter__(self) -> "Writers":
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join()

    def _run(self, worker: int) -> None:
        with httpx.Client(base_url=self.url, timeout=60) as http:
            seed = worker * 100_000
            while not self._stop.is_set():
                seed += 1
                sent = time.monotonic()
                try:
                    answer = http.post("/drawings", json=correction(seed % 10, seed))
                    outcome = (answer.status_code, answer.json())
                except (httpx.HTTPError, ValueError) as error:  # a reset, a body that is not JSON
                    outcome = (None, repr(error))
                with self._lock:
                    self.results.append((sent, time.monotonic(), *outcome))

    def acknowledged(self, after: float = 0.0) -> list[int]:
        with self._lock:
            return [body["id"] for sent, _, status, body in self.results if status == 201 and sent > after]

    def answered(self, after: float) -> int:
        with self._lock:
            return sum(sent > after for sent, _, _, _ in self.results)

    def statuses(self) -> set:
        with self._lock:
            return {status for _, _, status, _ in self.results}

    def refusals(self) -> list[str]:
        with self._lock:
            return [body["error"] for _, _, status, body in self.results if status == 503]


# -- SQLite ---------------------------------------------------------------------------

@pytest.fixture(scope="module")
def lite(tmp_path_factory, exports_copy):
    folder = tmp_path_factory.mktemp("lite")
    data = folder / "db"  # DRAWINGS_DB's folder, alone on it (the data location holds Gradio's cache too)
    data.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=96m", "tmpfs", str(data)],
                             capture_output=True).returncode == 0
    database = data / "drawings.sqlite3"
    database.mkdir()  # DRAWINGS_DB at a directory from the start (issue 18 item 8)
    (database / "keep.txt").write_text("precious")
    try:
        with running_app(copy_exports(exports_copy, folder / "exports"), folder / "app.log",
                         DATA_DIR=str(folder / "data"), DRAWINGS_DB=str(database),
                         PREDICT_WORKERS="0", DRAWINGS_RATE_PER_MINUTE="100000", DRAWINGS_MAX_ROWS="50000") as server:
            with httpx.Client(base_url=server.url.rstrip("/"), timeout=60) as http:
                yield {"http": http, "url": server.url.rstrip("/"), "pid": server.pid, "data": data,
                       "database": database, "mounted": mounted, "log": folder / "app.log"}
    finally:
        if mounted:
            subprocess.run(["umount", "-l", str(data)], check=False)


def stored_ids(database: Path) -> set[int]:
    """The ids in the SQLite file, read as another process would (again if it was being repaired)."""
    for attempt in range(20):
        try:
            with contextlib.closing(sqlite3.connect(f"file:{database}?mode=ro", uri=True)) as reader:
                return {row[0] for row in reader.execute("SELECT id FROM drawings")}
        except sqlite3.DatabaseError:
            time.sleep(0.25)
    raise AssertionError(f"{database} stayed unreadable")


def fingerprint(path: Path) -> tuple:
    return path.stat().st_ino, path.stat().st_mtime_ns, hashlib.sha256(path.read_bytes()).hexdigest()


def test_a_path_that_is_not_the_apps_database_is_answered_503_and_left_alone(lite, tmp_path):
    """Issue 18 item 8: DRAWINGS_DB at a directory was renamed (with its files) to *.corrupt-... on the first
    /drawings/stats, and a file the app did not make was moved aside the same way."""
    http, database, data = lite["http"], lite["database"], lite["data"]
    directory = database.stat().st_ino
    for _ in range(2):
        for answer in (http.get("/drawings/stats"), http.post("/drawings", json=correction(3, 1))):
            assert answer.status_code == 503 and "is a directory" in answer.json()["error"], answer.text
    assert database.stat().st_ino == directory and os.listdir(database) == ["keep.txt"]
    assert sorted(os.listdir(data)) == ["drawings.sqlite3"]
    assert http.post("/predict", json={"image": correction(3, 1)["image"]}).status_code == 200  # the rest serves

    shutil.rmtree(database)
    database.write_text("notes of someone else\n" * 50)
    other = tmp_path / "other.sqlite3"
    with contextlib.closing(sqlite3.connect(other)) as connection:
        connection.executescript("CREATE TABLE accounts (name TEXT); INSERT INTO accounts VALUES ('alice');")
    for foreign in ("text", "other program's SQLite"):
        if foreign != "text":
            database.unlink()
            shutil.copy(other, database)
        before = fingerprint(database)
        answer = http.post("/drawings", json=correction(3, 2))
        assert answer.status_code == 503 and "not a Digit Studio database" in answer.json()["error"], answer.text
        assert answer.headers["Retry-After"] and str(data) not in answer.text  # the reason, not the server's path
        assert http.get("/drawings/stats").status_code == 503
        assert fingerprint(database) == before and sorted(os.listdir(data)) == ["drawings.sqlite3"]

    database.unlink()  # what the answer tells the operator to do
    created = http.post("/drawings", json=correction(3, 3))
    assert created.status_code == 201, created.text
    assert http.get("/drawings/stats").json()["total"] == 1


def seeded_database(path: Path, rows: int) -> Path:
    """A database of the app's own with `rows` drawings, written in one transaction (DrawingStore.add one by
    one takes ~50 s on this busy machine); the counters are set from the rows as migration 3 does."""
    from store.sqlite import SQLiteDatabase

    database = SQLiteDatabase(path)
    rng = np.random.default_rng(0)

    def fill(tx) -> None:
        for index in range(rows):
            png = rng.integers(0, 256, 1000, dtype=np.uint8).tobytes()
            tx.execute("INSERT INTO drawings (label, png, input, created_at, sha256) VALUES (?, ?, ?, ?, ?)",
                       (index % 10, png, rng.integers(0, 256, 784, dtype=np.uint8).tobytes(),
                        "2026-01-01T00:00:00.000+00:00", hashlib.sha256(png).hexdigest()))
        tx.execute("UPDATE drawing_counts SET drawings = (SELECT count(*) FROM drawings "
                   "WHERE drawings.label = drawing_counts.label)")
        database.bump(tx, "drawings")

    database.write(fill)
    database.close()
    return path


def test_forty_parallel_stats_after_each_new_drawing_hold_memory_and_env(lite, tmp_path):
    """Issue 18 item 4: with ~10k drawings, one POST then 40 parallel GET /drawings/stats made each call
    recompute (RSS 210 MB -> 6.7 GB, answers up to 16.6 s, /env over 1 s). 3 rounds now: RSS within
    +50 MB, and all 40 answers of a round the same."""
    http, database = lite["http"], lite["database"]
    seeded = seeded_database(tmp_path / "seeded.sqlite3", 10_000)
    for side in database.parent.glob("drawings.sqlite3*"):  # run alone, the path is still the fixture's directory
        shutil.rmtree(side) if side.is_dir() else side.unlink()
    # As an operator restoring a backup: copied beside it, then renamed into place in one step (a copy
    # written straight to the path can be seen half-written by the running app, which sets it aside as
    # damaged: CI saw the file vanish under shutil.copy once). The app takes it: its own file.
    staged = database.with_name(".restore.sqlite3")
    shutil.copy(seeded, staged)
    os.replace(staged, database)
    assert http.get("/drawings/stats").json()["total"] == 10_000  # the first measure: the baseline after it
    baseline = rss_mb(lite["pid"])
    env_times, stop = [], threading.Event()

    def probe_env() -> None:
        with httpx.Client(base_url=lite["url"], timeout=30) as client:
            while not stop.is_set():
                started = time.perf_counter()
                assert client.get("/env").status_code == 200
                env_times.append(time.perf_counter() - started)
                time.sleep(0.05)

    # The 40 clients are made before the rounds: making one costs ~50 ms of CPU (its SSL context), which on
    # 2 cores delayed the server more than the 40 requests themselves.
    clients = [httpx.Client(base_url=lite["url"], timeout=60) for _ in range(40)]

    def stats(index: int) -> dict:
        return clients[index].get("/drawings/stats").json()

    prober = threading.Thread(target=probe_env)
    prober.start()
    answers, elapsed = [], []
    try:
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(40) as pool:
            for round_number in range(3):
                assert http.post("/drawings", json=correction(round_number, 7)).status_code == 201
                started = time.perf_counter()
                answers.append(list(pool.map(stats, range(40))))
                elapsed.append(time.perf_counter() - started)
    finally:
        stop.set()
        prober.join()
        for client in clients:
            client.close()
    grown = rss_mb(lite["pid"]) - baseline
    for number, batch in enumerate(answers):
        assert all(answer == batch[0] for answer in batch) and batch[0]["total"] == 10_001 + number
    print(f"\nstats rounds {[round(e, 2) for e in elapsed]} s; RSS +{grown:.0f} MB; /env max "
          f"{max(env_times) * 1000:.0f} ms, median {sorted(env_times)[len(env_times) // 2] * 1000:.0f} ms "
          f"over {len(env_times)} probes; load {os.getloadavg()[0]:.1f}")
    # The memory is what held the server down (and what the 40 copies of the measure cost); /env's latency
    # is printed, not asserted: on this shared 2-core machine it follows the other sessions' load (README).
    assert grown < 50, f"RSS grew {grown:.0f} MB"


def peak_rss_mb(pid: int, reset: bool = False) -> float:
    """The process's peak RSS (VmHWM); `reset` starts a new peak from now (Linux: clear_refs 5)."""
    if reset:
        Path(f"/proc/{pid}/clear_refs").write_text("5")
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmHWM")


def test_a_bzip2_bomb_and_odd_times_in_an_import(lite):
    """Issue 18 item 3: a zip with one bzip2 entry declaring 100 bytes inflated whole in one call (1 KB ->
    1 GiB, RSS 1.0 -> 3.0 GB). Item 11: created_at 2200 made the export 500, year 1 at +14:00 made the import
    500 partway. Now the entry is refused before it is decompressed (the peak RSS does not move), odd times
    are skipped and counted, and a stored row with an odd time still exports."""
    from tests.test_drawings_archive import compressed_bomb

    http, pid, database = lite["http"], lite["pid"], lite["database"]
    for method, words in ((12, "method 12"), (14, "method 14")):
        bomb = compressed_bomb(method)  # 32 MB of zeros, ~100 bytes compressed
        before = peak_rss_mb(pid, reset=True)
        answer = http.post("/drawings/import", content=bomb, headers={"Content-Type": "application/zip"})
        assert answer.status_code == 200 and answer.json()["skipped"] == 1, answer.text
        assert words in answer.json()["problems"][0]
        assert peak_rss_mb(pid) - before < 16, "the entry was decompressed"

    rows = {"1/a.png": "2200-01-01T00:00:00+00:00", "2/b.png": "0001-01-01T00:00:00+14:00",
            "3/c.png": "2025-03-01T12:00:00+02:00"}
    text = "file,label,created_at\n" + "".join(f"{name},{name[0]},{when}\n" for name, when in rows.items())
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w") as bundle:
        bundle.writestr("drawings.csv", text)
        for name in rows:
            bundle.writestr(name, segment_digit(int(name[0]), 4242))
    answer = http.post("/drawings/import", content=archive.getvalue(), headers={"Content-Type": "application/zip"})
    assert answer.status_code == 200 and answer.json()["imported"] == 1 and answer.json()["skipped"] == 2, answer.text
    # A row stored with an odd time by something else (an older version, a hand edit): the export holds.
    with contextlib.closing(sqlite3.connect(database)) as connection:
        connection.execute("INSERT INTO drawings (label, png, input, created_at) VALUES (8, x'00', ?, ?)",
                           (bytes(784), "2200-01-01T00:00:00+00:00"))
        connection.execute("UPDATE drawing_counts SET drawings = drawings + 1 WHERE label = 8")
        connection.commit()
    exported = http.get("/drawings/export")
    assert exported.status_code == 200
    names = zipfile.ZipFile(io.BytesIO(exported.content)).namelist()
    assert "drawings.csv" in names and any(name.startswith("8/") for name in names)


def test_damage_under_eight_writers_keeps_every_acknowledged_drawing(lite):
    """Issue 18 item 7: truncating, overwriting or deleting the file under 8 writers lost 4-8 answered rows per
    event, two repairs raced (a fresh database moved aside) and writers got 500s and resets. Now every answer
    is a 201 or a 503, every 201 sent after an event is in the database before the next one, and only
    damaged files are moved aside, at most one per event."""
    http, database, data = lite["http"], lite["database"], lite["data"]
    for side in data.glob("drawings.sqlite3*"):  # a small database (the 10,000 drawings made checks slow)
        side.unlink()
    assert http.post("/drawings", json=correction(1, 1)).status_code == 201
    missing, repairs = [], 0
    with Writers(lite["url"], 8) as writers:
        previous = time.monotonic()
        for event in ["truncate", "garbage", "delete"] * 2 + ["none"]:
            time.sleep(1.0)
            # The app has dealt with the last event once it answered a request sent a moment after it.
            assert wait_until(lambda: writers.answered(after=previous + 0.2) >= 8, timeout=60)
            due = writers.acknowledged(after=previous)
            present = stored_ids(database)
            missing += [drawing_id for drawing_id in due if drawing_id not in present]
            if event == "truncate":
                os.truncate(database, database.stat().st_size // 2)
            elif event == "garbage":
                database.write_bytes(b"garbage! " * 4000)  # in place: the same file
            elif event == "delete":
                for side in data.glob("drawings.sqlite3*"):
                    if ".corrupt-" not in side.name and ".orphan-" not in side.name:
                        side.unlink()
            repairs += event in ("truncate", "garbage")
            previous = time.monotonic()
    assert writers.statuses() <= {201, 503}, writers.statuses()
    assert missing == []
    assert len(writers.acknowledged()) > 50
    corrupt = [p for p in data.glob("drawings.sqlite3.corrupt-*") if not p.name.endswith(("-wal", "-shm"))]
    assert 1 <= len(corrupt) <= repairs and all(is_damaged(p) for p in corrupt), [p.name for p in corrupt]
    print(f"\n{len(writers.results)} posts: {len(writers.acknowledged())} 201, {len(writers.refusals())} 503")


def test_a_full_disk_is_507_in_words_and_writing_resumes(lite):
    """Issue 18 item 12: 237 answers of 500 (OperationalError) under POST /drawings with the disk full."""
    if not lite["mounted"]:
        pytest.skip("the full disk is a small tmpfs, and mounting one is not allowed here")
    http, data = lite["http"], lite["data"]
    assert http.post("/drawings", json=correction(2, 1)).status_code == 201
    before = http.get("/drawings/stats").json()["total"]
    filler = data / "filler"
    with open(filler, "wb", buffering=0) as handle:
        with contextlib.suppress(OSError):
            while True:
                handle.write(bytes(256 * 1024))
    try:
        answers = [http.post("/drawings", json=correction(seed % 10, 500 + seed)) for seed in range(60)]
        statuses = [answer.status_code for answer in answers]
        full = [answer for answer in answers if answer.status_code == 507]
        assert set(statuses) <= {201, 507} and full, statuses
        assert "disk is full" in full[0].json()["error"]
        stored = statuses.count(201)
        assert http.get("/drawings/stats").json()["total"] == before + stored  # reads go on
    finally:
        filler.unlink()
    assert http.post("/drawings", json=correction(2, 2)).status_code == 201
    assert http.get("/drawings/stats").json()["total"] == before + stored + 1


# -- PostgreSQL -------------------------------------------------------------------------

@pytest.fixture(scope="module")
def on_postgres(tmp_path_factory, exports_copy, postgres_server):
    folder = tmp_path_factory.mktemp("pg")
    url = postgres_server.new_database()
    schema_name = url.rsplit("%3D", 1)[1]
    with running_app(copy_exports(exports_copy, folder / "exports"), folder / "app.log", DATA_DIR=str(folder / "data"),
                     DATABASE_URL=url, PREDICT_WORKERS="0", DRAWINGS_RATE_PER_MINUTE="100000") as server:
        with httpx.Client(base_url=server.url.rstrip("/"), timeout=60) as http:
            yield {"http": http, "url": server.url.rstrip("/"), "pid": server.pid, "server": postgres_server,
                   "schema": schema_name, "log": folder / "app.log"}
    postgres_server.drop_database(url)


def test_the_app_runs_on_postgresql(on_postgres):
    http = on_postgres["http"]
    answer = http.post("/drawings", json=correction(5, 1))
    assert answer.status_code == 201
    rows = on_postgres["server"].execute(f"SELECT id, label FROM {on_postgres['schema']}.drawings")
    assert (answer.json()["id"], 5) in rows
    assert http.get("/env").json()["database"]["backend"] == "postgresql"
    assert not (Path(on_postgres["log"]).parent / "data" / "drawings.sqlite3").exists()  # no SQLite file


def test_postgresql_restarted_under_writers(on_postgres):
    """Issue 20 item 5: PostgreSQL crashes and restarts 5 s later while 6 clients post. Meanwhile the answers
    are 503 in words (never a 500 or a reset) and /env answers; afterwards 201 again from the same app
    process, and every drawing answered 201 is in the database. (A restart shorter than POOL_WAIT, 3 s, is
    ridden out: the requests wait for it and answer 201.)"""
    http, server = on_postgres["http"], on_postgres["server"]
    with Writers(on_postgres["url"], 6) as writers:
        time.sleep(1.0)
        server.stop("immediate")
        down = time.monotonic()
        time.sleep(1.0)
        env = http.get("/env", timeout=5)
        time.sleep(4.0)  # longer than a request waits for a connection (store/postgres.py: POOL_WAIT)
        server.start_again()
        up = time.monotonic()
        time.sleep(3.0)
    assert env.status_code == 200
    assert writers.statuses() <= {201, 503}, writers.statuses()
    refusals = writers.refusals()
    assert refusals and all("try again" in error for error in refusals)
    after = writers.acknowledged(after=up + 1.0)
    assert after, "no drawing stored after the restart"
    stored = {row[0] for row in server.execute(f"SELECT id FROM {on_postgres['schema']}.drawings")}
    assert set(writers.acknowledged()) <= stored
    print(f"\n{len(writers.results)} posts: {len(writers.acknowledged())} 201, {len(refusals)} 503 over "
          f"{up - down:.1f} s down")


def test_the_pool_leaves_no_connection_out_after_abuse(on_postgres):
    """Issue 20 item 5: 63 requests, 30 at a time (good, bad, oversized, zip bombs, clients that hang up), leave
    the pool with every connection back and PostgreSQL with no more connections than the pool's maximum."""
    from concurrent.futures import ThreadPoolExecutor

    from tests.test_drawings_archive import compressed_bomb

    url = on_postgres["url"]
    bomb = compressed_bomb(12)
    calls = [("post", "/drawings", {"json": correction(4, 9)}),
             ("post", "/drawings", {"json": {"image": "data:image/png;base64,AAAA", "label": 4}}),
             ("post", "/drawings", {"content": b"x" * (6 * 1024 * 1024)}),
             ("get", "/drawings/stats", {}), ("get", "/drawings?limit=500", {}), ("get", "/drawings/999999/image", {}),
             ("post", "/drawings/import", {"content": bomb}), ("get", "/drawings/export", {}),
             ("delete", "/drawings/999999", {})]

    def call(index: int) -> int | None:
        method, path, extra = calls[index % len(calls)]
        timeout = 0.05 if index % 7 == 0 else 60  # every seventh client hangs up early
        try:
            with httpx.Client(base_url=url, timeout=timeout) as client:
                return client.request(method, path, **extra).status_code
        except httpx.HTTPError:
            return None

    with ThreadPoolExecutor(30) as pool:
        statuses = list(pool.map(call, range(len(calls) * 7)))
    assert 500 not in statuses
    time.sleep(1.0)  # requests whose clients hung up finish on the server
    http, server = on_postgres["http"], on_postgres["server"]
    pool_state = http.get("/env").json()["database"]["pool"]
    assert pool_state["available"] == pool_state["size"] <= pool_state["max"] and pool_state["waiting"] == 0
    # A connection the pool closed (a client hung up mid-query) leaves pg_stat_activity once its backend has
    # seen it go: a moment later on a busy machine (9 listed against a pool of 8 once, during CI under load).
    def connections_within_the_pool() -> bool:
        connections = server.execute("SELECT state FROM pg_stat_activity WHERE application_name = 'digit-studio'")
        return len(connections) <= pool_state["max"] and ("idle in transaction",) not in connections

    assert wait_until(connections_within_the_pool, timeout=10, step=0.1), \
        server.execute("SELECT state FROM pg_stat_activity WHERE application_name = 'digit-studio'")
    # Besides the pool: the model versions' watcher listens on one connection of its own (NOTIFY).
    listeners = server.execute("SELECT state FROM pg_stat_activity WHERE application_name = 'digit-studio:listen'")
    assert len(listeners) <= 1, listeners
    assert http.post("/drawings", json=correction(4, 10)).status_code == 201


# -- start-up -------------------------------------------------------------------------------

def test_a_bad_database_url_stops_the_app_at_once_with_one_line(tmp_path, exports_copy):
    """Issue 20 item 5: the app answers a bad DATABASE_URL at start with one clear line and no traceback."""
    cases = {"postgresql://user:s3cret@127.0.0.1:notaport/db": "not a valid PostgreSQL address",
             "mysql://user@localhost/db": "must be a postgresql://",
             "postgresql://user:s3cret@127.0.0.1:1/db": "cannot connect to PostgreSQL at 127.0.0.1:1/db"}
    environment = {**os.environ, "EXPORTS_DIR": str(exports_copy), "DATA_DIR": str(tmp_path)}
    started = time.monotonic()
    processes = {url: subprocess.Popen([sys.executable, "app.py"], cwd=ROOT, stdout=subprocess.PIPE,
                                       stderr=subprocess.PIPE, text=True, env={**environment, "DATABASE_URL": url})
                 for url in cases}
    for url, words in cases.items():
        out, err = processes[url].communicate(timeout=120)
        lines = [line for line in err.splitlines() if line.strip()]
        assert processes[url].returncode != 0 and lines[-1].startswith("Digit Studio cannot start: "), err
        assert words in lines[-1] and "Traceback" not in err and "s3cret" not in err + out, err
    assert time.monotonic() - started < 60
