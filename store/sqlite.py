"""The default database: one SQLite file (standard library `sqlite3`), no server needed.

WAL mode lets readers (a training loading the drawings) run while visitors write; every
operation opens its own short connection (~0.1 ms), so threads never share one. Writes take
the write lock at once (BEGIN IMMEDIATE), so a check and the write it guards are one step.

The file is guarded because people and tools touch files (issue 18 items 7 and 8):
- The app only ever moves or writes a file it made: its own database (PRAGMA application_id,
  or the schema version of a file made before that), the file this process has been using, or
  an empty file. A directory, a foreign SQLite database or any other file is answered with
  StoreUnavailableError (HTTP 503) saying why, and left exactly as it is.
- A file of ours that is damaged (fails its quick check, lost a table) is moved aside as
  `<name>.corrupt-<UTC time>` (with its -wal and -shm) and a new database is created in its
  place, holding every row the damaged one still gives (store/salvage.py); a vanished file is
  created again, empty. One repair at a time: operations share a gate
  that a repair takes alone, and a repair first checks that another one has not already
  fixed what it saw.
- An acknowledged write is in the file that serves afterwards: a write whose file was removed,
  replaced, truncated or overwritten while it ran is reported as StoreUnavailableError (the
  client may try again), never as done, unless a look at the file finds it still whole.
  To see any such change, the main file is written only by this process's own checkpoints:
  in WAL mode commits go to the -wal file, automatic checkpoints are off, and an "anchor"
  connection stays open so that no closing connection is the last one (which would fold the
  log in). After each checkpoint, taken alone through the gate, the file's size and mtime are
  noted, only when the file is as a checkpoint leaves it (its page count, our header, no hole);
  an operation that finds them different looks at the file before going on. Without this, a
  checkpoint after (or during) a truncation could grow the file back and hide the damage while
  writes were acknowledged into it.
- A new database is built under a temporary name and linked into place only when complete,
  so no process ever opens a half-made one, and two creators cannot overwrite each other.
"""
from __future__ import annotations

import contextlib
import datetime as _dt
import logging
import os
import sqlite3
import stat
import threading
from pathlib import Path
from typing import Any, Callable, Iterator, TypeVar

import store.salvage as salvage
import store.schema as schema  # not "from store import": the package imports this module (late)
from store.database import AdvisoryLock, Database, lock_key
from store.errors import StoreDiskFullError, StoreUnavailableError

try:
    import fcntl
except ImportError:  # Windows: advisory locks then hold within this process only
    fcntl = None  # type: ignore[assignment]

log = logging.getLogger(__name__)
T = TypeVar("T")

APPLICATION_ID = int.from_bytes(b"DgSt", "big")  # PRAGMA application_id: "this file is Digit Studio's database"
LEGACY_VERSIONS = range(1, 3)  # PRAGMA user_version of the app's files made before application_id was set
BUSY_TIMEOUT = 10.0  # s a writer waits for another's transaction (each takes well under a millisecond)
CHECKPOINT_BYTES = 256 * 1024  # the -wal size that triggers a checkpoint (SQLite: 4 MB; a write logs ~30 KB, and a full disk holds the log)
ATTEMPTS = 3  # an operation is tried again after a repair, at most this many times in all
_MAGIC = b"SQLite format 3\x00"
# Errors that mean "look at the file" (damaged, vanished, replaced), not "the statement is wrong".
_FILE_WORDS = ("malformed", "not a database", "no such table", "file is encrypted", "disk image",
               "unable to open database file")


class SQLiteDatabase(Database):
    dialect = "sqlite"

    def __init__(self, path: str | os.PathLike):
        super().__init__()
        self.path = Path(path)
        self._gate = _Gate()
        self._file: tuple[int, int] | None = None  # (st_dev, st_ino) of the file in use, once accepted
        self._seen: tuple[int, int] | None = None  # its (size, mtime) after this process last wrote it
        self._anchor: sqlite3.Connection | None = None  # see the module docstring
        # A descriptor of the file in use, open as long as the anchor: the checkpoint's look at the file goes
        # through it. Opening and closing the file anew there would drop every POSIX lock this process holds on
        # it (fcntl locks are per process and inode; SQLite's own connections know, a plain open() does not),
        # and another process then checkpointed under this one's feet: in the two-process test ~1 run in 2 lost
        # acknowledged rows or got "disk I/O error".
        self._probe: int | None = None
        self._refused: str | None = None  # the last refusal, logged once
        self._local_locks: set[str] = set()  # advisory locks without fcntl
        self._local_locks_guard = threading.Lock()

    # -- Database ----------------------------------------------------------------

    def read(self, work: Callable[[Any], T]) -> T:
        return self._run(work, write=False)

    def write(self, work: Callable[[Any], T]) -> T:
        return self._run(work, write=True)

    def ensure_ready(self) -> None:
        self._run(lambda tx: None, write=False)

    def exists(self) -> bool:
        return self.path.is_file()

    def describe(self) -> dict[str, Any]:
        return {"backend": "sqlite", "file": self.path.name}  # the name only: GET /env is public

    def try_lock(self, name: str) -> AdvisoryLock | None:
        if fcntl is None:
            with self._local_locks_guard:
                if name in self._local_locks:
                    return None
                self._local_locks.add(name)
            return _LocalLock(name, self._local_locks, self._local_locks_guard)
        folder = self.path.with_name(self.path.name + ".locks")
        try:
            folder.mkdir(parents=True, exist_ok=True)
            handle = open(folder / f"{lock_key(name) & 0xFFFF_FFFF_FFFF_FFFF:016x}.lock", "a+b")
        except OSError as error:
            raise StoreUnavailableError(f"The lock {name!r} cannot be taken ({error.strerror})") from None
        try:
            # flock: held per open file, so two threads of one process exclude each other too; the
            # system frees it when the process dies.
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.close()
            return None
        return _FileLock(name, handle)

    # -- running an operation --------------------------------------------------------

    def _run(self, work: Callable[[Any], T], *, write: bool) -> T:
        concern: tuple | None = ("first use", None, True) if self._file is None else None
        folded = False
        for _ in range(ATTEMPTS):
            if concern is not None:
                self._attend(*concern)
                concern = None
            outcome, value, written_to = self._attempt(work, write)
            if outcome == "done":
                if write:
                    self._checkpoint_if_due()  # outside the shared gate: it takes the gate alone
                return value
            if outcome == "concern":
                concern = value
                continue
            if outcome == "full":
                if folded:
                    raise value
                # Folding the log into the database frees the room its repeated pages take (the counters'
                # pages are in it once per write); then the write is tried once more.
                folded = True
                self._checkpoint_if_due(force=True)
                continue
            # The file changed under this write. It counts only if that file is still the one in use
            # after a look at it (a truncation that left the rows readable, say).
            self._attend("the file changed while this write ran", written_to, False)
            if self._file == written_to:
                return value
            raise StoreUnavailableError(f"The database {self.path.name} was removed or replaced while this was "
                                        "being saved, so it was not kept: try again")
        raise StoreUnavailableError(f"The database {self.path.name} keeps changing under the app "
                                    f"({concern[0] if concern else 'a full disk'}): try again in a moment")

    def _attempt(self, work: Callable[[Any], T], write: bool) -> tuple[str, Any, tuple[int, int] | None]:
        """One try, sharing the gate: ("done", result), ("changed", result, the file written to) for a write
        whose file changed meanwhile, ("concern", (why, the file)) when the file needs a look first, or
        ("full", StoreDiskFullError)."""
        with self._gate.shared():
            before = self._stat()
            if not self._is_current(before):
                return "concern", ("the file was removed, replaced or changed", _identity(before), False), None
            try:
                result = self._transaction(work, write)
            except sqlite3.DatabaseError as error:
                if any(word in str(error).lower() for word in _FILE_WORDS):
                    return "concern", (str(error), _identity(before), True), None
                problem = _unavailable(error, self.path)
                if isinstance(problem, StoreDiskFullError):
                    return "full", problem, None
                raise problem from None
            after = self._stat()
            if not write or (self._is_current(after) and _identity(after) == _identity(before)):
                # (A read saw one consistent snapshot; a change of the file is looked at next time.)
                return "done", result, None
            return "changed", result, _identity(before)

    def _transaction(self, work: Callable[[Any], T], write: bool) -> T:
        connection = self._connect(self.path, create=False)
        try:
            connection.execute("BEGIN IMMEDIATE" if write else "BEGIN")
            try:
                result = work(_Transaction(connection))
            except BaseException:
                with contextlib.suppress(sqlite3.Error):
                    connection.rollback()
                raise
            if write:
                connection.commit()
            else:
                connection.rollback()
            return result
        finally:
            connection.close()

    @staticmethod
    def _connect(path: Path, *, create: bool) -> sqlite3.Connection:
        # mode=rw: an operation never creates a file (a vanished database is rebuilt by _attend, whole).
        uri = path.absolute().as_uri() + ("?mode=rwc" if create else "?mode=rw")
        # isolation_level=None: transactions are begun explicitly.
        connection = sqlite3.connect(uri, uri=True, timeout=BUSY_TIMEOUT, isolation_level=None,
                                     check_same_thread=False)
        # NORMAL is safe in WAL mode (no corruption on a crash; a power cut may lose the last commits).
        connection.execute("PRAGMA synchronous = NORMAL")
        connection.execute("PRAGMA wal_autocheckpoint = 0")  # checkpoints are _checkpoint_if_due's alone
        return connection

    def _stat(self) -> os.stat_result | None:
        try:
            return os.stat(self.path)
        except OSError:
            return None

    def _is_current(self, status: os.stat_result | None) -> bool:
        """The file at the path is the one in use, as this process left it."""
        return (status is not None and _identity(status) == self._file
                and (status.st_size, status.st_mtime_ns) == self._seen)

    def _log_is_long(self) -> bool:
        try:
            return os.stat(f"{self.path}-wal").st_size >= CHECKPOINT_BYTES
        except OSError:
            return False

    def _checkpoint_if_due(self, *, force: bool = False) -> None:
        """Fold the -wal file into the database once it is CHECKPOINT_BYTES (or now), alone (no operation
        runs meanwhile)."""
        if not force and not self._log_is_long():
            return
        with self._gate.exclusive():
            before = self._stat()
            if self._anchor is None or not self._is_current(before) or not (force or self._log_is_long()):
                return  # the next operation looks at the file first; or another thread checkpointed
            try:
                busy, logged, copied = self._anchor.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
                pages, page_size = (self._anchor.execute(f"PRAGMA {name}").fetchall()[0][0]
                                    for name in ("page_count", "page_size"))
                complete = busy == 0 and logged == copied
            except sqlite3.DatabaseError as error:
                log.warning("database %s: checkpoint failed (%s)", self.path, error)
                if any(word in str(error).lower() for word in _FILE_WORDS):
                    # Damaged since the look above (a truncation in that instant, say): its state must not be
                    # noted as "as this process left it", so the next operation checks the file in full first.
                    # (Noting it hid the truncation: writes were acknowledged into the damaged file and lost
                    # when it was set aside later, 1 run in ~13 of the 8-writer test under load.)
                    self._seen = None
                    return
                complete = False  # a full disk, say: some pages may have been copied, the file is checked below
            status = self._stat()
            probe = self._probe_file()
            # A full checkpoint leaves the file exactly page_count pages long, another (a reader of another process
            # held frames back, the disk filled up) never shorter than before; anything else, a header that is not
            # ours or a hole means someone changed the file meanwhile: it is looked at before the next operation
            # instead of being noted. (The hole: a file cut while the checkpoint ran is written on past the cut and
            # set back to its full length, so its size and header look right while the pages in between read as
            # zeros: 1 run in 75 of the 8-writer test under load acknowledged writes into such a file.)
            if status is None or before is None or probe is None or _identity(status) != self._file:
                expected = False
            elif complete:
                expected = probe == (status.st_size, True, False) and status.st_size == pages * page_size
            else:
                expected = probe == (status.st_size, True, False) and status.st_size >= before.st_size
            if expected:
                self._note(status)
            else:
                self._seen = None

    # -- looking at the file, repairing it (one thread at a time) --------------------------

    def _attend(self, concern: str, about: tuple[int, int] | None, damaged: bool) -> None:
        """Look at the file, alone; `damaged`: SQLite itself reported damage (else the file only changed)."""
        with self._gate.exclusive():
            status = self._stat()
            if self._file is not None and about != self._file and self._is_current(status):
                return  # another thread already dealt with what this one saw
            try:
                self._examine(concern, status, damaged)
            except StoreUnavailableError as error:
                if str(error) != self._refused:
                    log.warning("%s (%s)", error, self.path)
                    self._refused = str(error)
                raise
            self._refused = None

    def _examine(self, concern: str, status: os.stat_result | None, damaged: bool = True) -> None:
        # The anchor goes first: a connection that still believes in the file as it was holds locks and a
        # view of the log that a check of the file as it is now must not meet (it waited 10 s on them).
        self._close_anchor()
        if status is None:
            if os.path.lexists(self.path):
                raise StoreUnavailableError(f"The database {self.path.name} cannot be reached (a broken link, or "
                                            "no permission): check DRAWINGS_DB / DATA_DIR")
            if self._file is not None:
                log.warning("database %s disappeared (%s); creating an empty one", self.path, concern)
            self._create()
            return
        if stat.S_ISDIR(status.st_mode):
            raise StoreUnavailableError(f"The database path {self.path.name} is a directory, not a database file; "
                                        "the app leaves it untouched: point DRAWINGS_DB at a file (or unset it)")
        if not stat.S_ISREG(status.st_mode):
            raise StoreUnavailableError(f"The database path {self.path.name} is not a regular file; the app leaves it "
                                        "untouched: point DRAWINGS_DB at a file (or unset it)")
        foreign = self._foreign_reason(status)
        if foreign:
            raise StoreUnavailableError(f"The file {self.path.name} is not a Digit Studio database ({foreign}); the app "
                                        "neither moves nor writes a file it did not make: point DRAWINGS_DB at "
                                        "another file, or move this one away")
        # Grown or rewritten in place with its header intact: most likely another process's checkpoint (replicas
        # on one machine share the file), so no full quick check - it reads every page, ~0.5 s for 100 MB. A
        # damaged page is still found by the query that meets it (SQLite reports it), and then checked in full.
        seen_before = _identity(status) == self._file and self._seen is not None and status.st_size >= self._seen[0]
        problem = self._check_and_migrate(full=damaged or not seen_before or not self._header_is_ours()
                                          or self._has_hole())
        if problem is None:
            self._accept(self._stat())
            return
        self._create(salvage_from=self._move_aside(problem))

    def _salvage(self, damaged: Path, connection: sqlite3.Connection) -> None:
        """Copy what the damaged file still gives into the new one (before it is linked into place)."""
        try:
            report = salvage.copy_readable_rows(damaged, connection)
        except (sqlite3.DatabaseError, OSError) as error:  # the new file (a full disk, say): it starts empty
            log.warning("database %s: the rows of %s could not be copied (%s); it keeps them",
                        self.path, damaged.name, error)
            return
        copied = {table: counts["copied"] for table, counts in report.items() if counts["copied"]}
        lost = sum(counts["refused"] for counts in report.values())
        log.warning("database %s: %s from the damaged file %s%s", self.path,
                    ", ".join(f"{rows} {table}" for table, rows in copied.items()) + " copied" if copied
                    else "no row could be read", damaged.name,
                    f" ({lost} damaged rows refused)" if lost else "")

    def _foreign_reason(self, status: os.stat_result) -> str | None:
        """None when the file is ours to use or repair; else why it is not."""
        if _identity(status) == self._file or status.st_size == 0:
            return None  # the file this process uses (damaged in place, perhaps), or an empty one (nothing to lose)
        try:
            with open(self.path, "rb") as handle:
                header = handle.read(100)
        except OSError as error:
            raise StoreUnavailableError(f"The database {self.path.name} cannot be read ({error.strerror}): check "
                                        "its permissions, or DRAWINGS_DB / DATA_DIR") from None
        if not header.startswith(_MAGIC) or len(header) < 100:
            return "it is not an SQLite file"
        application_id = int.from_bytes(header[68:72], "big")
        user_version = int.from_bytes(header[60:64], "big")
        pages = int.from_bytes(header[28:32], "big")
        if application_id == APPLICATION_ID:
            return None
        if application_id == 0 and (user_version in LEGACY_VERSIONS or (user_version == 0 and pages <= 1)):
            return None  # made by the app before it marked its files, or an empty SQLite database
        return f"an SQLite database of another program (application_id {application_id}, user_version {user_version})"

    def _probe_file(self) -> tuple[int, bool, bool] | None:
        """(size, header is ours, has a hole) of the file in use, through the kept descriptor; None if none."""
        if self._probe is None:
            return None
        try:
            return (os.fstat(self._probe).st_size, _header_is_ours(os.pread(self._probe, 100, 0)),
                    _has_hole(self._probe))
        except OSError:
            return None

    def _has_hole(self) -> bool:
        """For a look with no connection of this process open (a repair): opening and closing is safe there."""
        try:
            descriptor = os.open(self.path, os.O_RDONLY)
        except OSError:
            return False
        try:
            return _has_hole(descriptor)
        finally:
            os.close(descriptor)

    def _header_is_ours(self) -> bool:
        try:
            with open(self.path, "rb") as handle:
                return _header_is_ours(handle.read(100))
        except OSError:
            return False

    def _check_and_migrate(self, *, full: bool = True) -> str | None:
        """Quick-check our file (when `full`) and bring its schema up to date; returns the damage found, or
        None. Errors that are not damage (a full disk, a lock held too long, no permission) raise: they are
        no reason to set a file aside."""
        try:
            connection = self._connect(self.path, create=False)
            try:
                verdict = connection.execute("PRAGMA quick_check").fetchone()[0] if full else "ok"
                if verdict != "ok":
                    return f"quick_check: {verdict}"
                if connection.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
                    connection.execute("PRAGMA journal_mode = WAL")  # persistent: stored in the file
                self._migrate(connection)
                present = {row[0] for row in connection.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
                missing = [table for table in schema.TABLES if table not in present]
                return f"no such table: {', '.join(missing)}" if missing else None
            finally:
                connection.close()
        except sqlite3.DatabaseError as error:
            if any(word in str(error).lower() for word in _FILE_WORDS):
                return str(error)
            raise _unavailable(error, self.path) from None

    def _migrate(self, connection: sqlite3.Connection) -> None:
        tables = {row[0] for row in connection.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        legacy = 0 if "schema_migrations" in tables else connection.execute("PRAGMA user_version").fetchone()[0]
        connection.execute("BEGIN IMMEDIATE")
        try:
            def execute(sql: str, params: tuple = ()) -> sqlite3.Cursor:
                return connection.execute(sql, params)

            applied = schema.migrate(execute, "sqlite", legacy_version=legacy,
                                     on_version=lambda n: connection.execute(f"PRAGMA user_version = {int(n)}"))
            connection.execute(f"PRAGMA application_id = {APPLICATION_ID}")
        except BaseException:
            with contextlib.suppress(sqlite3.Error):
                connection.rollback()
            raise
        connection.commit()
        if applied and (legacy or applied[0] > 1):
            log.info("database %s migrated to schema version %d", self.path, applied[-1])

    def _create(self, salvage_from: Path | None = None) -> None:
        """A new database in place, built under a temporary name; with the rows still readable in the
        damaged file `salvage_from` (store/salvage.py) when one was just set aside."""
        self._close_anchor()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._set_aside_orphans()
            temporary = self.path.with_name(f".{self.path.name}.new-{os.getpid()}-{threading.get_ident()}")
            for leftover in (temporary, Path(f"{temporary}-wal"), Path(f"{temporary}-shm")):
                leftover.unlink(missing_ok=True)
            connection = self._connect(temporary, create=True)
            try:
                connection.execute("PRAGMA journal_mode = WAL")
                self._migrate(connection)
                if salvage_from is not None:
                    self._salvage(salvage_from, connection)
            finally:
                connection.close()  # the last connection: its log is folded into the file
            try:
                os.link(temporary, self.path)  # into place only when complete, and never over another's file
            except FileExistsError:
                log.info("database %s was created by another process meanwhile", self.path)
            finally:
                temporary.unlink(missing_ok=True)
        except sqlite3.DatabaseError as error:
            raise _unavailable(error, self.path) from None
        except OSError as error:
            raise StoreUnavailableError(f"The database {self.path.name} cannot be created ({error.strerror}): check "
                                        "DRAWINGS_DB / DATA_DIR") from None
        status = self._stat()
        foreign = self._foreign_reason(status) if status is not None and _identity(status) != self._file else None
        if status is None or foreign:
            raise StoreUnavailableError(f"The database {self.path.name} could not be created in place: try again")
        log.info("created database %s (schema version %d)", self.path, schema.SCHEMA_VERSION)
        self._accept(status)

    def _accept(self, status: os.stat_result | None) -> None:
        """Use the file at the path from now on (checked, or just made)."""
        if status is None:
            raise StoreUnavailableError(f"The database {self.path.name} vanished while it was checked: try again")
        if _identity(status) != self._file:
            self.generation += 1
        if self._anchor is None:
            try:
                self._anchor = self._connect(self.path, create=False)
                # A read maps the log's index: from now on it holds the file open (fetchall: and no read
                # transaction stays open). Its checkpoints wait for other processes' readers at most 1 s.
                self._anchor.execute("SELECT count(*) FROM sqlite_master").fetchall()
                self._anchor.execute("PRAGMA busy_timeout = 1000")
            except sqlite3.DatabaseError as error:
                self._close_anchor()
                raise _unavailable(error, self.path) from None
            status = self._stat() or status
            with contextlib.suppress(OSError):
                self._probe = os.open(self.path, os.O_RDONLY)
                if _identity(os.fstat(self._probe)) != _identity(status):  # replaced in that instant: next look
                    os.close(self._probe)
                    self._probe = None
        self._file = _identity(status)
        self._note(status)

    def _note(self, status: os.stat_result | None) -> None:
        if status is not None:
            self._seen = (status.st_size, status.st_mtime_ns)

    def _close_anchor(self) -> None:
        if self._anchor is not None:
            with contextlib.suppress(sqlite3.Error):
                self._anchor.close()
            self._anchor = None
        if self._probe is not None:  # after the anchor: no connection of this process is left to lose its locks
            with contextlib.suppress(OSError):
                os.close(self._probe)
            self._probe = None

    def close(self) -> None:
        with self._gate.exclusive():
            self._close_anchor()

    def _set_aside_orphans(self) -> None:
        """A -wal or -shm left without its database would be applied to the new one: set them aside."""
        stamp = _stamp()
        for suffix in ("-wal", "-shm"):
            side = Path(f"{self.path}{suffix}")
            if side.exists():
                os.replace(side, side.with_name(f"{self.path.name}.orphan-{stamp}{suffix}"))

    def _move_aside(self, reason: str) -> Path:
        """Rename the damaged file (with its -wal and -shm) to `<name>.corrupt-<UTC time>`; returns that name."""
        self._close_anchor()
        aside = self.path.with_name(f"{self.path.name}.corrupt-{_stamp()}")
        try:
            os.replace(self.path, aside)
            for suffix in ("-wal", "-shm"):  # a stale log must not be applied to the new file
                side = Path(f"{self.path}{suffix}")
                if side.exists():
                    os.replace(side, Path(f"{aside}{suffix}"))
        except OSError as error:
            raise StoreUnavailableError(f"The database {self.path.name} is damaged and cannot be moved aside "
                                        f"({error.strerror}): move it away by hand") from None
        log.warning("database %s was unreadable (%s): moved it to %s and started a new one with the rows it "
                    "still gives", self.path, reason[:200], aside.name)
        return aside


class _Transaction:
    dialect = "sqlite"

    def __init__(self, connection: sqlite3.Connection):
        self._connection = connection

    def execute(self, sql: str, params: tuple | list = ()) -> sqlite3.Cursor:
        return self._connection.execute(sql, params)


class _Gate:
    """Many operations at once, or one repair alone (a shared/exclusive lock; a waiting repair goes first)."""

    def __init__(self) -> None:
        self._condition = threading.Condition()
        self._sharing = 0
        self._exclusive = False
        self._waiting = 0
        self._mine = threading.local()

    @contextlib.contextmanager
    def shared(self) -> Iterator[None]:
        nested = getattr(self._mine, "depth", 0) > 0  # an operation inside an operation must not wait
        with self._condition:
            while not nested and (self._exclusive or self._waiting):
                self._condition.wait()
            self._sharing += 1
        self._mine.depth = getattr(self._mine, "depth", 0) + 1
        try:
            yield
        finally:
            self._mine.depth -= 1
            with self._condition:
                self._sharing -= 1
                if not self._sharing:
                    self._condition.notify_all()

    @contextlib.contextmanager
    def exclusive(self) -> Iterator[None]:
        with self._condition:
            self._waiting += 1
            try:
                while self._exclusive or self._sharing:
                    self._condition.wait()
            finally:
                self._waiting -= 1
            self._exclusive = True
        try:
            yield
        finally:
            with self._condition:
                self._exclusive = False
                self._condition.notify_all()


class _FileLock(AdvisoryLock):
    def __init__(self, name: str, handle):
        super().__init__(name)
        self._handle = handle

    def release(self) -> None:
        if self._handle is not None:
            fcntl.flock(self._handle.fileno(), fcntl.LOCK_UN)
            self._handle.close()
            self._handle = None

    def held(self) -> bool:
        return self._handle is not None


class _LocalLock(AdvisoryLock):
    def __init__(self, name: str, registry: set[str], guard: threading.Lock):
        super().__init__(name)
        self._registry, self._guard, self._held = registry, guard, True

    def release(self) -> None:
        with self._guard:
            if self._held:
                self._registry.discard(self.name)
                self._held = False

    def held(self) -> bool:
        return self._held


def _header_is_ours(header: bytes) -> bool:
    return header.startswith(_MAGIC) and int.from_bytes(header[68:72], "big") == APPLICATION_ID


def _has_hole(descriptor: int) -> bool:
    """Whether the file has a region never written (it reads as zeros). SQLite writes every page it keeps, so a
    hole is left by someone cutting the file while it grew again. One lseek(SEEK_HOLE), nothing read; where the
    file system cannot say, no hole is reported (the queries and quick checks still find the damage)."""
    try:
        return os.lseek(descriptor, 0, os.SEEK_HOLE) < os.fstat(descriptor).st_size
    except (OSError, AttributeError):  # EINVAL/ENXIO, or no SEEK_HOLE on this system
        return False


def _identity(status: os.stat_result | None) -> tuple[int, int] | None:
    return None if status is None else (status.st_dev, status.st_ino)


def _stamp() -> str:
    return _dt.datetime.now(_dt.timezone.utc).strftime("%Y%m%dT%H%M%S%fZ")


def _unavailable(error: sqlite3.DatabaseError, path: Path) -> Exception:
    """A driver error in the store's words; a statement's own mistake (a bug) stays as it is."""
    text = str(error).lower()
    if isinstance(error, (sqlite3.IntegrityError, sqlite3.ProgrammingError, sqlite3.InterfaceError)):
        return error
    if "full" in text:  # SQLITE_FULL: "database or disk is full"
        return StoreDiskFullError(f"The server's disk is full, so nothing was saved ({path.name}): free some space "
                                  "or delete drawings, then try again")
    if "locked" in text or "busy" in text:
        return StoreUnavailableError(f"The database is busy (another writer held it for over {BUSY_TIMEOUT:.0f} s): "
                                     "try again")
    if "readonly" in text or "read-only" in text:
        return StoreUnavailableError(f"The database {path.name} cannot be written (read-only): check its "
                                     "permissions, or DRAWINGS_DB / DATA_DIR")
    if "i/o" in text:
        return StoreUnavailableError(f"The database {path.name} could not be read or written (disk I/O error): "
                                     "try again; if it lasts, check the disk")
    return StoreUnavailableError(f"The database {path.name} cannot be used ({error}): check DRAWINGS_DB / DATA_DIR")
