"""The files of a model and how they are written (atomically).

Files per model, in a folder: the shipped `exports/` ($EXPORTS_DIR, version 1, only ever read by
the app), a kept version's folder (training/model_versions.py), or a folder named with --exports-dir:
    <name>.<native_format>  native save (joblib / .keras)
    <name>.onnx             what the predictor serves
    <name>.json             metadata: accuracy, training time, options, versions, parity

A run stages every file as a temporary next to its target and renames them all
into place only at the end, so a reader never sees a half-written file and a
failed or cancelled run leaves the previous model untouched. (A run that becomes
a new version stages into its own folder instead: training/model_versions.py.)

What a predictor serves comes from a source with `serving_files(name)`: `ExportFolder` (the
files of one folder, as they are) or `ModelVersions` (the version that serves).

Whoever runs a trainer may install a commit gate (`commit_gate`): the renames happen
inside it, so a job manager can refuse them (the run was cancelled) or learn that they
happened (a cancel came too late), with no race between the two.
"""
from __future__ import annotations

import contextlib
import contextvars
import json
import os
import re
import secrets
import signal
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, ContextManager, Iterator, Mapping

PROJECT_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_EXPORTS_DIR = PROJECT_ROOT / "exports"


def exports_dir(override: str | os.PathLike | None = None) -> Path:
    """The folder holding the shipped exports: `override`, else $EXPORTS_DIR, else ./exports."""
    return Path(override or os.environ.get("EXPORTS_DIR") or DEFAULT_EXPORTS_DIR)


def artifact_paths(name: str, native_format: str, directory: str | os.PathLike | None = None) -> dict[str, Path]:
    folder = exports_dir(directory)
    return {
        "native": folder / f"{name}.{native_format}",
        "onnx": folder / f"{name}.onnx",
        "metadata": folder / f"{name}.json",
    }


@dataclass(frozen=True)
class ServingFiles:
    """The files one model serves from, and which version they are (None: not a kept version)."""

    version: int | None
    paths: dict[str, Path]  # "native", "onnx", "metadata" -> file
    where: str  # a short name of their folder for messages: "exports", "versions/model1/3"

    def display(self, kind: str) -> str:
        """E.g. "exports/model2.onnx": short, and free of the machine's absolute paths."""
        return f"{self.where}/{self.paths[kind].name}"


class ExportFolder:
    """A folder of exports served as they are: the shipped models, or a folder a test or a
    benchmark trains into (the predictor then reloads whatever is written there)."""

    def __init__(self, folder: str | os.PathLike | None = None, models: Mapping[str, Any] | None = None):
        from training.registry import MODELS

        self.folder = exports_dir(folder)
        self.shipped_dir = self.folder
        self.models = dict(models if models is not None else MODELS)
        self._serving = {name: ServingFiles(None, self._paths(name), self.folder.name) for name in self.models}

    def serving_files(self, name: str) -> ServingFiles:
        return self._serving[name]

    def writer(self, name: str) -> "ArtifactWriter":
        """A run's files replace this folder's, atomically at commit()."""
        return ArtifactWriter(self._paths(name))

    def _paths(self, name: str) -> dict[str, Path]:
        return artifact_paths(name, self.models[name].native_format, self.folder)


# A callable returning the context manager every ArtifactWriter.commit() in this context renames
# inside; it may raise (e.g. CommitCancelled) to refuse the commit before anything is renamed.
CommitGate = Callable[[], ContextManager[None]]
_COMMIT_GATE: contextvars.ContextVar[CommitGate | None] = contextvars.ContextVar("commit_gate", default=None)


class CommitCancelled(Exception):
    """A commit gate refused the renames: the run was cancelled before its files were put in place."""


@contextlib.contextmanager
def commit_gate(gate: CommitGate) -> Iterator[None]:
    """Make every commit in this thread (the trainer runs in it) go through `gate`."""
    token = _COMMIT_GATE.set(gate)
    try:
        yield
    finally:
        _COMMIT_GATE.reset(token)


@contextlib.contextmanager
def _signals_deferred() -> Iterator[None]:
    """Ctrl+C (SIGINT) waits until the renames are done: a run is never half in place."""
    if threading.current_thread() is not threading.main_thread() or not hasattr(signal, "pthread_sigmask"):
        yield
        return
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


def read_metadata(path: str | os.PathLike) -> dict[str, Any] | None:
    """The metadata JSON, or None when missing or unreadable."""
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None


@contextlib.contextmanager
def committing() -> Iterator[None]:
    """Where a run puts its files in place: inside the commit gate of this context (which may refuse
    with CommitCancelled before anything happens) and with Ctrl+C deferred until it is done."""
    gate = _COMMIT_GATE.get()
    # Signals outermost: a Ctrl+C during the renames is raised after the gate has seen them complete.
    with _signals_deferred(), gate() if gate is not None else contextlib.nullcontext():
        yield


class ArtifactWriter:
    """Stage files, then commit them all by rename; discard them on any error.

        with ArtifactWriter(paths) as writer:
            writer.stage("native", lambda tmp: joblib.dump(model, tmp))
            writer.stage_bytes("onnx", onnx_bytes)
            writer.stage_json("metadata", metadata)
            writer.commit()
    """

    def __init__(self, paths: dict[str, Path]):
        self.paths = paths
        self._staged: dict[str, Path] = {}
        self._committed = False

    def stage(self, kind: str, write: Callable[[Path], Any]) -> Path:
        target = self.paths[kind]
        target.parent.mkdir(parents=True, exist_ok=True)
        # Keep the real suffix last: Keras refuses to save to a name not ending in ".keras".
        temp = target.with_name(f".{target.stem}.tmp-{secrets.token_hex(4)}{target.suffix}")
        self._staged[kind] = temp
        write(temp)
        _fsync(temp)
        return temp

    def stage_bytes(self, kind: str, data: bytes) -> Path:
        return self.stage(kind, lambda temp: temp.write_bytes(data))

    def stage_json(self, kind: str, data: dict[str, Any]) -> Path:
        return self.stage(kind, lambda temp: temp.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n"))

    def commit(self) -> dict[str, str]:
        """Rename every staged file into place (inside the commit gate, if one is installed).
        Raises CommitCancelled, with nothing renamed, when the gate refuses."""
        # Metadata last: when it names a new accuracy, the model files it describes are in place.
        order = sorted(self._staged, key=lambda kind: kind == "metadata")
        with committing():
            for kind in order:
                os.replace(self._staged[kind], self.paths[kind])
            self._committed = True
        return {kind: str(self.paths[kind]) for kind in order}

    def discard(self) -> None:
        for temp in self._staged.values():
            temp.unlink(missing_ok=True)
        self._staged.clear()

    def __enter__(self) -> "ArtifactWriter":
        return self

    def __exit__(self, *exc_info) -> None:
        if not self._committed:
            self.discard()


def _fsync(path: Path) -> None:
    # Only a file: a .keras save is a zip file, joblib and ONNX are files too.
    if path.is_file():
        with open(path, "rb") as handle:
            os.fsync(handle.fileno())


# What ArtifactWriter.stage names its temporaries: ".<stem>.tmp-<8 hex digits><suffix>".
STAGED_PATTERN = re.compile(r"\.model[0-9A-Za-z_-]*\.tmp-[0-9a-f]{8}(\.[0-9A-Za-z]+)?")


def remove_staged_files(directory: str | os.PathLike) -> list[Path]:
    """Delete the staged files a run killed mid-write left in `directory` (only ours: ".model*.tmp-*"
    by ArtifactWriter's exact pattern, only files, only directly in the folder); returns them.

    Called when the server starts, when no run of this process is staging. A live run in another
    process staging into the same folder is not expected (one server per exports folder)."""
    folder = Path(directory)
    removed = []
    try:
        candidates = list(folder.iterdir())
    except OSError:
        return removed  # no exports folder yet
    for path in candidates:
        if STAGED_PATTERN.fullmatch(path.name) and path.is_file() and not path.is_symlink():
            try:
                path.unlink()
                removed.append(path)
            except OSError:
                pass  # read-only or gone: harmless, retried at the next start
    return removed
