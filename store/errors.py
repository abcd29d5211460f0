"""The store's errors. Every message is user-facing: the HTTP API and the UI show it as it is."""
from __future__ import annotations


class StoreError(RuntimeError):
    """Base class of every error the store raises on purpose."""


class StoreUnavailableError(StoreError):
    """The database cannot be used right now (HTTP 503): a server that does not answer, a file that is
    not the app's database, a location that cannot be written. The client may try again later."""


class StoreDiskFullError(StoreUnavailableError):
    """The database's disk (or the server's) is full (HTTP 507)."""


class DatabaseConfigError(StoreError):
    """DATABASE_URL is unusable (a bad address, a server that refuses or does not answer at start):
    the app stops at start with this one line."""


class LockTimeout(StoreError):
    """An advisory lock was not granted within the time asked for."""
