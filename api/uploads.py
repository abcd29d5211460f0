"""Bounds on Gradio's upload cache (issue 18, item 10).

`POST /gradio_api/upload` needs no token (the page uploads a picture to predict it, gradio_client a
file per call) and Gradio keeps each file for GRADIO_CACHE_MAX_AGE: 100 uploads of 4.9 MB from one
script were all accepted, 470 MB written in 1.5 s (~1 TB an hour). Two bounds:
- a per-client rate in bytes (UPLOAD_MB_PER_MINUTE, each upload counted at least MIN_UPLOAD_COST so
  that tiny ones are bounded too): past it 429 with Retry-After, in words, before the body is read;
- a total size for the whole cache (CACHE_MAX_MB): after an upload the cache is measured and, while
  it is over, the oldest files are removed first (a drawing is read within milliseconds of its
  upload; a file an event still needs is the newest, not the oldest).

Gradio keeps the path of every upload in a set (`Blocks.upload_file_set`, for its check of the files an
event names) and takes a path out when its own cleaning (delete_cache) deletes the file; a file the cap
removed first stayed in the set for good (Gradio skips a file it cannot find). `forget_removed_uploads`
takes those paths out at each of Gradio's cleanings.
"""
from __future__ import annotations

import functools
import logging
import os
import threading
import time
from pathlib import Path

from api.buckets import ClientBuckets, refused, setting

log = logging.getLogger(__name__)

MB = 1024 * 1024
UPLOAD_MB_PER_MINUTE = 30  # per client ($GRADIO_UPLOAD_MB_PER_MINUTE; 0 turns the rate off); a drawing is ~7 KB
UPLOAD_BURST_MB = 30  # what a client may upload at once before the rate applies (six 5 MB photos)
MIN_UPLOAD_COST = 16 * 1024  # bytes an upload counts at least: ~1,900 small uploads a minute per client
CACHE_MAX_MB = 1024  # the whole Gradio cache ($GRADIO_CACHE_MAX_MB; 0: no cap)


class CacheCap:
    """Keeps the files under `folder` to at most `max_bytes` in all, removing the oldest first.
    `trim_soon()` runs a trim in a thread; calls while one runs make it run once more, not pile up."""

    def __init__(self, folder: Path, max_bytes: int):
        self.folder, self.max_bytes = Path(folder), max_bytes
        self._lock = threading.Lock()
        self._running = self._again = False
        self._logged = 0.0  # when a trim was last logged: at most one line a minute
        self.removed = 0  # bytes removed in all

    def trim_soon(self) -> None:
        if self.max_bytes <= 0:
            return
        with self._lock:
            if self._running:
                self._again = True
                return
            self._running = True
        threading.Thread(target=self._trim_loop, name="gradio-cache-cap", daemon=True).start()

    def _trim_loop(self) -> None:
        while True:
            try:
                self.trim()
            except Exception:  # noqa: BLE001 - a failed trim is retried at the next upload
                log.exception("trimming Gradio's cache failed")
            with self._lock:
                if not self._again:
                    self._running = False
                    return
                self._again = False

    def trim(self) -> int:
        """Remove the oldest files until the cache holds at most max_bytes; returns the bytes removed."""
        files = []
        for root, _, names in os.walk(self.folder):
            for name in names:
                path = os.path.join(root, name)
                try:
                    stat = os.stat(path, follow_symlinks=False)
                except OSError:
                    continue  # removed meanwhile (Gradio's own cleaning)
                files.append((stat.st_mtime, stat.st_size, path))
        total = sum(size for _, size, _ in files)
        removed = 0
        if total <= self.max_bytes:
            return 0
        files.sort()
        for _, size, path in files:
            if total - removed <= self.max_bytes:
                break
            try:
                os.unlink(path)
            except OSError:
                continue
            removed += size
            try:
                os.rmdir(os.path.dirname(path))  # Gradio keeps each upload in a folder of its own
            except OSError:
                pass  # not empty, or the cache folder itself
        self.removed += removed
        if time.monotonic() - self._logged >= 60:
            self._logged = time.monotonic()
            log.warning("Gradio's cache held %.0f MB, over GRADIO_CACHE_MAX_MB: removed the oldest files "
                        "(%.0f MB so far)", total / MB, self.removed / MB)
        return removed


class UploadLimit:
    """ASGI middleware over the Gradio app: uploads are rated per client, and the cache is capped."""

    def __init__(self, app, folder: Path, prefix: str = "/gradio_api/"):
        self.app = app
        self.path = prefix + "upload"
        rate = setting("GRADIO_UPLOAD_MB_PER_MINUTE", UPLOAD_MB_PER_MINUTE) * MB
        self.buckets = ClientBuckets(rate / 60.0, max(UPLOAD_BURST_MB * MB, MIN_UPLOAD_COST))
        self.cap = CacheCap(folder, int(setting("GRADIO_CACHE_MAX_MB", CACHE_MAX_MB) * MB))

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http" or scope.get("method") != "POST" or not scope.get("path", "").startswith(self.path):
            await self.app(scope, receive, send)
            return
        length = dict(scope.get("headers") or []).get(b"content-length", b"")
        # A chunked upload has no length: it counts as the largest one allowed (Gradio stops it there).
        cost = max(int(length) if length.isdigit() else 5 * MB, MIN_UPLOAD_COST)
        if await refused(self.buckets, scope, send, cost,
                         f"Too many uploads from your address: at most {self.buckets.rate * 60 / MB:.0f} MB a minute."):
            return
        try:
            await self.app(scope, receive, send)
        finally:
            self.cap.trim_soon()


def forget_removed_uploads() -> None:
    """Gradio's scheduled cleaning also forgets the paths of files already removed (by the cache cap); once per
    process."""
    from gradio import route_utils

    original = route_utils.delete_files_created_by_app
    if getattr(original, "_digit_studio_forgets", False):
        return

    @functools.wraps(original)
    def delete_files_created_by_app(blocks, age) -> None:
        for paths in blocks.temp_file_sets:
            # list() copies the set in one step (no other thread runs meanwhile); the files are looked at outside
            gone = {path for path in list(paths) if not os.path.lexists(path)}
            paths.difference_update(gone)
        original(blocks, age)

    delete_files_created_by_app._digit_studio_forgets = True
    route_utils.delete_files_created_by_app = delete_files_created_by_app
