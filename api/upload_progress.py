"""Gradio's tracking of upload progress, bounded.

`POST /gradio_api/upload?upload_id=X` makes Gradio 6.31 track X's progress until somebody reads
`GET /gradio_api/upload_progress?upload_id=X` to its end, and every GET of upload_progress leaves an
asyncio.Event for its id in a dict (`FileUploadProgress._signals`, a defaultdict) that nothing ever empties,
answered or not. Measured against `python app.py` (2-core AMD EPYC VM, 2026-12-07; `python -m
benchmarks.attacks.hostile progress URL --pid PID`): see the README's row. Neither needs a token, and a
visitor makes them as fast as its connections allow (a GET of an unknown id waits 3 s, then 404).

`BoundedUploadProgress` stands in for Gradio's tracker (routes.file_upload_statuses): at most TRACKED_MAX
uploads are tracked, the oldest forgotten first (the page reads an upload's progress while it uploads), and
a GET's Event lives only while some GET of that id waits.
"""
from __future__ import annotations

import asyncio
import collections

from gradio.route_utils import FileUploadProgress, FileUploadProgressTracker

TRACKED_MAX = 1000  # uploads whose progress is kept for a reader at once


class BoundedUploadProgress(FileUploadProgress):
    def __init__(self, tracked_max: int = TRACKED_MAX) -> None:
        super().__init__()
        self.tracked_max = tracked_max
        self._statuses: collections.OrderedDict[str, FileUploadProgressTracker] = collections.OrderedDict()
        self._signals: dict[str, asyncio.Event] = {}  # only the ids some GET waits for
        self._waiting: collections.Counter[str] = collections.Counter()

    def track(self, upload_id: str) -> None:
        if upload_id not in self._statuses:
            self._statuses[upload_id] = FileUploadProgressTracker(collections.deque(), False)
            while len(self._statuses) > self.tracked_max:
                self._statuses.popitem(last=False)
        signal = self._signals.get(upload_id)
        if signal is not None:
            signal.set()

    async def is_tracked(self, upload_id: str) -> bool:
        if upload_id in self._statuses:
            return True
        signal = self._signals.setdefault(upload_id, asyncio.Event())
        self._waiting[upload_id] += 1
        try:
            return await signal.wait()
        finally:  # also when Gradio's 3 s wait gives up (cancelled)
            self._waiting[upload_id] -= 1
            if self._waiting[upload_id] <= 0:
                del self._waiting[upload_id]
                self._signals.pop(upload_id, None)


def bound_upload_progress() -> BoundedUploadProgress:
    """Put the bounded tracker in Gradio's routes (once per process); returns it."""
    import gradio.routes

    if not isinstance(gradio.routes.file_upload_statuses, BoundedUploadProgress):
        gradio.routes.file_upload_statuses = BoundedUploadProgress()
    return gradio.routes.file_upload_statuses
