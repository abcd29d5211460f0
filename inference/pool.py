"""A small pool of prediction worker processes, so /predict uses every core.

Why processes: one /predict costs ~2 ms of CPU here, most of it Python, numpy and
Pillow holding the GIL (PNG decoding ~0.6 ms, MNIST-style preprocessing ~0.6 ms,
HTTP and JSON ~0.6 ms). One Python process therefore tops out near 430 requests/s
with 8 clients however many threads it runs. Each worker (inference/pool_worker.py)
is a lean `python -m` process with its own Predictor (no Gradio, no FastAPI); the
server process keeps only the HTTP work and forwards the image over a pipe.

Used from one asyncio event loop (the web server's). `answer()` returns None when
no worker is ready (starting, or gone for good), and the caller then answers in its
own process, so a request never waits on a pool that cannot serve it.
"""
from __future__ import annotations

import asyncio
import json
import logging
import math
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from inference.pool_worker import ANSWER_HEADER, READY_STATUS, request_frame

log = logging.getLogger(__name__)

ROOT = Path(__file__).resolve().parent.parent  # the worker runs as `python -m inference.pool_worker` from here
START_TIMEOUT = 120.0  # s: importing numpy, scipy, Pillow and onnxruntime on a busy machine
STOP_TIMEOUT = 2.0  # s: a worker exits at once when its stdin closes; after this it is killed
CGROUP_CPU_MAX = Path("/sys/fs/cgroup/cpu.max")  # "<quota> <period>" in microseconds, or "max <period>"
MAX_DEFAULT_WORKERS = 4  # the server process's own HTTP work (~0.7 ms a request) caps what more would add
# A slot whose worker fails to start, or dies within QUICK_FAILURE s of starting, waits before the
# next start: RESTART_DELAY, doubling with each failure in a row, at most MAX_RESTART_DELAY. It never
# gives up (a slot left empty for good cost a third of the throughput until a restart); meanwhile the
# other workers, or the server process when none is ready, answer.
QUICK_FAILURE = 10.0  # s
RESTART_DELAY = 0.5  # s
MAX_RESTART_DELAY = 30.0  # s
REPORT_FAILURES = 3  # failures in a row after which the log says /predict runs in the server process
RETRIES = 1  # a request whose worker died is tried once more, on another worker (or in the server process)
REQUEST_TIMEOUT = 30.0  # s: the largest image allowed takes well under 1 s; a worker this slow is stuck
STUCK_MESSAGE = f"The prediction took longer than {REQUEST_TIMEOUT:.0f} s and was stopped; try again"
# A worker dies when something outside kills it (the OOM killer, an operator): the server failed,
# not the client. (A bad image is a 400 from the worker; it does not end it.)
CRASHED_MESSAGE = ("The server failed while predicting (its prediction worker stopped and is being "
                   "restarted); this was not a problem with your image: try again")
_CRASHED = object()  # _exchange's answer when the worker died mid-request (retried once)


def default_workers() -> int:
    """PREDICT_WORKERS if set; else one more worker than usable cores, at most MAX_DEFAULT_WORKERS,
    and none (no pool) on a single core, where a pool would only add hops.

    One more than cores because a worker idles while the server process reads its answer
    and hands it the next request. Measured on this 2-core machine, 8 clients, runs
    interleaved: 1 worker 413 req/s, 2 about 540-620, 3 about 590-640, 4 no better than 3.
    Each worker holds ~50 MiB of its own memory (plus shared libraries).
    """
    configured = os.environ.get("PREDICT_WORKERS", "").strip()
    if configured:
        try:
            return max(0, int(configured))
        except ValueError:
            log.warning("PREDICT_WORKERS=%r is not a number; using the default", configured)
    cores = usable_cores()
    return min(cores + 1, MAX_DEFAULT_WORKERS) if cores >= 2 else 0


def restart_delay(failures: int) -> float:
    """Seconds a slot waits before its next start after `failures` quick failures in a row."""
    return min(MAX_RESTART_DELAY, RESTART_DELAY * 2 ** (failures - 1))


def usable_cores() -> int:
    """The cores this process may use: its CPU affinity, capped by a container's CPU quota
    (cgroup v2 cpu.max; a 2-vCPU container on a 16-core host still shows 16 CPUs otherwise)."""
    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not Linux
        cores = os.cpu_count() or 1
    try:
        quota, period = CGROUP_CPU_MAX.read_text().split()[:2]
        if quota != "max":
            cores = min(cores, max(1, math.ceil(int(quota) / int(period))))
    except (OSError, ValueError):
        pass  # no cgroup v2 quota to honour
    return cores


@dataclass(eq=False)
class _Worker:
    process: asyncio.subprocess.Process
    started: float = field(default_factory=time.monotonic)
    healthy: bool = True  # False once its pipe failed or it exited: never handed out again


class PredictionPool:
    """`size` worker processes serving the models in `exports_dir`, or with `data_dir` the versions
    kept there (the serving one, else the shipped exports_dir: as the server's predictor); see the
    module docstring."""

    def __init__(self, exports_dir: str | os.PathLike, size: int | None = None, *,
                 command: list[str] | None = None, data_dir: str | os.PathLike | None = None):
        self.exports_dir = Path(exports_dir)
        self.size = default_workers() if size is None else size
        # How a worker is started; tests pass a stand-in that misbehaves on purpose.
        self.command = command or [sys.executable, "-m", "inference.pool_worker", str(self.exports_dir),
                                   *([str(data_dir)] if data_dir is not None else [])]
        self.answered = 0  # requests the workers answered (for /env and the tests)
        self._idle: asyncio.Queue[_Worker | None] | None = None  # created on the event loop, in start()
        self._ready: set[_Worker] = set()
        self._tasks: set[asyncio.Task] = set()  # starting and watching workers
        self._closing = False
        self.waiting = 0  # requests handed to the pool and not yet answered (queued or running)

    # -- lifecycle ----------------------------------------------------------

    async def start(self) -> None:
        """Start the workers in the background and return at once (the server does not wait for them)."""
        if self._idle is not None or self.size <= 0:
            return
        self._idle = asyncio.Queue()
        for _ in range(self.size):
            self._spawn_soon()

    @property
    def ready_workers(self) -> int:
        return len(self._ready)

    def describe(self) -> dict[str, int]:
        """For GET /env: how many workers there should be, how many serve now, what they answered."""
        return {"configured": self.size, "ready": self.ready_workers, "answered": self.answered}

    def worker_pids(self) -> list[int]:
        return [worker.process.pid for worker in self._ready]

    async def close(self) -> None:
        """Stop every worker: close its stdin (it exits), kill what is still running after STOP_TIMEOUT."""
        self._closing = True
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)  # a worker still starting is killed and reaped
        workers, self._ready = list(self._ready), set()
        for worker in workers:
            worker.healthy = False
            if worker.process.stdin is not None:
                worker.process.stdin.close()
        for worker in workers:
            try:
                await asyncio.wait_for(worker.process.wait(), STOP_TIMEOUT)
            except asyncio.TimeoutError:
                worker.process.kill()
                await worker.process.wait()

    def _spawn_soon(self) -> None:
        task = asyncio.get_running_loop().create_task(self._run_slot())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _run_slot(self) -> None:
        """One worker slot: start a worker, hand it out while it lives, start another when it dies,
        waiting longer after each quick failure in a row (see RESTART_DELAY)."""
        failures = 0
        while not self._closing:
            worker = await self._start_worker()
            if worker is not None:
                self._ready.add(worker)
                self._idle.put_nowait(worker)
                await worker.process.wait()
                worker.healthy = False
                self._ready.discard(worker)
                if self._closing:
                    return
                log.warning("prediction worker %d exited with code %s; starting a new one",
                            worker.process.pid, worker.process.returncode)
            quick = worker is None or time.monotonic() - worker.started < QUICK_FAILURE
            failures = failures + 1 if quick else 0
            if not self._ready:
                self._wake_waiters()  # requests queued for a worker are answered in the server process
            if failures:
                delay = restart_delay(failures)
                if failures == REPORT_FAILURES:
                    log.error("prediction workers keep failing; retrying every %.0f s at most, and /predict is "
                              "answered by the other workers or the server process meanwhile", MAX_RESTART_DELAY)
                await asyncio.sleep(delay)

    def _wake_waiters(self) -> None:
        """No worker is ready: each queued request gets None from the queue and is answered in-process."""
        for _ in range(self.waiting):
            self._idle.put_nowait(None)

    async def _start_worker(self) -> _Worker | None:
        environment = {**os.environ, "PYTHONUNBUFFERED": "1"}
        try:
            process = await asyncio.create_subprocess_exec(
                *self.command, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, cwd=ROOT, env=environment)
        except (OSError, NotImplementedError) as exc:  # NotImplementedError: an event loop without subprocesses
            log.error("cannot start a prediction worker: %r", exc)
            return None
        worker = _Worker(process)
        try:
            status, _ = await asyncio.wait_for(self._read_answer(worker), START_TIMEOUT)
        except asyncio.CancelledError:  # the server stops while this worker starts
            process.kill()
            await process.wait()
            raise
        except (asyncio.TimeoutError, asyncio.IncompleteReadError, ConnectionError) as exc:
            log.error("prediction worker %d did not start (%s)", process.pid, type(exc).__name__)
            status = None
        if status != READY_STATUS:
            if process.returncode is None:
                process.kill()
            await process.wait()
            return None
        if self._closing:
            process.stdin.close()
            await process.wait()
            return None
        return worker

    # -- requests -----------------------------------------------------------

    async def answer(self, image: str, model: str, invert: bool, *,
                     include_input: bool = False, explain: bool = False) -> tuple[int, bytes] | None:
        """(HTTP status, JSON body) from a worker, or None when no worker can take it (answer it yourself)."""
        if not self._ready:
            return None
        frame = request_frame(image, model, invert, include_input, explain)
        crashes = 0
        self.waiting += 1
        try:
            while self._ready:
                worker = await self._idle.get()
                if worker is None:
                    break  # no worker is ready any more (see _wake_waiters)
                if not worker.healthy:
                    continue  # it died while idle; its slot is replacing it
                # Shielded: if the client goes away mid-request, the exchange still completes,
                # so the worker's answer is read and the pipe stays in step for the next request.
                result = await asyncio.shield(self._exchange(worker, frame))
                if result is _CRASHED:
                    crashes += 1
                    if crashes > RETRIES:
                        return 503, json.dumps({"error": CRASHED_MESSAGE}).encode()
                    continue  # once more: on another worker, or (none ready) in the server process
                if result is not None:
                    return result
            return None
        finally:
            self.waiting -= 1

    async def _exchange(self, worker: _Worker, frame: bytes) -> tuple[int, bytes] | object | None:
        """Send one request and read its answer. None if the worker was already gone (try another),
        _CRASHED if it died during the request."""
        stdin = worker.process.stdin
        try:
            stdin.write(frame)
            await stdin.drain()
        except (ConnectionError, RuntimeError):
            worker.healthy = False
            return None
        try:
            answer = await asyncio.wait_for(self._read_answer(worker), REQUEST_TIMEOUT)
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.TimeoutError) as exc:
            worker.healthy = False
            stuck = isinstance(exc, asyncio.TimeoutError)
            log.error("prediction worker %d %s", worker.process.pid,
                      f"gave no answer in {REQUEST_TIMEOUT:.0f} s" if stuck else "stopped during a request")
            if worker.process.returncode is None:
                worker.process.kill()  # no or half an answer: its pipe is out of step, it cannot be used again
            if stuck:  # not retried: the image that took 30 s would take as long again elsewhere
                return 503, json.dumps({"error": STUCK_MESSAGE}).encode()
            return _CRASHED
        self._idle.put_nowait(worker)
        self.answered += 1
        return answer

    @staticmethod
    async def _read_answer(worker: _Worker) -> tuple[int, bytes]:
        stdout = worker.process.stdout
        length, status = ANSWER_HEADER.unpack(await stdout.readexactly(ANSWER_HEADER.size))
        return status, await stdout.readexactly(length)
