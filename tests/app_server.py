"""Start the real app (`python app.py`) on a free 127.0.0.1 port, for the UI and browser tests."""
from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Callable, Iterator, NamedTuple

ROOT = Path(__file__).resolve().parent.parent
STARTUP_TIMEOUT = 180  # s: importing Gradio and onnxruntime takes a while on a busy machine


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def run_python(code: str, *, timeout: float = 120, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """`python -c code` in a fresh interpreter from the project root (for what a process imports or
    does at start-up); `env` adds to this process's environment. Output is captured as text."""
    return subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, **(env or {})})


def wait_for_workers(env: Callable[[], dict], count: int, timeout: float = 120) -> None:
    """Wait until GET /env (`env()` returns its JSON) reports `count` prediction workers ready."""
    deadline = time.monotonic() + timeout
    while env()["prediction_workers"]["ready"] < count:
        assert time.monotonic() < deadline, f"prediction workers did not start in {timeout:.0f} s"
        time.sleep(0.05)


def copy_exports(source: Path, target: Path) -> Path:
    """A private copy of the session's exports: a server that trains must not change what other tests see."""
    target.mkdir(parents=True, exist_ok=True)
    for path in source.glob("*"):
        if path.is_file():
            shutil.copy2(path, target / path.name)
    return target


def child_pids(pid: int, command_part: bytes | None = None) -> list[int] | None:
    """The processes `pid` started (Linux /proc), those whose command line holds `command_part` when
    given; None where /proc cannot tell.

    Each thread of `pid` lists the children it started (/proc/<pid>/task/<tid>/children), and any
    thread or child may end while we look: a listing that vanished mid-read is skipped, never an error
    (issue 18: a FileNotFoundError on /proc/self/task/<tid>/children failed a CI run)."""
    tasks = Path(f"/proc/{pid}/task")
    try:
        threads = list(tasks.iterdir())
    except FileNotFoundError:
        return [] if Path("/proc/self/task").exists() else None  # `pid` is gone, or this is no Linux
    children = []
    for task in threads:
        try:
            children += [int(child) for child in (task / "children").read_text().split()]
        except (FileNotFoundError, ProcessLookupError):
            continue  # that thread ended while we listed them
    if command_part is None:
        return children
    matching = []
    for child in children:
        try:
            if command_part in Path(f"/proc/{child}/cmdline").read_bytes():
                matching.append(child)
        except (FileNotFoundError, ProcessLookupError):
            continue  # that child ended while we looked
    return matching


def git_status() -> str | None:
    """`git status --porcelain` of the checkout (untracked files included), or None when this is
    not a git checkout."""
    try:
        completed = subprocess.run(["git", "status", "--porcelain", "--untracked-files=all"], cwd=ROOT,
                                   capture_output=True, text=True, timeout=60)
    except OSError:
        return None
    return completed.stdout if completed.returncode == 0 else None


class RunningApp(NamedTuple):
    url: str  # "http://127.0.0.1:<port>/"
    pid: int


@contextlib.contextmanager
def running_app(exports_dir: Path, log_path: Path, *, wrapper: tuple[str, ...] = (),
                **env: str | None) -> Iterator[RunningApp]:
    """Run app.py until the block ends; yields its base URL and process id. An `env` value of
    None removes that variable (to test the app's own defaults). Each app gets a DATA_DIR of its own
    (beside `log_path`) unless `env` names one: what it trains must not serve in other tests' apps.
    `wrapper` runs the app under another command (e.g. strace ... --): then the process id is the
    wrapper's, and both are stopped as one process group."""
    with running_apps([(exports_dir, log_path, env)], wrapper=wrapper) as (app,):
        yield app


@contextlib.contextmanager
def running_apps(apps: list[tuple[Path, Path, dict[str, str | None]]], *, ports: list[int] | None = None,
                 wrapper: tuple[str, ...] = ()) -> Iterator[list[RunningApp]]:
    """Several app.py at once (exports folder, log file, env each; see running_app), started together so
    their start-ups overlap; `ports`: the port of each (default: free ones)."""
    ports = ports or [free_port() for _ in apps]
    processes: list[subprocess.Popen] = []
    try:
        for (exports_dir, log_path, env), port in zip(apps, ports):
            processes.append(_launch(exports_dir, log_path, port, env, wrapper))
        running = []
        for process, (_, log_path, _), port in zip(processes, apps, ports):
            url = f"http://{_local_host(env.get('GRADIO_SERVER_NAME'))}:{port}/"
            _wait_until_up(url, process, log_path)
            running.append(RunningApp(url, process.pid))
        yield running
    finally:
        _stop(processes, group=bool(wrapper))


def _local_host(listening_on: str | None) -> str:
    """Where this machine reaches an app listening on `listening_on` (GRADIO_SERVER_NAME; default loopback)."""
    if listening_on in (None, "", "0.0.0.0", "127.0.0.1"):
        return "127.0.0.1"
    if listening_on == "::":
        return "[::1]"  # an IPv6 socket may not take IPv4 too (net.ipv6.bindv6only)
    return f"[{listening_on}]" if ":" in listening_on else listening_on


def _launch(exports_dir: Path, log_path: Path, port: int, env: dict[str, str | None],
            wrapper: tuple[str, ...] = ()) -> subprocess.Popen:
    # TRAIN_TOKEN only when the test asks for it: a developer's own setting must not leak in.
    environment = {
        **{key: value for key, value in os.environ.items() if key != "TRAIN_TOKEN"},
        "EXPORTS_DIR": str(exports_dir),
        "DATA_DIR": str(log_path.with_name(log_path.stem + "-data")),
        "GRADIO_SERVER_NAME": "127.0.0.1",
        "GRADIO_SERVER_PORT": str(port),
        "GRADIO_ANALYTICS_ENABLED": "False",
        "MNIST_DOWNLOAD": "0",  # tests need no network: training reads MNIST_DIR only
        "PYTHONUNBUFFERED": "1",
        **env,
    }
    environment = {key: value for key, value in environment.items() if value is not None}
    with open(log_path, "wb") as log:
        return subprocess.Popen([*wrapper, sys.executable, "app.py"], cwd=ROOT, env=environment, stdout=log,
                                stderr=subprocess.STDOUT, start_new_session=bool(wrapper))


def _stop(processes: list[subprocess.Popen], group: bool = False) -> None:
    # Uvicorn first waits for open connections to close (a Gradio client's heartbeat
    # stream can linger); a second Ctrl+C (SIGINT) makes it quit at once. All together. A wrapper such
    # as strace does not pass Ctrl+C on: the app gets it as a member of the group, as in a terminal.
    def signal_each(running: list[subprocess.Popen], number: int) -> None:
        for process in running:
            with contextlib.suppress(ProcessLookupError):
                if group:
                    os.killpg(process.pid, number)
                else:
                    process.send_signal(number)

    for wait in (3, 15):
        running = [process for process in processes if process.poll() is None]
        signal_each(running, signal.SIGINT)
        deadline = time.monotonic() + wait
        for process in running:
            try:
                process.wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                pass
    running = [process for process in processes if process.poll() is None]
    signal_each(running, signal.SIGKILL)
    for process in running:
        process.wait(timeout=10)


def _wait_until_up(url: str, process: subprocess.Popen, log_path: Path) -> None:
    deadline = time.monotonic() + STARTUP_TIMEOUT
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"app.py exited with {process.returncode}:\n{log_path.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(url + "config", timeout=5) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.5)
    raise RuntimeError(f"app.py did not answer within {STARTUP_TIMEOUT} s:\n{log_path.read_text()[-3000:]}")


def shipped_accuracy(name: str) -> float:
    """The MNIST test accuracy the shipped export of `name` records (exports/<name>.json)."""
    import json

    return json.loads((ROOT / "exports" / f"{name}.json").read_text())["test_accuracy"]
