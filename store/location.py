"""Where the database is: DATABASE_URL, else one SQLite file in the data location.

The one place that resolves the SQLite file's path (sqlite_path); the data location itself is
datadir.py's ($DATA_DIR, /data on a Space with persistent storage, else the per-user folder).
"""
from __future__ import annotations

import logging
import os
from pathlib import Path

import datadir

log = logging.getLogger(__name__)

PROJECT_ROOT = Path(__file__).resolve().parent.parent
LEGACY_DATA_DIR = PROJECT_ROOT / "data"  # the default before DATA_DIR left the source tree (git-ignored)
DB_NAME = "drawings.sqlite3"  # the name predates the store holding more than drawings; kept for existing files


def data_dir() -> Path:
    """The data location (datadir.py)."""
    return datadir.data_dir()


def sqlite_path() -> Path:
    """The SQLite file used when DATABASE_URL is unset: $DRAWINGS_DB, else <data dir>/drawings.sqlite3.

    A database that an earlier version kept in ./data (its default) is still used, with a log line
    saying how to move it, until the data location has one: stored drawings are never left behind."""
    value = os.environ.get("DRAWINGS_DB")
    if value:
        return Path(value)
    path = data_dir() / DB_NAME
    legacy = LEGACY_DATA_DIR / DB_NAME
    if not os.environ.get("DATA_DIR") and not path.exists() and legacy.is_file():
        log.warning("using the drawings database in %s (the old default); move it to %s, or set DATA_DIR", legacy, path)
        return legacy
    return path


def database_url() -> str | None:
    """$DATABASE_URL, or None (unset or blank) for the SQLite file."""
    value = os.environ.get("DATABASE_URL", "").strip()
    return value or None
