"""Where Digit Studio writes: one data location, DATA_DIR, never the source tree.

    data_dir()            # $DATA_DIR, else /data on a Hugging Face Space with persistent storage,
                          # else the per-user data folder (~/.local/share/digit-studio on Linux)
    cache_dir("mnist")    # <data dir>/cache/mnist: caches live in the data location too
    apply_defaults()      # before Gradio is imported: its upload cache goes to <data dir>/cache/gradio

What lives there (each reader resolves its own path through this module):
    versions/<model>/...  trained model versions and which one serves (training/model_versions.py)
    drawings.sqlite3      the corrected drawings (drawings/store.py; $DRAWINGS_DB moves it)
    cache/canvas-data     the rendered canvas mix (training/canvas_data.py; $CANVAS_DATA_CACHE moves it)
    cache/mnist           a downloaded MNIST (training/mnist.py; $MNIST_CACHE moves it)
    cache/gradio          Gradio's uploads and outputs ($GRADIO_TEMP_DIR moves it)

The shipped models in exports/ are version 1 and are only ever read, so a checkout stays
clean (`git status`) whatever the app, the CLI trainers or the benchmarks do.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

APP_NAME = "digit-studio"
SPACE_DATA = Path("/data")  # a Hugging Face Space's persistent storage is mounted here


def data_dir() -> Path:
    """$DATA_DIR; else /data on a Hugging Face Space (SPACE_ID set) whose persistent storage is
    mounted and writable, so drawings and trained versions survive a restart; else per_user_dir()."""
    configured = os.environ.get("DATA_DIR", "").strip()
    if configured:
        return Path(configured).expanduser()
    if os.environ.get("SPACE_ID") and SPACE_DATA.is_dir() and os.access(SPACE_DATA, os.W_OK):
        return SPACE_DATA
    return per_user_dir()


def per_user_dir() -> Path:
    """The platform's per-user data folder (the XDG base directory rule on Linux, as platformdirs has it)."""
    home = Path.home()
    if sys.platform == "win32":
        return Path(os.environ.get("LOCALAPPDATA") or home / "AppData" / "Local") / APP_NAME
    if sys.platform == "darwin":
        return home / "Library" / "Application Support" / APP_NAME
    xdg = os.environ.get("XDG_DATA_HOME", "").strip()
    # The XDG rule: a relative $XDG_DATA_HOME is invalid and is ignored.
    return (Path(xdg) if xdg and Path(xdg).is_absolute() else home / ".local" / "share") / APP_NAME


def cache_dir(name: str) -> Path:
    """<data dir>/cache/<name>: what can be rebuilt (downloads, renders, uploads)."""
    return data_dir() / "cache" / name


def apply_defaults() -> None:
    """Point Gradio's cache (uploads, outputs) into the data location unless $GRADIO_TEMP_DIR says
    otherwise; read when Gradio is imported, so app.py calls this first."""
    os.environ.setdefault("GRADIO_TEMP_DIR", str(cache_dir("gradio")))
