"""The app's database: drawings, training jobs; model versions with PostgreSQL (training/version_store.py).

    from store import shared_database
    db = shared_database()        # DATABASE_URL=postgresql://... -> PostgreSQL; unset -> the SQLite file

Below the domain packages (drawings/, training/) and the interfaces (api/, ui/); it knows
tables, not HTTP. database.py says what a backend offers, schema.py holds the tables and
their migrations, sqlite.py and postgres.py are the two backends, errors.py the errors.
"""
from __future__ import annotations

import threading
from pathlib import Path

from store.database import AdvisoryLock, Database, Transaction, Watcher
from store.errors import (DatabaseConfigError, LockTimeout, StoreDiskFullError, StoreError,
                          StoreUnavailableError)
from store.location import data_dir, database_url, sqlite_path

__all__ = ["AdvisoryLock", "Database", "DatabaseConfigError", "LockTimeout", "StoreDiskFullError", "StoreError",
           "StoreUnavailableError", "Transaction", "Watcher", "data_dir", "database_url", "open_database",
           "shared_database", "sqlite_path"]

_SCHEMES = ("postgresql://", "postgres://")
_SQLITE_SCHEME = "sqlite:///"
_shared: dict[str, Database] = {}
_shared_lock = threading.Lock()


def open_database(url: str | None = None, *, sqlite_file: str | Path | None = None) -> Database:
    """A new Database: `url` (postgresql://... or sqlite:///PATH), else `sqlite_file`, else DATABASE_URL,
    else the SQLite file (store.location.sqlite_path). Raises DatabaseConfigError for an unusable address."""
    if url is None and sqlite_file is None:
        url = database_url()
    if url is not None and url.startswith(_SQLITE_SCHEME):  # SQLAlchemy's form: sqlite:////absolute/path
        sqlite_file, url = Path(url[len(_SQLITE_SCHEME):]).expanduser(), None
    if url is None:
        from store.sqlite import SQLiteDatabase

        return SQLiteDatabase(sqlite_file if sqlite_file is not None else sqlite_path())
    if not url.startswith(_SCHEMES):
        scheme = url.split(":", 1)[0][:20] if ":" in url else url[:12] + "..."
        raise DatabaseConfigError(f"DATABASE_URL must be a postgresql://user:password@host:port/database address "
                                  f"or sqlite:///PATH, or unset for the SQLite file in DATA_DIR; it starts with "
                                  f"{scheme!r}")
    try:
        from store.postgres import PostgresDatabase
    except ImportError as error:  # psycopg is in requirements-serve.txt; a hand-made install may lack it
        raise DatabaseConfigError(f"DATABASE_URL names PostgreSQL but psycopg is not installed ({error}): "
                                  "pip install -r requirements-serve.txt") from None
    return PostgresDatabase(url)


def shared_database(*, sqlite_file: str | Path | None = None) -> Database:
    """The process's one Database for the current settings, or for `sqlite_file`: its pool, or its file
    guard (one repair at a time), is shared by every store that uses it - the REST API, the UI and a
    training in this process."""
    url = None if sqlite_file is not None else database_url()
    key = url or f"sqlite:{Path(sqlite_file if sqlite_file is not None else sqlite_path()).absolute()}"
    with _shared_lock:
        if key not in _shared:
            _shared[key] = open_database(url, sqlite_file=sqlite_file)
        return _shared[key]
