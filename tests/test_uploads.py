"""api/uploads.py's cache cap and Gradio's set of uploaded paths (the live upload floods are in
tests/test_hostile_gradio.py)."""
from __future__ import annotations

import os
import time

import gradio as gr

from api.uploads import CacheCap, forget_removed_uploads


def test_the_cap_removes_the_oldest_files_and_gradio_then_forgets_their_paths(tmp_path):
    from gradio import route_utils

    cache = tmp_path / "cache"
    paths = []
    for i in range(5):  # five uploads of 1 KB, each in a folder of its own as Gradio keeps them
        folder = cache / f"upload-{i}"
        folder.mkdir(parents=True)
        path = folder / "digit.png"
        path.write_bytes(b"x" * 1024)
        os.utime(path, (time.time() - 100 + i, time.time() - 100 + i))
        paths.append(str(path))
    with gr.Blocks() as demo:
        gr.Textbox()
    demo.upload_file_set.update(paths)
    assert CacheCap(cache, 3 * 1024).trim() == 2 * 1024  # over 3 KB: the two oldest go
    assert [os.path.exists(path) for path in paths] == [False, False, True, True, True]
    forget_removed_uploads()
    forget_removed_uploads()  # once per process: wrapping twice would change nothing either
    route_utils.delete_files_created_by_app(demo, age=3600)  # Gradio's scheduled cleaning; nothing is that old
    assert demo.upload_file_set == set(paths[2:])  # before: all five, for as long as the server ran
    assert all(os.path.exists(path) for path in paths[2:])
    route_utils.delete_files_created_by_app(demo, age=None)  # Gradio's cleaning at shutdown still deletes them
    assert demo.upload_file_set == set() and not any(os.path.exists(path) for path in paths)
