"""Model versions: every successful run is kept, and any kept version can serve again.

    versions = ModelVersions()          # EXPORTS_DIR/versions/<model>/<n>/
    versions.ensure_initial()           # at start-up: the shipped models become version 1
    versions.record("model2")           # after a run wrote exports/model2.*: it becomes version n+1
    versions.serve("model2", 1)         # the shipped model serves again

Layout: EXPORTS_DIR/versions/<model>/<n>/ holds the version's native, ONNX and
metadata files under their usual names, plus version.json (number, source, the
ONNX file's SHA-256, accuracy, drawings accuracy, options). The folder is
git-ignored; on a fresh clone it does not exist yet, and the first start copies the
shipped exports in as version 1 ("shipped", never pruned).

Serving stays what it was: the predictor and the prediction workers read
EXPORTS_DIR/<model>.onnx and reload it when its file signature changes. Serving a
version copies its files there atomically (each staged beside its target, then
os.replace, metadata last), so a request in flight finishes on the old session and
the next one gets the new; the choice survives a restart because it *is* the files.
Which version serves is read from the ONNX file's SHA-256, so it can never disagree
with what is actually served.

Pruning keeps at most `keep` versions ($MODEL_VERSIONS_KEEP, default 5), never
deleting the shipped version, the best by MNIST test accuracy, or the serving one.
"""
from __future__ import annotations

import datetime as _dt
import hashlib
import json
import logging
import os
import secrets
import shutil
import threading
from pathlib import Path
from typing import Any, Mapping

from training.artifacts import ArtifactWriter, artifact_paths, exports_dir as resolve_exports_dir, read_metadata
from training.registry import MODELS, ModelSpec

log = logging.getLogger(__name__)

KEEP = 5  # versions kept per model ($MODEL_VERSIONS_KEEP); the shipped, best and serving ones always stay
VERSION_FILE = "version.json"
SHIPPED, TRAINED, FOUND = "shipped", "trained", "found in exports"  # where a version came from


class VersionError(LookupError):
    """No such version (the message is user-facing)."""


class ModelVersions:
    """The kept versions of every registry model; thread-safe within one process."""

    def __init__(self, exports_dir: str | os.PathLike | None = None, models: Mapping[str, ModelSpec] | None = None,
                 *, keep: int | None = None):
        self.exports_dir = resolve_exports_dir(exports_dir)
        self.root = self.exports_dir / "versions"
        self.models = dict(models if models is not None else MODELS)
        self.keep = max(2, keep if keep is not None else int(os.environ.get("MODEL_VERSIONS_KEEP") or KEEP))
        self._locks = {name: threading.RLock() for name in self.models}
        self._sha_cache: dict[str, tuple[tuple, str]] = {}

    # -- recording ------------------------------------------------------------

    def ensure_initial(self) -> None:
        """Make what exports/ serves a version: version 1 (shipped) on a first start, a new version
        when it was replaced outside the app (e.g. by `python -m training`)."""
        for name in self.models:
            with self._locks[name]:
                if not self._paths(name)["onnx"].is_file():
                    continue
                try:
                    if not self._numbers(name):
                        self._snapshot(name, SHIPPED)
                    elif self.serving(name) is None:
                        self._snapshot(name, FOUND)
                except OSError as error:  # e.g. a read-only exports folder: the app still serves
                    log.warning("cannot keep %s as a version in %s (%s): runs will not be restorable", name,
                                self.root, error)

    def record(self, name: str, source: str = TRAINED) -> int:
        """Keep what a run just wrote to exports/ as a new version (then prune); returns its number."""
        with self._locks[name]:
            if not self._numbers(name):
                log.warning("no version 1 of %s was kept before this run; the new model becomes version 1", name)
            number = self._snapshot(name, source)
            self.prune(name)
            return number

    def _snapshot(self, name: str, source: str) -> int:
        numbers = self._numbers(name)
        number = max(numbers, default=0) + 1
        folder = self.root / name
        folder.mkdir(parents=True, exist_ok=True)
        staging = folder / f".staging-{secrets.token_hex(4)}"
        staging.mkdir()
        try:
            paths = self._paths(name)
            for kind, path in paths.items():
                if path.is_file():
                    shutil.copy2(path, staging / path.name)
            metadata = read_metadata(paths["metadata"]) or {}
            metadata["version"] = number
            (staging / paths["metadata"].name).write_text(json.dumps(metadata, indent=2, sort_keys=True) + "\n")
            info = {
                "version": number,
                "source": source,
                "kept_at": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
                "onnx_sha256": _sha256(staging / paths["onnx"].name),
                "accuracy": metadata.get("test_accuracy"),
                "drawings_accuracy": metadata.get("drawings_accuracy"),
                "trained_at": metadata.get("trained_at"),
                "options": metadata.get("options"),
            }
            (staging / VERSION_FILE).write_text(json.dumps(info, indent=2, sort_keys=True) + "\n")
            os.rename(staging, folder / str(number))  # the version appears whole or not at all
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        # The serving metadata names its version too (GET /model_status shows it).
        self._write_exports_metadata(name, metadata)
        log.info("kept %s as version %d (%s)", name, number, source)
        return number

    # -- serving --------------------------------------------------------------

    def serve(self, name: str, version: int) -> dict[str, Any]:
        """Copy version `version` into exports/ atomically: the predictor and workers reload it at once."""
        with self._locks[name]:
            folder = self._folder(name, version)
            paths = self._paths(name)
            with ArtifactWriter(paths) as writer:
                for kind, target in paths.items():
                    source = folder / target.name
                    if kind != "metadata" and not source.is_file():
                        raise VersionError(f"version {version} of {name} is missing its {target.name}")
                    if kind != "metadata":
                        writer.stage(kind, lambda temp, s=source: shutil.copyfile(s, temp))
                metadata = read_metadata(folder / paths["metadata"].name) or {}
                metadata["version"] = version
                writer.stage_json("metadata", metadata)
                writer.commit()
            log.info("serving %s version %d", name, version)
            return self.describe(name, version)

    def serving(self, name: str) -> int | None:
        """The version whose ONNX file is the one in exports/ now, or None (e.g. no versions yet)."""
        sha = self._exports_sha(name)
        if sha is None:
            return None
        for number in sorted(self._numbers(name), reverse=True):
            if self._info(name, number).get("onnx_sha256") == sha:
                return number
        return None

    # -- listing and pruning --------------------------------------------------

    def list(self, name: str) -> list[dict[str, Any]]:
        """[{"version", "accuracy", "drawings_accuracy", "trained_at", "options", "serving", "source", ...}], newest first."""
        self._spec(name)
        serving = self.serving(name)
        return [{**self._public(name, number), "serving": number == serving}
                for number in sorted(self._numbers(name), reverse=True)]

    def describe(self, name: str, version: int) -> dict[str, Any]:
        self._folder(name, version)
        return {**self._public(name, version), "serving": self.serving(name) == version}

    def prune(self, name: str) -> list[int]:
        """Delete the oldest versions beyond `keep`, never the shipped, best or serving one; returns those deleted."""
        with self._locks[name]:
            numbers = sorted(self._numbers(name))
            infos = {number: self._info(name, number) for number in numbers}
            protected = {number for number, info in infos.items() if info.get("source") == SHIPPED}
            scored = [number for number in numbers if infos[number].get("accuracy") is not None]
            if scored:
                protected.add(max(scored, key=lambda number: (infos[number]["accuracy"], number)))
            serving = self.serving(name)
            if serving is not None:
                protected.add(serving)
            deleted = []
            for number in numbers:  # oldest first
                if len(numbers) - len(deleted) <= self.keep:
                    break
                if number not in protected:
                    shutil.rmtree(self.root / name / str(number), ignore_errors=True)
                    deleted.append(number)
            if deleted:
                log.info("pruned %s versions %s (keeping %d)", name, deleted, self.keep)
            return deleted

    # -- internals --------------------------------------------------------------

    def _spec(self, name: str) -> ModelSpec:
        try:
            return self.models[name]
        except KeyError:
            raise VersionError(f"Unknown model {name!r}; choose one of: {', '.join(self.models)}") from None

    def _paths(self, name: str) -> dict[str, Path]:
        return artifact_paths(name, self._spec(name).native_format, self.exports_dir)

    def _numbers(self, name: str) -> list[int]:
        folder = self.root / name
        if not folder.is_dir():
            return []
        return [int(entry.name) for entry in folder.iterdir()
                if entry.name.isdigit() and (entry / VERSION_FILE).is_file()]

    def _folder(self, name: str, version: int) -> Path:
        self._spec(name)
        folder = self.root / name / str(int(version))
        if not (folder / VERSION_FILE).is_file():
            kept = ", ".join(str(n) for n in sorted(self._numbers(name))) or "none"
            raise VersionError(f"{name} has no version {version}; kept versions: {kept}")
        return folder

    def _info(self, name: str, number: int) -> dict[str, Any]:
        return read_metadata(self.root / name / str(number) / VERSION_FILE) or {}

    def _public(self, name: str, number: int) -> dict[str, Any]:
        info = self._info(name, number)
        keys = ("version", "accuracy", "drawings_accuracy", "trained_at", "options", "source", "kept_at")
        return {key: info.get(key) for key in keys}

    def _exports_sha(self, name: str) -> str | None:
        path = self._paths(name)["onnx"]
        try:
            stat = path.stat()
        except OSError:
            return None
        signature = (stat.st_mtime_ns, stat.st_size, stat.st_ino)  # as the predictor's file_signature
        cached = self._sha_cache.get(name)
        if cached is not None and cached[0] == signature:
            return cached[1]
        sha = _sha256(path)
        self._sha_cache[name] = (signature, sha)
        return sha

    def _write_exports_metadata(self, name: str, metadata: dict[str, Any]) -> None:
        paths = self._paths(name)
        if read_metadata(paths["metadata"]) == metadata:
            return  # the shipped metadata already names version 1: leave the committed file alone
        with ArtifactWriter({"metadata": paths["metadata"]}) as writer:
            writer.stage_json("metadata", metadata)
            writer.commit()


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
