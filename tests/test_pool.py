"""inference/pool.py: real worker processes answer exactly as the server process would,
pick up new exports, are replaced when they die, and never leave a request hanging."""
from __future__ import annotations

import asyncio
import contextlib
import base64
import json
import os
import sys
import textwrap
import time
from pathlib import Path

import pytest

from inference import pool as pool_module
from inference.answer import encode, predict_answer
from inference.pool import CRASHED_MESSAGE, PredictionPool, default_workers
from inference.pool_worker import READY_STATUS
from inference.predictor import Predictor
from tests.fakes import sample_drawings, write_tiny_model

READY_TIMEOUT = 120.0  # s: a worker imports numpy, scipy, Pillow and onnxruntime; a busy machine is slow


def as_data_url(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode()


def without_latency(body: bytes) -> dict:
    """The JSON answer minus its timings, which differ between any two runs."""
    payload = json.loads(body)
    payload.pop("latency_ms", None)
    for entry in payload.get("predictions", {}).values():
        entry.pop("latency_ms", None)
    return payload


async def ready(pool: PredictionPool, count: int) -> None:
    deadline = time.monotonic() + READY_TIMEOUT
    while pool.ready_workers < count:
        assert time.monotonic() < deadline, f"{pool.ready_workers} of {count} workers ready after {READY_TIMEOUT} s"
        await asyncio.sleep(0.05)


@contextlib.asynccontextmanager
async def started_pool(exports: Path, size: int, *, command: list[str] | None = None):
    """A pool whose workers are all ready, closed at the end of the block."""
    pool = PredictionPool(exports, size, command=command)
    await pool.start()
    try:
        await ready(pool, size)
        yield pool
    finally:
        await pool.close()


async def gone(pid: int, what: str) -> None:
    """Wait (at most 10 s) until process `pid` has ended; `what` says what went wrong if not."""
    deadline = time.monotonic() + 10
    while running(pid):
        assert time.monotonic() < deadline, what
        await asyncio.sleep(0.01)


def running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


@pytest.fixture
def tiny_exports(empty_exports) -> Path:
    write_tiny_model(empty_exports, "model1", seed=3)
    write_tiny_model(empty_exports, "model2", seed=4)
    return empty_exports


def stand_in_worker(tmp_path: Path, behaviour: str) -> list[str]:
    """A command for a fake worker that says READY, then `behaviour` (Python) on the first request."""
    script = tmp_path / "stand_in_worker.py"
    script.write_text(textwrap.dedent(f"""
        import struct, sys
        sys.stdout.buffer.write(struct.pack(">IH", 2, {READY_STATUS}) + b"{{}}")
        sys.stdout.buffer.flush()
        sys.stdin.buffer.read(4)
        {behaviour}
    """))
    return [sys.executable, str(script)]


def test_workers_answer_exactly_like_the_server_process(tiny_exports):
    predictor = Predictor(tiny_exports)
    huge = b"\x89PNG\r\n\x1a\n" + b"\x00\x00\x00\rIHDR" + (50000).to_bytes(4, "big") * 2 + b"\x08\x06\x00\x00\x00"
    images = [as_data_url(png) for png in sample_drawings()]
    cases = [(image, model, invert) for image in images for model in ("model1", "model2", "all")
             for invert in (False, True)]
    cases += [("not base64!", "model1", False), (images[0], "model9", False), (as_data_url(huge), "model2", False),
              (as_data_url(sample_drawings()[0])[:200], "model2", False), ("\ud800 lone surrogate", "model1", False),
              ("data:image/png;base64,é", "model1", False)]

    async def scenario():
        async with started_pool(tiny_exports, 2) as pool:
            return await asyncio.gather(*(pool.answer(*case) for case in cases)), pool.answered

    answers, answered = asyncio.run(scenario())
    assert answered == len(cases)
    statuses = set()
    for case, (status, body) in zip(cases, answers):
        expected_status, expected = predict_answer(predictor, *case)
        assert status == expected_status, case[1:]
        assert without_latency(body) == without_latency(encode(expected))
        statuses.add(status)
    assert statuses == {200, 400, 422}  # good drawings, bad base64 / bomb / truncated PNG, unknown model


def test_workers_serve_a_new_export_without_a_restart(tiny_exports):
    image = as_data_url(sample_drawings()[1])

    async def scenario():
        async with started_pool(tiny_exports, 2) as pool:
            before = await asyncio.gather(*(pool.answer(image, "model1", False) for _ in range(4)))
            write_tiny_model(tiny_exports, "model1", digit=7)
            after = await asyncio.gather(*(pool.answer(image, "model1", False) for _ in range(4)))
            return before, after

    before, after = asyncio.run(scenario())
    assert all(status == 200 for status, _ in before + after)
    assert {json.loads(body)["prediction"] for _, body in after} == {7}  # both workers, at once
    assert {json.loads(body)["prediction"] for _, body in before} != {7}


def test_a_killed_worker_is_replaced_and_requests_keep_being_answered(tiny_exports):
    image = as_data_url(sample_drawings()[0])

    async def scenario():
        async with started_pool(tiny_exports, 2) as pool:
            first = pool.worker_pids()
            os.kill(first[0], 9)
            deadline = time.monotonic() + 30
            while first[0] in pool.worker_pids():  # noticed within milliseconds
                assert time.monotonic() < deadline
                await asyncio.sleep(0.01)
            answers = [await pool.answer(image, "model2", False) for _ in range(6)]
            await ready(pool, 2)
            return first, pool.worker_pids(), answers

    first, now, answers = asyncio.run(scenario())
    assert first[0] not in now and first[1] in now and len(now) == 2
    assert [status for status, _ in answers] == [200] * 6  # the survivor (and the new one) served them


def test_a_worker_dying_mid_request_is_a_503_then_the_server_takes_over(tmp_path):
    # This stand-in dies on its first request, every time: a 503 each, and after
    # MAX_QUICK_FAILURES the pool stops restarting it and wakes whoever still waits.
    command = stand_in_worker(tmp_path, "sys.exit(9)")

    async def scenario():
        async with started_pool(tmp_path, 1, command=command) as pool:
            answers = await asyncio.wait_for(asyncio.gather(*(
                pool.answer("x", "model1", False) for _ in range(pool_module.MAX_QUICK_FAILURES + 2))), 60)
            return answers, pool.ready_workers, await pool.answer("x", "model1", False)

    answers, ready_after, later = asyncio.run(scenario())
    crashed = [answer for answer in answers if answer is not None]
    assert len(crashed) == pool_module.MAX_QUICK_FAILURES
    assert all(status == 503 and json.loads(body)["error"] == CRASHED_MESSAGE for status, body in crashed)
    assert answers.count(None) == 2  # woken when the pool gave up: answered by the server instead
    assert ready_after == 0 and later is None


def test_workers_that_cannot_start_leave_every_request_to_the_server(tmp_path):
    async def scenario():
        pool = PredictionPool(tmp_path, 2, command=[sys.executable, "-c", "import sys; sys.exit(3)"])
        await pool.start()
        try:
            deadline = time.monotonic() + 60
            while pool._tasks:  # starting, failing and restarting until it gives up
                assert time.monotonic() < deadline
                await asyncio.sleep(0.05)
            return pool.ready_workers, await pool.answer("x", "model1", False)
        finally:
            await pool.close()

    assert asyncio.run(scenario()) == (0, None)


def test_a_worker_that_answers_garbage_is_dropped_not_trusted(tmp_path):
    # A worker that says "READY" and then closes its stdout mid-answer: the frame is incomplete.
    command = stand_in_worker(tmp_path, "sys.stdout.buffer.write(struct.pack('>IH', 100, 200) + b'{'); "
                                        "sys.stdout.buffer.flush(); import os, time; os.close(1); time.sleep(5)")

    async def scenario():
        async with started_pool(tmp_path, 1, command=command) as pool:
            pid = pool.worker_pids()[0]
            answer = await asyncio.wait_for(pool.answer("x", "model1", False), 30)
            await gone(pid, "the broken worker was left running")
            return pid, answer

    pid, (status, body) = asyncio.run(scenario())
    assert status == 503 and json.loads(body)["error"] == CRASHED_MESSAGE
    assert not running(pid)  # killed at once: its pipe is out of step, so it never answers again


def test_close_stops_every_worker(tiny_exports):
    async def scenario():
        pool = PredictionPool(tiny_exports, 2)
        await pool.start()
        await ready(pool, 2)
        pids = pool.worker_pids()
        await pool.close()
        return pids, pool.ready_workers, await pool.answer("x", "model1", False)

    pids, ready_after, answer = asyncio.run(scenario())
    assert len(pids) == 2 and not any(running(pid) for pid in pids)
    assert ready_after == 0 and answer is None


def test_a_stuck_worker_is_stopped_and_the_request_answered(tmp_path, monkeypatch):
    monkeypatch.setattr(pool_module, "REQUEST_TIMEOUT", 0.5)
    command = stand_in_worker(tmp_path, "import time; time.sleep(60)")

    async def scenario():
        async with started_pool(tmp_path, 1, command=command) as pool:
            pid = pool.worker_pids()[0]
            answer = await asyncio.wait_for(pool.answer("x", "model1", False), 30)
            await gone(pid, "the stuck worker was left running")
            return answer

    status, body = asyncio.run(scenario())
    assert status == 503 and json.loads(body)["error"] == pool_module.STUCK_MESSAGE


@pytest.mark.skipif(not Path("/proc/self/task").exists(), reason="reads child processes from Linux /proc")
def test_closing_while_workers_start_leaves_no_process_behind(tiny_exports):
    def workers_running() -> list[int]:
        children = [int(pid) for task in Path("/proc/self/task").iterdir()
                    for pid in (task / "children").read_text().split()]
        running = []
        for pid in children:
            try:
                if b"inference.pool_worker" in Path(f"/proc/{pid}/cmdline").read_bytes():
                    running.append(pid)
            except OSError:
                pass  # it ended while we looked
        return running

    async def scenario():
        pool = PredictionPool(tiny_exports, 2)
        await pool.start()
        deadline = time.monotonic() + 30
        while len(workers_running()) < 2:  # started, still importing: not ready yet
            assert time.monotonic() < deadline
            await asyncio.sleep(0.01)
        starting = pool.ready_workers
        await pool.close()
        return starting

    assert asyncio.run(scenario()) == 0
    assert workers_running() == []


def test_worker_count_comes_from_predict_workers(monkeypatch):
    monkeypatch.setenv("PREDICT_WORKERS", "3")
    assert default_workers() == 3
    monkeypatch.setenv("PREDICT_WORKERS", "0")
    assert default_workers() == 0
    monkeypatch.setenv("PREDICT_WORKERS", "lots")
    monkeypatch.setattr(pool_module, "usable_cores", lambda: 2)
    assert default_workers() == 3
    monkeypatch.delenv("PREDICT_WORKERS")
    monkeypatch.setattr(pool_module, "usable_cores", lambda: 64)
    assert default_workers() == pool_module.MAX_DEFAULT_WORKERS
    monkeypatch.setattr(pool_module, "usable_cores", lambda: 1)
    assert default_workers() == 0  # one core: a pool would only add hops


def test_usable_cores_honour_a_container_cpu_quota(tmp_path, monkeypatch):
    monkeypatch.setattr(pool_module.os, "sched_getaffinity", lambda pid: set(range(16)), raising=False)
    cpu_max = tmp_path / "cpu.max"
    monkeypatch.setattr(pool_module, "CGROUP_CPU_MAX", cpu_max)
    assert pool_module.usable_cores() == 16  # no cgroup file
    for quota, expected in (("200000 100000", 2), ("150000 100000", 2), ("50000 100000", 1), ("max 100000", 16),
                            ("3200000 100000", 16), ("garbage", 16)):
        cpu_max.write_text(quota + "\n")
        assert pool_module.usable_cores() == expected, quota
