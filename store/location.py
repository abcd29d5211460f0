"""Where the database is: DATABASE_URL, else one SQLite file in the data folder.

The one place that resolves the SQLite file's path (sqlite_path), so that moving the
data folder (DATA_DIR) changes it everywhere.
"""
from __future__ import annotations

import os
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_DATA_DIR = PROJECT_ROOT / "data"  # git-ignored
DB_NAME = "drawings.sqlite3"  # the name predates the store holding more than drawings; kept for existing files


def data_dir(override: str | os.PathLike | None = None) -> Path:
    """Where the app keeps its data: `override`, else $DATA_DIR, else ./data."""
    return Path(override or os.environ.get("DATA_DIR") or DEFAULT_DATA_DIR)


def sqlite_path() -> Path:
    """The SQLite file used when DATABASE_URL is unset: $DRAWINGS_DB, else <data dir>/drawings.sqlite3."""
    value = os.environ.get("DRAWINGS_DB")
    return Path(value) if value else data_dir() / DB_NAME


def database_url() -> str | None:
    """$DATABASE_URL, or None (unset or blank) for the SQLite file."""
    value = os.environ.get("DATABASE_URL", "").strip()
    return value or None
