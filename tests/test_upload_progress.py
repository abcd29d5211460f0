"""api/upload_progress.py on its own (the live flood is in tests/test_hostile_gradio.py): Gradio's tracking of
upload progress keeps at most TRACKED_MAX uploads and no Event once no GET waits for its id."""
from __future__ import annotations

import asyncio

import pytest
from gradio.route_utils import FileUploadProgressNotTrackedError

from api.upload_progress import BoundedUploadProgress, bound_upload_progress


def test_at_most_the_cap_of_uploads_is_tracked_the_oldest_forgotten_first():
    progress = BoundedUploadProgress(tracked_max=3)
    for upload_id in ("a", "b", "c", "d"):
        progress.track(upload_id)
        progress.append(upload_id, "digit.png", b"x" * 10)
    assert list(progress._statuses) == ["b", "c", "d"]
    with pytest.raises(FileUploadProgressNotTrackedError):
        progress.is_done("a")  # Gradio's reader then ends its stream
    progress.set_done("d")
    assert progress.is_done("d") and progress.pop("d").chunk_size == 10
    assert progress._signals == {}  # before: one Event for every id tracked, read or not


def test_a_get_that_waits_in_vain_leaves_nothing_behind():
    async def scenario():
        progress = BoundedUploadProgress()
        for i in range(100):  # Gradio's route waits 3 s for an id nobody uploads, then answers 404
            with pytest.raises(TimeoutError):
                await asyncio.wait_for(progress.is_tracked(f"never-{i}"), timeout=0.01)
        return progress

    progress = asyncio.run(scenario())
    assert progress._signals == {} and not progress._waiting  # before: 100 Events, kept for ever


def test_getters_waiting_for_one_upload_are_all_woken_when_it_starts():
    async def scenario():
        progress = BoundedUploadProgress()
        waiting = [asyncio.create_task(progress.is_tracked("soon")) for _ in range(3)]
        await asyncio.sleep(0.01)
        assert set(progress._signals) == {"soon"}
        progress.track("soon")  # the upload starts
        woken = await asyncio.wait_for(asyncio.gather(*waiting), timeout=1)
        assert await progress.is_tracked("soon")  # tracked already: no wait
        return progress, woken

    progress, woken = asyncio.run(scenario())
    assert woken == [True, True, True] and progress._signals == {}


def test_the_bounded_tracker_is_the_one_gradios_routes_use():
    import gradio.routes

    tracker = bound_upload_progress()
    assert gradio.routes.file_upload_statuses is tracker and bound_upload_progress() is tracker
