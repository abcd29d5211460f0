"""Model versions: every successful run is a numbered version, and any version can serve again.

    versions = ModelVersions()                   # $DATA_DIR/versions; version 1 is the shipped exports/
    with versions.writer("model2") as run:       # what a trainer writes (training/export.py)
        run.stage("native", write_native); run.stage_bytes("onnx", data); run.stage_json("metadata", meta)
        run.commit()                             # -> version n+1, serving from now on
    versions.serve("model2", 1)                  # the shipped model serves again
    versions.serving_files("model2")             # what the predictor loads (one stat() per call)

Storage. Only this module knows it, behind the methods above and list, describe, serving,
prune and remove_abandoned_runs, so that a database can take its place:
    EXPORTS_DIR/<model>.*                      version 1, the shipped model: read, never written
    DATA_DIR/versions/<model>/<n>/             version n >= 2: the files its run wrote, as written
        (<model>.onnx, <model>.<native>, <model>.json) and version.json: number, source, time,
        accuracy, options, and the SHA-256 and size of each file
    DATA_DIR/versions/<model>/serving.json     {"version": n}: the version that serves (absent: 1)
    DATA_DIR/versions/<model>/.lock            orders commits and serve() (threads and processes)
    DATA_DIR/versions/<model>/.run-<pid>-<hex>/   a run's files while it writes them

Why a run writes into a folder of its own: a run used to rename its files into exports/ and be
"recorded" from there afterwards, so serving a version in between copied that version over the new
files, and the new version kept was a byte copy of the served one (issue 18: the trained model was
lost in 3 of 3 trials). Now a run's files never leave its folder: commit() renames the folder to the
next number and points serving.json at it, under the model's lock, which serve() takes too. The
SHA-256 recorded is that of the files in the run's folder, checked against the one the trainer
computed from the bytes it wrote; serve() checks the ONNX file against it again.

Readers take no lock: a version folder appears whole (one rename) and never changes afterwards,
serving.json is replaced atomically, and a predictor notices a new serving.json by its file
signature, so a version committed by another process (`python -m training model1` while the app
runs) serves there at the next request.

With PostgreSQL (DATABASE_URL), the database is where versions live (training/version_store.py):
a run's record and files and the serving pointer are stored there first, in one transaction, and the
folders above become this replica's cache of it, kept in step by a VersionMirror. Everything that
reads files (the predictor, the prediction workers) is the same in both cases; listing, serving,
pruning and numbering ask the database. On SQLite (one machine) the files are all there is.

Pruning keeps at most `keep` versions ($MODEL_VERSIONS_KEEP, default 5), never deleting the shipped
one, the newest, the best by MNIST test accuracy or the serving one.
"""
from __future__ import annotations

import contextlib
import datetime as _dt
import hashlib
import json
import logging
import os
import secrets
import shutil
import threading
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping

from training.artifacts import (ExportFolder, ServingFiles, artifact_paths, committing,
                                exports_dir as resolve_exports_dir, read_metadata)
from store.errors import StoreError, StoreUnavailableError
from training.registry import MODELS, ModelSpec
from training.version_store import VersionCatalog

try:
    import fcntl
except ImportError:  # Windows: one process at a time is all the lock can promise there
    fcntl = None

log = logging.getLogger(__name__)

KEEP = 5  # versions kept per model ($MODEL_VERSIONS_KEEP); the shipped, newest, best and serving always stay
SHIPPED_VERSION = 1
VERSION_FILE = "version.json"
SERVING_FILE = "serving.json"
LOCK_FILE = ".lock"
RUN_PREFIX = ".run-"
SHIPPED, TRAINED = "shipped", "trained"  # where a version came from
PUBLIC_KEYS = ("version", "accuracy", "drawings_accuracy", "trained_at", "options", "source", "kept_at",
               "onnx_sha256")


class VersionError(LookupError):
    """No such version, or it cannot serve (the message is user-facing)."""


class VersionsUnavailableError(VersionError, StoreUnavailableError):
    """The database that holds the versions cannot be used right now (HTTP 503; the UI shows it as a
    VersionError's warning): nothing was changed."""


_FROM_ENVIRONMENT = object()  # ModelVersions(database=...): PostgreSQL when DATABASE_URL names it


def _database_from_environment() -> Any:
    """The shared PostgreSQL database when DATABASE_URL names one, else None (the files alone)."""
    from store import database_url, shared_database

    url = database_url()
    return shared_database() if url is not None and url.startswith(("postgresql://", "postgres://")) else None


class ModelVersions:
    """The versions of every registry model; safe to share between threads, and between processes
    using the same data location."""

    def __init__(self, *, data_dir: str | os.PathLike | None = None, shipped_dir: str | os.PathLike | None = None,
                 models: Mapping[str, ModelSpec] | None = None, keep: int | None = None,
                 database: Any = _FROM_ENVIRONMENT):
        """`database`: a store Database holding the versions (training/version_store.py), None for the
        files alone; by default PostgreSQL when DATABASE_URL names it (opened at first use: a prediction
        worker, which only reads serving files, never connects)."""
        import datadir

        self.data_dir = Path(data_dir) if data_dir is not None else datadir.data_dir()
        self.root = self.data_dir / "versions"
        self.shipped_dir = resolve_exports_dir(shipped_dir)
        self.models = dict(models if models is not None else MODELS)
        self.keep = max(2, keep if keep is not None else int(os.environ.get("MODEL_VERSIONS_KEEP") or KEEP))
        self._serving_cache: dict[str, tuple[tuple | None, ServingFiles]] = {}
        self._sha_cache: dict[Path, tuple[tuple, str]] = {}
        self._database = database
        self._catalog: VersionCatalog | None = None

    @property
    def catalog(self) -> VersionCatalog | None:
        """The versions in the database, or None when the files in the data location are all there is."""
        if self._database is _FROM_ENVIRONMENT:
            self._database = _database_from_environment()
        if self._database is not None and self._catalog is None:
            self._catalog = VersionCatalog(self._database)
        return self._catalog

    @property
    def database(self) -> Any:
        catalog = self.catalog
        return catalog.database if catalog is not None else None

    # -- what serves ----------------------------------------------------------

    def serving_files(self, name: str) -> ServingFiles:
        """The files `name` serves from: the serving version's, else the shipped ones. Cheap (one stat
        of serving.json while it is unchanged): the predictor asks on every request."""
        signature = _signature(self.root / name / SERVING_FILE)
        cached = self._serving_cache.get(name)
        # A trained version's folder removed by hand: serve the shipped model again (one more stat).
        if cached is not None and cached[0] == signature and (
                cached[1].version == SHIPPED_VERSION or os.path.exists(cached[1].paths["onnx"])):
            return cached[1]
        files = self._resolve_serving(name)
        self._serving_cache[name] = (signature, files)
        return files

    def serving(self, name: str) -> int | None:
        """The number of the version that serves, or None when there is no model to serve."""
        files = self.serving_files(name)
        return files.version if files.paths["onnx"].is_file() else None

    def serve(self, name: str, version: int) -> dict[str, Any]:
        """Make `version` the one that serves (every predictor reading this data location follows)."""
        self._spec(name)
        catalog = self.catalog
        with self._exclusive(name), _unavailable_as_version_error():
            if catalog is not None:
                self._materialise(name, int(version))  # here first, checked: this replica serves it at once
            files = self._files_of(name, version)  # VersionError when there is no such version
            recorded = self._info(name, version).get("onnx_sha256")
            if recorded is not None and _sha256(files["onnx"]) != recorded:
                raise VersionError(f"version {version} of {name} is damaged: its ONNX file is not the one its "
                                   f"run wrote (SHA-256 differs); serve another version")
            if catalog is not None:
                try:
                    catalog.serve(name, int(version))  # every replica follows (VersionMirror)
                except LookupError:
                    raise VersionError(f"{name} has no version {version}") from None
            self._write_serving(name, int(version))
        log.info("serving %s version %d", name, version)
        return self.describe(name, version)

    # -- new versions -----------------------------------------------------------

    def writer(self, name: str, source: str = TRAINED, *, serve: bool = True) -> "VersionWriter":
        """Where a run writes its files; its commit() makes them the newest version, serving (unless
        `serve` is False: a version imported from another data location, training/import_versions.py)."""
        self._spec(name)
        return VersionWriter(self, name, source, serve=serve)

    def _add(self, name: str, staging: Path, source: str, metadata: dict[str, Any] | None,
             serve: bool = True) -> int:
        """Keep the run in `staging` as the next version and serve it when `serve` (called by
        VersionWriter.commit)."""
        paths = self._paths_in(name, staging)
        if self.catalog is not None:
            return self._add_to_database(name, staging, paths, source, metadata, serve)
        with self._exclusive(name):
            number = max(self._trained_numbers(name), default=SHIPPED_VERSION) + 1
            if metadata is not None:  # the metadata names its version (GET /model_status shows it)
                _write_json(paths["metadata"], {**metadata, "version": number})
            files = {kind: {"name": path.name, "sha256": _sha256(path), "bytes": path.stat().st_size}
                     for kind, path in paths.items() if path.is_file()}
            written = (metadata or {}).get("onnx_sha256")
            if written is not None and files["onnx"]["sha256"] != written:
                raise OSError(f"the ONNX file of {name} changed between writing and keeping it (SHA-256 "
                              f"{files['onnx']['sha256'][:12]} is not the {written[:12]} the run wrote)")
            _write_json(staging / VERSION_FILE, _record(number, source, files, metadata or {}))
            os.rename(staging, self.root / name / str(number))  # the version appears whole or not at all
            _fsync_directory(self.root / name)
            if serve:
                self._write_serving(name, number)
        log.info("kept %s as version %d (%s)%s", name, number, source, ", now serving" if serve else "")
        return number

    def _add_to_database(self, name: str, staging: Path, paths: dict[str, Path], source: str,
                         metadata: dict[str, Any] | None, serve: bool = True) -> int:
        """_add with PostgreSQL: the record, the files and the serving pointer in one transaction (the
        number is the database's, so replicas never reuse one), then the local folder from the same bytes."""
        blobs = {kind: path.read_bytes() for kind, path in paths.items() if kind != "metadata" and path.is_file()}
        written = (metadata or {}).get("onnx_sha256")
        if written is not None and hashlib.sha256(blobs["onnx"]).hexdigest() != written:
            raise OSError(f"the ONNX file of {name} changed between writing and keeping it (SHA-256 is not the "
                          f"{written[:12]} the run wrote)")
        built: dict[str, Any] = {}

        def build(number: int) -> tuple[dict[str, Any], dict[str, tuple[str, bytes]]]:
            data = dict(blobs)
            if metadata is not None:  # the metadata names its version (GET /model_status shows it)
                data["metadata"] = _json_bytes({**metadata, "version": number})
            elif paths["metadata"].is_file():
                data["metadata"] = paths["metadata"].read_bytes()
            files = {kind: {"name": paths[kind].name, "sha256": hashlib.sha256(blob).hexdigest(),
                            "bytes": len(blob)} for kind, blob in data.items()}
            record = {**_record(number, source, files, metadata or {}), "database": True}  # see forget_deleted
            built["record"], built["data"] = record, data
            return record, {kind: (paths[kind].name, blob) for kind, blob in data.items()}

        with self._exclusive(name), _unavailable_as_version_error():
            number = self.catalog.add(name, build, serve=serve)
            # The local copy: this replica serves it at once when `serve` (the others fetch it: VersionMirror).
            if "metadata" in built["data"]:
                _write_bytes(paths["metadata"], built["data"]["metadata"])
            _write_json(staging / VERSION_FILE, built["record"])
            self._place(name, staging, number)
            if serve:
                self._write_serving(name, number)
        log.info("kept %s as version %d (%s) in the database%s", name, number, source,
                 ", now serving" if serve else "")
        return number

    def follow(self, name: str, version: int) -> bool:
        """Serve here the version the database says serves (VersionMirror): fetch its files first when
        this replica has not got them. Returns False when it already served it."""
        with self._exclusive(name):
            if self._read_serving(name) == version and (
                    version == SHIPPED_VERSION or (self.root / name / str(version) / VERSION_FILE).is_file()):
                return False
            self._materialise(name, version)
            self._write_serving(name, version)
        return True

    def forget_deleted(self, name: str) -> list[int]:
        """This replica's copies of versions the database no longer keeps (pruned by another replica):
        deleted, unless serving here. Only copies of the database's (their version.json says so): a
        folder kept before the app used PostgreSQL is left alone."""
        if self.catalog is None:
            return []
        removed = []
        with self._exclusive(name):
            kept, serving = set(self.catalog.records(name)), self._read_serving(name)
            for number in self._trained_numbers(name):
                folder = self.root / name / str(number)
                if number not in kept and number != serving and (read_metadata(folder / VERSION_FILE) or {}).get(
                        "database"):
                    shutil.rmtree(folder, ignore_errors=True)
                    removed.append(number)
        return removed

    def _materialise(self, name: str, number: int) -> None:
        """Make sure version `number`'s folder here holds the files the database has (under the model's
        lock). Each file is checked against its SHA-256 before the folder appears, whole, by one rename."""
        if number == SHIPPED_VERSION:
            return
        record = self.catalog.record(name, number)
        if record is None:
            kept = ", ".join(str(n) for n in sorted(self._numbers(name))) or "none"
            raise VersionError(f"{name} has no version {number}; kept versions: {kept}")
        local = read_metadata(self.root / name / str(number) / VERSION_FILE)
        if local is not None and local.get("files") == record.get("files"):
            return  # already here (a folder appears whole and never changes)
        try:
            record, data = self.catalog.files(name, number)
        except LookupError:
            raise VersionError(f"{name} has no version {number} (deleted meanwhile)") from None
        except ValueError as error:
            raise VersionError(f"{error}; serve another version") from None
        staging = self.root / name / f"{RUN_PREFIX}{os.getpid()}-{secrets.token_hex(4)}"
        staging.mkdir(parents=True)
        try:
            paths = self._paths_in(name, staging)
            for kind, (_, blob) in data.items():
                if kind in paths:  # the path is ours, never a name read from the database
                    _write_bytes(paths[kind], blob)
            for kind, info in (record.get("files") or {}).items():  # what reached this disk, read back
                if kind not in paths or not paths[kind].is_file() or _sha256(paths[kind]) != info.get("sha256"):
                    raise VersionError(f"version {number} of {name} did not arrive intact here ({kind} file: "
                                       "SHA-256 differs); serve another version")
            _write_json(staging / VERSION_FILE, record)
            self._place(name, staging, number)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        log.info("fetched %s version %d from the database", name, number)

    def _place(self, name: str, staging: Path, number: int) -> None:
        """Rename a complete folder to version `number`'s (a stale one there, from another database, aside)."""
        target = self.root / name / str(number)
        if target.exists():
            aside = self.root / name / f"{RUN_PREFIX}{os.getpid()}-{secrets.token_hex(4)}-stale"
            os.rename(target, aside)
            shutil.rmtree(aside, ignore_errors=True)
        os.rename(staging, target)
        _fsync_directory(self.root / name)

    # -- listing and pruning --------------------------------------------------

    def list(self, name: str) -> list[dict[str, Any]]:
        """[{"version", "accuracy", "drawings_accuracy", "trained_at", "options", "serving", "source", ...}], newest first."""
        self._spec(name)
        if self.catalog is not None:
            with _unavailable_as_version_error():
                records, serving = self.catalog.records(name), self.catalog.serving(name)
            shipped = self._numbers(name, trained=[])
            return [{**(self._public(name, number) if number == SHIPPED_VERSION else _public(records[number])),
                     "serving": number == serving} for number in sorted([*shipped, *records], reverse=True)]
        serving = self.serving(name)
        return [{**self._public(name, number), "serving": number == serving}
                for number in sorted(self._numbers(name), reverse=True)]

    def describe(self, name: str, version: int) -> dict[str, Any]:
        self._files_of(name, version)
        if self.catalog is not None:
            with _unavailable_as_version_error():
                serving = self.catalog.serving(name)
            return {**self._public(name, int(version)), "serving": serving == int(version)}
        return {**self._public(name, int(version)), "serving": self.serving(name) == int(version)}

    def files(self, name: str, version: int) -> dict[str, Path]:
        """The files of a version ("native", "onnx", "metadata"): read them, never write them."""
        if self.catalog is not None:
            with self._exclusive(name), _unavailable_as_version_error():
                self._materialise(name, int(version))
        return self._files_of(name, version)

    def prune(self, name: str) -> list[int]:
        """Delete the oldest versions beyond `keep`, never the shipped, newest, best or serving one;
        returns those deleted."""
        with self._exclusive(name):
            numbers = sorted(self._numbers(name))
            infos = {number: self._info(name, number) for number in numbers}
            catalog = self.catalog
            protected = {SHIPPED_VERSION, max(numbers, default=SHIPPED_VERSION)}  # the newest: numbers never repeat
            scored = [number for number in numbers if infos[number].get("accuracy") is not None]
            if scored:
                protected.add(max(scored, key=lambda number: (infos[number]["accuracy"], number)))
            serving = self.serving(name) if catalog is None else catalog.serving(name)
            if serving is not None:
                protected.add(serving)
            deleted = []
            for number in numbers:  # oldest first
                if len(numbers) - len(deleted) <= self.keep:
                    break
                if number not in protected:
                    deleted.append(number)
            if catalog is not None and deleted:
                deleted = catalog.delete(name, deleted)  # never the one serving at that moment
            for number in deleted:
                shutil.rmtree(self.root / name / str(number), ignore_errors=True)
        if deleted:
            log.info("pruned %s versions %s (keeping %d)", name, deleted, self.keep)
        return deleted

    def remove_abandoned_runs(self) -> list[Path]:
        """Delete the folders of runs whose process is gone (killed mid-write); called at start-up.
        A run still writing in another process (a CLI training) is left alone."""
        removed = []
        for name in self.models:
            try:
                entries = list((self.root / name).iterdir())
            except OSError:
                continue
            for entry in entries:
                if entry.name.startswith(RUN_PREFIX) and entry.is_dir() and not _process_alive(_run_pid(entry.name)):
                    shutil.rmtree(entry, ignore_errors=True)
                    removed.append(entry)
        return removed

    # -- internals --------------------------------------------------------------

    def _spec(self, name: str) -> ModelSpec:
        try:
            return self.models[name]
        except KeyError:
            raise VersionError(f"Unknown model {name!r}; choose one of: {', '.join(self.models)}") from None

    def _paths_in(self, name: str, folder: Path) -> dict[str, Path]:
        return artifact_paths(name, self._spec(name).native_format, folder)

    def _resolve_serving(self, name: str) -> ServingFiles:
        number = self._read_serving(name)
        if number is not None and number != SHIPPED_VERSION:
            folder = self.root / name / str(number)
            if (folder / VERSION_FILE).is_file():
                return ServingFiles(number, self._paths_in(name, folder), f"versions/{name}/{number}")
            log.warning("%s: %s names version %d, which is missing; serving the shipped version 1", name,
                        SERVING_FILE, number)
        return ServingFiles(SHIPPED_VERSION, self._paths_in(name, self.shipped_dir), self.shipped_dir.name)

    def _read_serving(self, name: str) -> int | None:
        record = read_metadata(self.root / name / SERVING_FILE) or {}
        number = record.get("version")
        return number if isinstance(number, int) and not isinstance(number, bool) else None

    def _write_serving(self, name: str, number: int) -> None:
        folder = self.root / name
        temp = folder / f".{SERVING_FILE}.tmp-{secrets.token_hex(4)}"
        try:
            _write_json(temp, {"version": number})
            os.replace(temp, folder / SERVING_FILE)
        finally:
            temp.unlink(missing_ok=True)
        _fsync_directory(folder)

    def _trained_numbers(self, name: str) -> list[int]:
        try:
            entries = list((self.root / name).iterdir())
        except OSError:
            return []
        return [int(entry.name) for entry in entries
                if entry.name.isascii() and entry.name.isdigit() and int(entry.name) > SHIPPED_VERSION and (entry / VERSION_FILE).is_file()]

    def _numbers(self, name: str, trained: list[int] | None = None) -> list[int]:
        shipped = [SHIPPED_VERSION] if self._paths_in(name, self.shipped_dir)["onnx"].is_file() else []
        if trained is None:
            trained = list(self.catalog.records(name)) if self.catalog is not None else self._trained_numbers(name)
        return shipped + trained

    def _files_of(self, name: str, version: int) -> dict[str, Path]:
        self._spec(name)
        number = int(version)
        if number in self._numbers(name):
            folder = self.shipped_dir if number == SHIPPED_VERSION else self.root / name / str(number)
            return self._paths_in(name, folder)
        kept = ", ".join(str(n) for n in sorted(self._numbers(name))) or "none"
        raise VersionError(f"{name} has no version {version}; kept versions: {kept}")

    def _info(self, name: str, number: int) -> dict[str, Any]:
        if number != SHIPPED_VERSION:
            if self.catalog is not None:
                return self.catalog.record(name, number) or {}
            return read_metadata(self.root / name / str(number) / VERSION_FILE) or {}
        paths = self._paths_in(name, self.shipped_dir)
        metadata = read_metadata(paths["metadata"]) or {}
        return {"version": SHIPPED_VERSION, "source": SHIPPED, "kept_at": None,
                "onnx_sha256": self._cached_sha256(paths["onnx"]),
                "accuracy": metadata.get("test_accuracy"), "drawings_accuracy": metadata.get("drawings_accuracy"),
                "trained_at": metadata.get("trained_at"), "options": metadata.get("options")}

    def _public(self, name: str, number: int) -> dict[str, Any]:
        # The number is the folder's: a version.json that cannot be read still lists as its version.
        return {**_public(self._info(name, number)), "version": int(number)}

    def _cached_sha256(self, path: Path) -> str | None:
        signature = _signature(path)
        if signature is None:
            return None
        cached = self._sha_cache.get(path)
        if cached is None or cached[0] != signature:
            cached = (signature, _sha256(path))
            self._sha_cache[path] = cached
        return cached[1]

    @contextlib.contextmanager
    def _exclusive(self, name: str) -> Iterator[None]:
        folder = self.root / name
        folder.mkdir(parents=True, exist_ok=True)
        with _file_lock(folder / LOCK_FILE):
            yield


class VersionWriter:
    """A run's files, staged in a folder of the run's own; commit() keeps them as the newest version
    and serves it. The same methods as training.artifacts.ArtifactWriter, which writes into a folder.

        with versions.writer("model1") as run:
            run.stage("native", lambda path: joblib.dump(model, path))
            run.stage_bytes("onnx", onnx_bytes)
            run.stage_json("metadata", metadata)
            run.commit()                       # run.version: its number
    """

    def __init__(self, versions: ModelVersions, name: str, source: str, serve: bool = True):
        self.versions = versions
        self.name = name
        self.source = source
        self.serve = serve
        self.folder = versions.root / name / f"{RUN_PREFIX}{os.getpid()}-{secrets.token_hex(4)}"
        self.paths = versions._paths_in(name, self.folder)
        self.version: int | None = None
        self._metadata: dict[str, Any] | None = None
        self._committed = False

    def stage(self, kind: str, write: Callable[[Path], Any]) -> Path:
        self.folder.mkdir(parents=True, exist_ok=True)
        path = self.paths[kind]
        write(path)
        if path.is_file():  # a .keras save is a zip file, joblib and ONNX are files too
            with open(path, "rb") as handle:
                os.fsync(handle.fileno())
        return path

    def stage_bytes(self, kind: str, data: bytes) -> Path:
        return self.stage(kind, lambda path: path.write_bytes(data))

    def stage_json(self, kind: str, data: dict[str, Any]) -> Path:
        if kind == "metadata":
            self._metadata = dict(data)  # commit() adds the version number
        return self.stage(kind, lambda path: _write_json(path, data))

    def commit(self) -> dict[str, str]:
        """Keep the staged files as the next version and serve it unless the writer was made with
        serve=False (inside the commit gate: a job manager may refuse with CommitCancelled, and then
        nothing is kept). Returns the final paths."""
        if not self.paths["onnx"].is_file():
            raise ValueError(f"a version of {self.name} needs its ONNX file; stage it before commit()")
        with committing():
            self.version = self.versions._add(self.name, self.folder, self.source, self._metadata, self.serve)
            self._committed = True
        final = self.versions._paths_in(self.name, self.versions.root / self.name / str(self.version))
        try:
            self.versions.prune(self.name)
        except OSError as error:  # the version is kept and serves; an old one stays a little longer
            log.warning("could not prune %s versions: %s", self.name, error)
        return {kind: str(path) for kind, path in final.items() if path.is_file()}

    def discard(self) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)

    def __enter__(self) -> "VersionWriter":
        return self

    def __exit__(self, *exc_info) -> None:
        if not self._committed:
            self.discard()


def model_source(exports_dir: Any = None) -> ExportFolder | ModelVersions:
    """Where a trainer reads the serving model (fine-tune) and writes its run: by default the
    versions in DATA_DIR; a folder (--exports-dir: its files replaced in place, as written); or a
    source given as it is (a ModelVersions of another data location)."""
    if exports_dir is None:
        return ModelVersions()
    return exports_dir if hasattr(exports_dir, "writer") else ExportFolder(exports_dir)


# --------------------------------------------------------------------------- files and locks

_PROCESS_LOCKS: dict[str, threading.RLock] = {}
_PROCESS_LOCKS_GUARD = threading.Lock()
_HELD: dict[str, int] = {}  # lock path -> depth of the thread holding it (guarded by that path's RLock)


@contextlib.contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    """Exclusive across threads (an RLock per path: re-entrant) and processes (flock on the file)."""
    key = str(path)
    with _PROCESS_LOCKS_GUARD:
        lock = _PROCESS_LOCKS.setdefault(key, threading.RLock())
    with lock:
        depth = _HELD.get(key, 0)
        _HELD[key] = depth + 1
        try:
            if depth or fcntl is None:
                yield
                return
            # A second open() of the same file gets its own lock in the same process too, so the
            # outermost holder alone takes it.
            with open(path, "a") as handle:
                fcntl.flock(handle, fcntl.LOCK_EX)
                try:
                    yield
                finally:
                    fcntl.flock(handle, fcntl.LOCK_UN)
        finally:
            _HELD[key] = depth


def _record(number: int, source: str, files: dict[str, dict[str, Any]], metadata: dict[str, Any]) -> dict[str, Any]:
    """What version.json (and the database's record) holds about a version."""
    return {
        "version": number,
        "source": source,
        "kept_at": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "onnx_sha256": files["onnx"]["sha256"],
        "files": files,
        "accuracy": metadata.get("test_accuracy"),
        "drawings_accuracy": metadata.get("drawings_accuracy"),
        "trained_at": metadata.get("trained_at"),
        "options": metadata.get("options"),
    }


def _public(info: dict[str, Any]) -> dict[str, Any]:
    return {key: info.get(key) for key in PUBLIC_KEYS}


@contextlib.contextmanager
def _unavailable_as_version_error() -> Iterator[None]:
    """The store's errors as VersionsUnavailableError: the UI warns with the words, the API answers 503."""
    try:
        yield
    except VersionError:
        raise
    except StoreError as error:
        raise VersionsUnavailableError(str(error)) from None


def _json_bytes(data: dict[str, Any]) -> bytes:
    return (json.dumps(data, indent=2, sort_keys=True) + "\n").encode()


def _write_bytes(path: Path, data: bytes) -> None:
    with open(path, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())


def _write_json(path: Path, data: dict[str, Any]) -> None:
    with open(path, "w") as handle:
        handle.write(json.dumps(data, indent=2, sort_keys=True) + "\n")
        handle.flush()
        os.fsync(handle.fileno())


def _fsync_directory(folder: Path) -> None:
    """A rename is durable once its folder is synced (POSIX; Windows has no directory handles)."""
    try:
        handle = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(handle)
    except OSError:
        pass
    finally:
        os.close(handle)


def _signature(path: Path) -> tuple[int, int, int] | None:
    try:
        stat = os.stat(path)
    except OSError:
        return None
    return (stat.st_mtime_ns, stat.st_size, stat.st_ino)


def _run_pid(folder_name: str) -> int | None:
    try:
        return int(folder_name[len(RUN_PREFIX):].split("-", 1)[0])
    except ValueError:
        return None


def _process_alive(pid: int | None) -> bool:
    if pid is None:
        return False
    if pid == os.getpid() or os.name == "nt":  # on Windows os.kill() would end the process: keep its folder
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):
        return True  # someone else's process: not ours to judge
    return True


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
