"""Training jobs across replicas (training/job_board.py, issue 20 item 3), on SQLite and on a real
PostgreSQL: two job managers on one database stand for two replicas (each with its own connection
and lock handles, as two processes have); a killed replica is a real process killed with SIGKILL.

- A run on A shows on B with its progress, and ends there as it ends on A.
- B's start of the same model is refused while A's runs, and works once it is over.
- B's cancel stops A's run.
- A replica killed mid-run frees the model: B marks the run failed and may train.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time

import pytest

from store import open_database
from tests.fakes import FakeTrainer, fake_progress, fake_result
from training.job_board import JobBoard
from training.jobs import JobAlreadyRunningError, JobManager

WAIT = 15.0  # s: the board is polled every 0.5 s; this only keeps a broken test from hanging


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request, tmp_path):
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'db' / 'app.sqlite3'}"
        return
    server = request.getfixturevalue("postgres_server")
    url = server.new_database()
    yield url
    server.drop_database(url)


@pytest.fixture
def replicas(database_url, monkeypatch):
    """Two job managers ("A" and "B") over one database. On PostgreSQL each has a database object (a pool)
    of its own, as two processes do; on SQLite they share the process's one (store.shared_database gives
    one per file: the object guards the file for its process), and the file locks still exclude each
    other (flock is per open file). The killed-replica test adds a real second process."""
    fake = FakeTrainer(monkeypatch)
    managers, databases = [], []
    for name in ("A", "B"):
        if not databases or database_url.startswith("postgresql"):
            databases.append(open_database(database_url))
            databases[-1].ensure_ready()
        managers.append(JobManager(models={"fake": fake.spec}, board=JobBoard(databases[-1], name)))
    yield fake, managers[0], managers[1]
    for manager in managers:
        manager.shutdown(timeout=5)
    for database in databases:
        database.close()


def wait_until(condition, what: str):
    deadline = time.monotonic() + WAIT
    while not condition():
        assert time.monotonic() < deadline, what() if callable(what) else what
        time.sleep(0.05)


def stepped_script(release: threading.Event, steps: int = 3):
    """A run that reports its first step, waits for `release`, then reports the rest and succeeds."""
    def script(options):
        yield fake_progress(1, steps)
        release.wait(WAIT)
        for step in range(2, steps + 1):
            yield fake_progress(step, steps)
        yield fake_result("fake", accuracy=0.91)
    return script


def test_a_run_on_one_replica_shows_on_the_other_and_its_start_is_refused_there(replicas):
    fake, a, b = replicas
    release = threading.Event()
    fake.script = stepped_script(release)
    a.start("fake")
    wait_until(lambda: b.status("fake")["running"] and b.status("fake")["progress"] > 0,
               "B did not see A's run with its progress")
    seen = b.status("fake")
    assert seen["replica"] == "A" and seen["status"] == "Epoch 1/3" and a.status("fake")["replica"] is None
    with pytest.raises(JobAlreadyRunningError, match="another replica"):
        b.start("fake")
    release.set()
    wait_until(lambda: b.status("fake")["state"] == "succeeded", "B did not see A's run end")
    ended = b.status("fake")
    assert ended["accuracy"] == pytest.approx(0.91) and ended["progress"] == 100
    statuses = [event["status"] for event in ended["history"]]
    assert statuses[0] == "Starting" and "Epoch 3/3" in statuses and ended["history"][-1]["state"] == "succeeded"
    assert b.wait_for_update("fake", 0, 0.1)[0]  # the waits the Train tab uses follow the mirrored run too
    # The model is free again: B trains it, and A now sees B's run.
    fake.script = lambda options: iter([fake_result("fake")])
    b.start("fake")
    assert b.join("fake", WAIT) and b.status("fake")["state"] == "succeeded"
    wait_until(lambda: a.status("fake")["replica"] == "B",
               lambda: f"A did not see B's run: {a.status('fake')} / {a.board.rows()}")


def test_a_cancel_on_the_other_replica_stops_the_run(replicas):
    fake, a, b = replicas

    def endless(options):
        step = 0
        while True:
            step += 1
            yield fake_progress(min(step, 99), 100)
            time.sleep(0.05)

    fake.script = endless
    a.start("fake")
    wait_until(lambda: b.status("fake")["running"], "B did not see A's run")
    assert b.cancel("fake") is True
    assert a.join("fake", WAIT) and a.status("fake")["state"] == "cancelled"
    assert fake.exited_early.is_set()  # the trainer was stopped, not left running
    wait_until(lambda: b.status("fake")["state"] == "cancelled", "B did not see the cancel end the run")


KILLED_REPLICA = """
import sys, time
from store import open_database
from training.job_board import JobBoard
database = open_database(sys.argv[1])
database.ensure_ready()
board = JobBoard(database, "doomed")
lock = board.claim("fake")
assert lock is not None
board.start("fake", {"state": "running", "progress": 40.0, "status": "Epoch 2/5", "history": [],
                     "started_at": time.time(), "finished_at": None})
print("training", flush=True)
time.sleep(600)
"""


def test_a_replica_killed_mid_run_frees_the_model(replicas, database_url):
    fake, a, b = replicas
    doomed = subprocess.Popen([sys.executable, "-c", KILLED_REPLICA, database_url], stdout=subprocess.PIPE,
                              text=True, cwd=os.getcwd())
    try:
        assert doomed.stdout.readline().strip() == "training"
        wait_until(lambda: b.status("fake")["running"], "B did not see the doomed replica's run")
        with pytest.raises(JobAlreadyRunningError):
            b.start("fake")
        os.kill(doomed.pid, signal.SIGKILL)
        doomed.wait(10)
        killed_at = time.monotonic()
        wait_until(lambda: b.status("fake")["state"] == "failed", "the dead replica's run was not marked failed")
        assert time.monotonic() - killed_at < 5
        assert "stopped before the run ended" in b.status("fake")["error"]
        wait_until(lambda: a.status("fake")["state"] == "failed", "A did not see it either")
        fake.script = lambda options: iter([fake_result("fake")])
        b.start("fake")
        assert b.join("fake", WAIT) and b.status("fake")["state"] == "succeeded"
    finally:
        if doomed.poll() is None:
            doomed.kill()


def test_without_a_database_the_run_goes_on_and_says_nothing_to_anyone(monkeypatch, tmp_path):
    """The board's database down (a SQLite path that cannot be created) costs the board, not the run."""
    fake = FakeTrainer(monkeypatch)
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the database's folder would be")
    database = open_database(f"sqlite:///{blocker / 'app.sqlite3'}")
    manager = JobManager(models={"fake": fake.spec}, board=JobBoard(database, "A"))
    fake.script = lambda options: iter([fake_progress(1), fake_result("fake")])
    manager.start("fake")
    assert manager.join("fake", WAIT) and manager.status("fake")["state"] == "succeeded"
    manager.shutdown()


# -- live replicas: two `python app.py` on one PostgreSQL -----------------------------------------------

@pytest.mark.slow
def test_two_replicas_share_a_training_and_a_killed_one_frees_the_model(postgres_server, exports_copy, tmp_path,
                                                                       mnist_dir):
    """A quick Model 1 training started on replica A: B's /train_status follows it live, B's start is a
    409; A killed with SIGKILL mid-run: within seconds B reports the run failed, still serves the previous
    version, and trains the model itself."""
    import httpx

    from tests.app_server import copy_exports, running_apps

    url = postgres_server.new_database()
    try:
        env = {"DATABASE_URL": url, "PREDICT_WORKERS": "0", "EXPLAIN_WORKERS": "0"}
        apps = [(copy_exports(exports_copy, tmp_path / f"exports{i}"), tmp_path / f"app{i}.log", env) for i in "AB"]
        with running_apps(apps) as (a, b):
            # The default (full) options: a run long enough to be killed halfway, whatever the machine.
            started = httpx.post(a.url + "train/model1", json={}, timeout=30)
            assert started.status_code == 202, started.text
            deadline = time.monotonic() + 120
            while True:
                seen = httpx.get(b.url + "train_status/model1", timeout=30).json()
                if seen["running"] and seen["progress"] > 0:
                    break
                assert time.monotonic() < deadline, f"B did not see A's run: {seen}"
                time.sleep(0.2)
            assert seen["replica"] and seen["history"], seen
            # B's Train tab follows it live: its follower (the page's watch_model1 event) streams the run.
            assert train_tab_progress(b.url, "model1") > 0
            refused = httpx.post(b.url + "train/model1", json={"preset": "quick"}, timeout=30)
            assert refused.status_code == 409 and "another replica" in refused.json()["error"], refused.text
            later = httpx.get(b.url + "train_status/model1", timeout=30).json()
            assert later["progress"] >= seen["progress"]  # live: it moves on B as it moves on A

            os.kill(a.pid, signal.SIGKILL)
            killed_at = time.monotonic()
            while (status := httpx.get(b.url + "train_status/model1", timeout=30).json())["state"] != "failed":
                assert time.monotonic() - killed_at < 10, f"the run was not marked failed: {status}"
                time.sleep(0.2)
            assert "stopped before the run ended" in status["error"]
            served = httpx.get(b.url + "model_status", timeout=30).json()["model1"]
            assert served["available"] and served["version"] == 1  # the previous model, unchanged
            again = httpx.post(b.url + "train/model1", json={"preset": "quick"}, timeout=30)
            assert again.status_code == 202, again.text
            httpx.post(b.url + "train/model1/cancel", timeout=30)
    finally:
        postgres_server.drop_database(url)


def train_tab_progress(base: str, model: str, timeout: float = 60.0) -> float:
    """Join the Train tab's follower of `model` (watch_<model>, as the page does when the tab opens) and
    return the first training progress it streams (the Progress slider's value)."""
    import json as _json
    import uuid

    import httpx

    config = httpx.get(base + "config", timeout=30).json()
    fn_index = next(dep["id"] for dep in config["dependencies"] if dep.get("api_name") == f"watch_{model}")
    session = uuid.uuid4().hex
    joined = httpx.post(base + "gradio_api/queue/join", timeout=30, json={
        "data": [""], "fn_index": fn_index, "session_hash": session, "event_data": None, "trigger_id": None})
    assert joined.status_code == 200, joined.text
    deadline = time.monotonic() + timeout
    seen = []
    with httpx.stream("GET", base + f"gradio_api/queue/data?session_hash={session}", timeout=timeout) as stream:
        for line in stream.iter_lines():
            assert time.monotonic() < deadline, f"the Train tab streamed no progress: {seen[-5:]}"
            if not line.startswith("data:"):
                continue
            message = _json.loads(line[5:])
            seen.append(str(message)[:300])
            output = (message.get("output") or {}).get("data") or []
            if message.get("msg") == "process_generating" and output:
                progress = _streamed_value(output[0])
                if isinstance(progress, (int, float)) and not isinstance(progress, bool) and progress > 0:
                    return float(progress)
    raise AssertionError(f"the Train tab's stream ended without progress: {seen[-5:]}")


def _streamed_value(item):
    """A streamed output's value: Gradio sends the first whole and later ones as diffs
    ([["replace", [], value], ...])."""
    if isinstance(item, list):
        for op in item:
            if isinstance(op, list) and len(op) == 3 and op[0] == "replace" and op[1] == []:
                return op[2]
        return None
    return item
