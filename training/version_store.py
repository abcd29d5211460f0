"""Model versions in the database, so that replicas with no shared disk serve as one (issue 20).

With DATABASE_URL=postgresql://... the database holds, per model, each kept version's record (what
version.json holds: number, source, times, accuracy, options, SHA-256 and size of each file), its
files (ONNX, native, metadata JSON; a few MB, as bytea) and which version serves. Each replica keeps
its own DATA_DIR/versions/<model>/<n>/ folders and serving.json as a *cache* of the database, laid
out exactly as training/model_versions.py lays out a one-machine data location, so the predictor,
the prediction workers and the explanation workers read local files as before and never query.

    catalog = VersionCatalog(database)
    mirror = VersionMirror(versions, on_served=predictor.reload)   # versions: a ModelVersions on the catalog
    mirror.sync(); mirror.start()        # at start, then whenever the 'model_versions' counter moves

Who writes what:
- a run (ModelVersions._add): one transaction takes the next number, stores the record and files and
  points serving at it, bumping the 'model_versions' change counter (PostgreSQL: NOTIFY at commit);
- serving a version (ModelVersions.serve): the pointer, and the counter;
- every replica's VersionMirror wakes on the NOTIFY (or its 1 s poll of the counters, if a
  notification is lost), materialises the version the database says serves (files written into a
  folder of its own, each checked against its SHA-256, then renamed to <n>: it appears whole) and
  only then points its local serving.json at it; the predictor reloads. Requests keep being
  answered by the old session until the new one is built (inference/predictor.py).

SQLite (DATABASE_URL unset: one machine) keeps today's file layout and never uses these tables;
the catalog works there too (the tests run it on both).
"""
from __future__ import annotations

import datetime as _dt
import hashlib
import json
import logging
import threading
from typing import Any, Callable

log = logging.getLogger(__name__)

TOPIC = "model_versions"  # the change counter bumped by every new version and every serve
SHIPPED_VERSION = 1


class VersionCatalog:
    """The versions' tables (store/schema.py, migration 4) over one store Database."""

    def __init__(self, database: Any):
        self.database = database

    # -- reading ----------------------------------------------------------------

    def records(self, model: str) -> dict[int, dict[str, Any]]:
        """{version: record} of the kept versions of `model` (the shipped version 1 is not stored)."""
        rows = self.database.read(lambda tx: tx.execute(
            "SELECT version, record FROM model_versions WHERE model = ? ORDER BY version", (model,)).fetchall())
        return {int(number): json.loads(record) for number, record in rows}

    def record(self, model: str, version: int) -> dict[str, Any] | None:
        row = self.database.read(lambda tx: tx.execute(
            "SELECT record FROM model_versions WHERE model = ? AND version = ?", (model, int(version))).fetchone())
        return json.loads(row[0]) if row else None

    def serving(self, model: str) -> int:
        """The version that serves `model` (1, the shipped one, until another is served)."""
        return self.pointers().get(model, SHIPPED_VERSION)

    def pointers(self) -> dict[str, int]:
        """{model: serving version} for every model whose serving version was ever set."""
        rows = self.database.read(lambda tx: tx.execute("SELECT model, version FROM model_serving").fetchall())
        return {str(model): int(version) for model, version in rows}

    def files(self, model: str, version: int) -> tuple[dict[str, Any], dict[str, tuple[str, bytes]]]:
        """(record, {kind: (file name, bytes)}) of a version, each file checked against its SHA-256;
        LookupError when there is no such version, ValueError when a file is damaged."""
        def work(tx):
            record = tx.execute("SELECT record FROM model_versions WHERE model = ? AND version = ?",
                                (model, int(version))).fetchone()
            rows = tx.execute("SELECT kind, name, sha256, data FROM model_version_files WHERE model = ? AND "
                              "version = ?", (model, int(version))).fetchall()
            return record, rows

        record, rows = self.database.read(work)
        if record is None:
            raise LookupError(f"{model} has no version {version} in the database")
        files = {}
        for kind, name, sha256, data in rows:
            data = bytes(data)  # psycopg: bytes; sqlite3: bytes (a memoryview on some drivers)
            if hashlib.sha256(data).hexdigest() != sha256:
                raise ValueError(f"version {version} of {model} is damaged in the database: its {kind} file "
                                 f"does not match its SHA-256")
            files[str(kind)] = (str(name), data)
        return json.loads(record[0]), files

    # -- writing ------------------------------------------------------------------

    def add(self, model: str, build: Callable[[int], tuple[dict[str, Any], dict[str, tuple[str, bytes]]]],
            serve: bool = True) -> int:
        """Store the next version of `model` and serve it (when `serve`), in one transaction; returns its number.
        `build(number)` -> (record, {kind: (file name, bytes)}): the files may depend on the number (the
        metadata names its version), and it may run twice (store/database.py), so it only computes."""
        def work(tx) -> int:
            self.database.bump(tx, TOPIC)  # holds the counter's row to the commit: one add at a time, everywhere
            newest = tx.execute("SELECT max(version) FROM model_versions WHERE model = ?", (model,)).fetchone()[0]
            number = max(int(newest or SHIPPED_VERSION), SHIPPED_VERSION) + 1
            record, files = build(number)
            tx.execute("INSERT INTO model_versions (model, version, record, created_at) VALUES (?, ?, ?, ?)",
                       (model, number, json.dumps(record, sort_keys=True), _now()))
            for kind, (name, data) in files.items():
                tx.execute("INSERT INTO model_version_files (model, version, kind, name, sha256, size, data) "
                           "VALUES (?, ?, ?, ?, ?, ?, ?)",
                           (model, number, kind, name, hashlib.sha256(data).hexdigest(), len(data), data))
            if serve:
                self._point(tx, model, number)
            return number

        return self.database.write(work)

    def serve(self, model: str, version: int) -> None:
        """Point serving at `version` (LookupError when it is not kept, version 1 always is)."""
        def work(tx) -> None:
            if int(version) != SHIPPED_VERSION and tx.execute(
                    "SELECT 1 FROM model_versions WHERE model = ? AND version = ?",
                    (model, int(version))).fetchone() is None:
                raise LookupError(f"{model} has no version {version}")
            self.database.bump(tx, TOPIC)
            self._point(tx, model, int(version))

        self.database.write(work)

    def delete(self, model: str, versions: list[int]) -> list[int]:
        """Delete kept versions, never the one serving at that moment; returns those deleted."""
        def work(tx) -> list[int]:
            row = tx.execute("SELECT version FROM model_serving WHERE model = ?", (model,)).fetchone()
            serving = int(row[0]) if row else SHIPPED_VERSION
            deleted = [number for number in versions if number != serving]
            for number in deleted:
                tx.execute("DELETE FROM model_version_files WHERE model = ? AND version = ?", (model, number))
                tx.execute("DELETE FROM model_versions WHERE model = ? AND version = ?", (model, number))
            if deleted:
                self.database.bump(tx, TOPIC)
            return deleted

        return self.database.write(work)

    @staticmethod
    def _point(tx, model: str, version: int) -> None:
        tx.execute("INSERT INTO model_serving (model, version, changed_at) VALUES (?, ?, ?) ON CONFLICT (model) "
                   "DO UPDATE SET version = excluded.version, changed_at = excluded.changed_at",
                   (model, version, _now()))


class VersionMirror:
    """Keeps this replica's local serving.json (and version folders) in step with the database.

    `versions` is a ModelVersions on a catalog; `on_served(name)` runs after a model's local serving
    version changed (the app reloads its predictor there, so the first request does not pay the load)."""

    def __init__(self, versions: Any, on_served: Callable[[str], Any] | None = None):
        self.versions = versions
        self.on_served = on_served
        self._watcher = None
        self._lock = threading.Lock()  # one sync at a time (the watcher's thread, a call at start)
        self.synced = 0  # syncs that changed something (for tests and /env)

    def start(self) -> None:
        self._watcher = self.versions.database.watch(self._on_change)

    def stop(self) -> None:
        if self._watcher is not None:
            self._watcher.stop()
            self._watcher = None

    def _on_change(self, topic: str, counter: int) -> None:
        if topic == TOPIC:
            self.sync(raise_unavailable=True)  # the watcher calls again while the database cannot answer

    def sync(self, raise_unavailable: bool = False) -> list[str]:
        """Serve locally what the database says serves; returns the models whose serving changed.
        A version that cannot be fetched (damaged, gone, database down) leaves the model as it was.
        `raise_unavailable`: raise the StoreUnavailableError of a database that could not answer (the
        pointers or a version's files), after doing what could be done, so the caller tries again."""
        from store.errors import StoreError, StoreUnavailableError

        changed = []
        unavailable: StoreUnavailableError | None = None
        with self._lock:
            try:
                pointers = self.versions.catalog.pointers()
            except StoreError as error:
                log.warning("model versions: cannot read what serves (%s); serving as before", error)
                if raise_unavailable and isinstance(error, StoreUnavailableError):
                    raise
                return changed
            for name in self.versions.models:
                wanted = pointers.get(name, SHIPPED_VERSION)
                if self.versions.serving_files(name).version == wanted:
                    continue
                try:
                    self.versions.follow(name, wanted)
                except (LookupError, StoreError, OSError) as error:  # LookupError: model_versions.VersionError
                    log.error("model versions: cannot serve %s version %d here (%s); serving as before",
                              name, wanted, error)
                    if isinstance(error, StoreUnavailableError):
                        unavailable = error
                    continue
                changed.append(name)
                log.info("serving %s version %d, as the database says", name, wanted)
                if self.on_served is not None:
                    try:
                        self.on_served(name)
                    except Exception:  # the local files serve anyway: the predictor reloads at the next request
                        log.exception("model versions: reloading %s failed", name)
            if changed:
                self.synced += 1
            for name in self.versions.models:  # versions pruned by another replica: free this disk too
                try:
                    self.versions.forget_deleted(name)
                except (StoreError, OSError) as error:
                    log.warning("model versions: cannot tidy %s's copies (%s)", name, error)
        if raise_unavailable and unavailable is not None:
            raise unavailable
        return changed


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def follow_database(versions: Any, on_served: Callable[[str], Any] | None = None) -> VersionMirror | None:
    """For the app: with versions in the database, serve what it says now and follow it from then on
    (a background thread); None when the versions are files only (SQLite, one machine)."""
    if versions.catalog is None:
        return None
    mirror = VersionMirror(versions, on_served)
    mirror.sync()
    mirror.start()
    return mirror
