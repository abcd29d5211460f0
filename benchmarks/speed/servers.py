"""Servers under test: started as subprocesses on a free loopback port, always stopped.

Every server runs in its own process group, so stopping it also stops anything
it spawned; `ServerProcess` is a context manager and stops the group even when
the benchmark fails half-way.
"""
from __future__ import annotations

import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from benchmarks.machine import process_group_rss

ROOT = Path(__file__).resolve().parents[2]
HOST = "127.0.0.1"  # loopback only: benchmarks never send traffic anywhere else


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


def request(port: int, method: str, path: str, body: Any = None, *, timeout: float = 10.0,
            headers: dict[str, str] | None = None) -> tuple[int, Any]:
    """One HTTP request on a fresh connection; returns (status, parsed JSON or raw text)."""
    connection = http.client.HTTPConnection(HOST, port, timeout=timeout)
    try:
        payload = None if body is None else (body if isinstance(body, bytes) else json.dumps(body).encode())
        all_headers = {"Content-Type": "application/json", **(headers or {})}
        connection.request(method, path, body=payload, headers=all_headers)
        response = connection.getresponse()
        raw = response.read()
        try:
            return response.status, json.loads(raw)
        except ValueError:
            return response.status, raw.decode("utf-8", "replace")
    finally:
        connection.close()


class ServerStartError(RuntimeError):
    pass


class ServerProcess:
    """A server subprocess in its own process group.

        with ServerProcess("app", [sys.executable, "app.py"], port, env=..., log_path=...) as server:
            seconds = server.wait_until(lambda: ..., timeout=60)
    """

    def __init__(self, name: str, argv: list[str], port: int, *, env: dict[str, str] | None = None,
                 log_path: Path, cwd: Path = ROOT):
        self.name = name
        self.argv = argv
        self.port = port
        self.env = env
        self.log_path = log_path
        self.cwd = cwd
        self.process: subprocess.Popen | None = None
        self.started_at: float | None = None

    def start(self) -> "ServerProcess":
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        log = open(self.log_path, "wb")
        try:
            self.started_at = time.perf_counter()
            self.process = subprocess.Popen(self.argv, cwd=self.cwd, env=self.env, stdin=subprocess.DEVNULL,
                                            stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                                            preexec_fn=_die_with_parent)
        finally:
            log.close()  # the child holds its own copy
        return self

    def wait_until(self, ready, *, timeout: float, interval: float = 0.05) -> float:
        """Poll `ready()` until it returns True; seconds since start. Raises if the server dies or times out."""
        deadline = self.started_at + timeout
        while True:
            if self.process.poll() is not None:
                raise ServerStartError(f"{self.name} exited with code {self.process.returncode} before it was "
                                       f"ready; last log lines:\n{self.log_tail()}")
            try:
                if ready():
                    return time.perf_counter() - self.started_at
            except (OSError, http.client.HTTPException):
                pass  # not listening yet
            if time.perf_counter() > deadline:
                raise ServerStartError(f"{self.name} not ready after {timeout:.0f} s; last log lines:\n"
                                       f"{self.log_tail()}")
            time.sleep(interval)

    def rss_bytes(self) -> int:
        return process_group_rss(self.process.pid) if self.process else 0

    def stop(self, grace: float = 10.0) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        try:
            os.killpg(self.process.pid, signal.SIGTERM)
            self.process.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=grace)
        except ProcessLookupError:
            pass
        finally:
            # Children that outlived the leader would keep the port and the CPU.
            try:
                os.killpg(self.process.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass

    def log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def __enter__(self) -> "ServerProcess":
        if self.process is None:
            self.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self.stop()


def _die_with_parent() -> None:
    """In the child: get SIGTERM when the benchmark process dies, even by SIGKILL (Linux only).

    A server in its own session would otherwise outlive a benchmark killed by a timeout.
    """
    try:
        import ctypes

        PR_SET_PDEATHSIG = 1
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    except (OSError, AttributeError):
        pass


class RssSampler:
    """Peak resident memory of a server while a block runs (sampled every 0.2 s)."""

    def __init__(self, server: ServerProcess, interval: float = 0.2):
        self.server, self.interval, self.peak = server, interval, 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while True:
            self.peak = max(self.peak, self.server.rss_bytes())
            if self._stop.wait(self.interval):
                return

    def __enter__(self) -> "RssSampler":
        self._thread.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self._stop.set()
        self._thread.join(5)


def server_env(**overrides: str) -> dict[str, str]:
    """The environment for a server under test: ours, minus anything that would change what we measure."""
    env = dict(os.environ)
    env.pop("TRAIN_TOKEN", None)  # training must be open for the training-under-load run
    env.update({
        "PYTHONUNBUFFERED": "1",
        "GRADIO_ANALYTICS_ENABLED": "False",  # no phoning home from a benchmark
        "GRADIO_SERVER_NAME": HOST,
        "TF_CPP_MIN_LOG_LEVEL": "2",
        "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")])),
    })
    env.update(overrides)
    return env


def private_data(folder: Path) -> dict[str, str]:
    """Settings that give a server or trainer under test a data location of its own (what it trains or
    stores stays out of the user's), sharing the user's caches (the canvas mix takes minutes to draw)."""
    import datadir

    return {"DATA_DIR": str(folder),
            "CANVAS_DATA_CACHE": os.environ.get("CANVAS_DATA_CACHE") or str(datadir.cache_dir("canvas-data")),
            "MNIST_CACHE": os.environ.get("MNIST_CACHE") or str(datadir.cache_dir("mnist"))}


def app_server(port: int, exports: Path, log_path: Path) -> ServerProcess:
    """The real app, started exactly as a user starts it: `python app.py`, on a private copy of the
    exports and a data location of its own beside it."""
    env = server_env(GRADIO_SERVER_PORT=str(port), EXPORTS_DIR=str(exports),
                     **private_data(exports.with_name(exports.name + "-data")))
    return ServerProcess("app.py", [sys.executable, "app.py"], port, env=env, log_path=log_path)


def predict_ready(port: int, body: bytes):
    """A readiness probe: the server answers a real /predict with 200."""
    def ready() -> bool:
        status, _ = request(port, "POST", "/predict", body, timeout=5.0)
        return status == 200
    return ready


def workers_ready(port: int):
    """A readiness probe for our app: every configured prediction worker process is up (GET /env)."""
    def ready() -> bool:
        status, answer = request(port, "GET", "/env", timeout=5.0)
        workers = answer.get("prediction_workers", {}) if status == 200 and isinstance(answer, dict) else {}
        return bool(workers) and workers.get("ready", 0) >= workers.get("configured", 0)
    return ready
