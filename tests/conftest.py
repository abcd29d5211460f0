"""Shared fixtures.

The whole session runs against a temporary copy of the shipped `exports/`
(EXPORTS_DIR points at it), so no test can overwrite a shipped model.
Real-data tests need MNIST_DIR (CI sets it to ../shared/mnist) and skip with that reason otherwise.
"""
from __future__ import annotations

import importlib.util
import os
import shutil
import sys
from pathlib import Path

import pytest

from inference import privacy

privacy.apply_environment()  # before anything loads onnxruntime: the tests call no outside host either

from benchmarks.browser.pen import CHROMIUM, CHROMIUM_ARGS  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

SHIPPED_EXPORTS = ROOT / "exports"
TENSORFLOW_MISSING = importlib.util.find_spec("tensorflow") is None


def pytest_runtest_setup(item):
    # The serving-only install (requirements-serve.txt) has no TensorFlow: what needs it skips, saying so.
    if TENSORFLOW_MISSING and item.get_closest_marker("tensorflow"):
        pytest.skip("needs TensorFlow, which this install (requirements-serve.txt) leaves out: "
                    "pip install -r requirements.txt")


@pytest.fixture(scope="session", autouse=True)
def exports_copy(tmp_path_factory) -> Path:
    """A session-wide copy of the shipped models; EXPORTS_DIR points at it."""
    folder = tmp_path_factory.mktemp("exports")
    for path in SHIPPED_EXPORTS.glob("*"):
        if path.is_file() and not path.name.startswith("."):
            shutil.copy2(path, folder / path.name)
    previous = os.environ.get("EXPORTS_DIR")
    os.environ["EXPORTS_DIR"] = str(folder)
    yield folder
    if previous is None:
        os.environ.pop("EXPORTS_DIR", None)
    else:
        os.environ["EXPORTS_DIR"] = previous


@pytest.fixture(scope="session", autouse=True)
def data_copy(tmp_path_factory) -> Path:
    """A session-wide DATA_DIR (model versions, the drawings database, Gradio's cache): no test
    writes the developer's data location. One cache is shared with it: the rendered canvas mix
    (training/canvas_data.py, content-keyed), which takes minutes to draw on 2 cores; every
    server and trainer of the session, and the next session, reuse it."""
    import datadir

    folder = tmp_path_factory.mktemp("data")
    saved = {key: os.environ.get(key) for key in ("DATA_DIR", "DRAWINGS_DB", "CANVAS_DATA_CACHE")}
    os.environ.setdefault("CANVAS_DATA_CACHE", str(datadir.cache_dir("canvas-data")))
    os.environ["DATA_DIR"] = str(folder)
    os.environ.pop("DRAWINGS_DB", None)
    yield folder
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


@pytest.fixture(scope="session")
def postgres_server():
    """A real PostgreSQL server for the session (tests/postgres.py); skips only when its programs are missing."""
    from tests.postgres import PostgresServer, find_bindir

    bindir = find_bindir()
    if bindir is None:
        pytest.skip("PostgreSQL's programs (initdb, pg_ctl) are not installed: apt-get install postgresql "
                    "(.ci/run does), or set PG_BINDIR")
    server = PostgresServer.start(bindir)
    yield server
    server.close()


@pytest.fixture
def postgres_url(postgres_server) -> str:
    """A fresh, empty database on the session's server, dropped after the test."""
    url = postgres_server.new_database()
    yield url
    postgres_server.drop_database(url)


@pytest.fixture(params=["sqlite", "postgresql"])
def make_store(request, tmp_path):
    """make_store(max_rows=...) -> a new, empty DrawingStore on SQLite (a file in tmp_path) or on the
    session's PostgreSQL server: the drawings tests run on both."""
    from drawings.store import MAX_ROWS, DrawingStore
    from store import open_database

    cleanups, made = [], []

    def make(*, max_rows: int = MAX_ROWS) -> DrawingStore:
        made.append(1)
        if request.param == "sqlite":
            return DrawingStore(tmp_path / f"db{len(made)}" / "drawings.sqlite3", max_rows=max_rows)
        server = request.getfixturevalue("postgres_server")
        url = server.new_database()
        database = open_database(url)
        cleanups.append(lambda: (database.close(), server.drop_database(url)))
        return DrawingStore(database, max_rows=max_rows)

    make.backend = request.param
    yield make
    for cleanup in cleanups:
        cleanup()


@pytest.fixture(params=["sqlite", "postgresql"])
def database(request, tmp_path):
    """A fresh store Database on SQLite (a file in tmp_path) or on the session's PostgreSQL server:
    the model-versions tests run on both."""
    from store import open_database

    if request.param == "sqlite":
        db = open_database(sqlite_file=tmp_path / "db" / "app.sqlite3")
        db.ensure_ready()
        yield db
        db.close()
        return
    server = request.getfixturevalue("postgres_server")
    url = server.new_database()
    db = open_database(url)
    yield db
    db.close()
    server.drop_database(url)


@pytest.fixture
def model1_exports(empty_exports, exports_copy) -> Path:
    """A shipped folder holding Model 1 only (the others not exported), and a fresh DATA_DIR."""
    for path in exports_copy.glob("model1.*"):
        shutil.copy2(path, empty_exports / path.name)
    return empty_exports


@pytest.fixture
def empty_exports(tmp_path, monkeypatch) -> Path:
    """A fresh, empty exports folder for tests that train or corrupt models, and a fresh DATA_DIR
    (tmp_path/"data"), where their runs become versions, away from other tests."""
    folder = tmp_path / "exports"
    folder.mkdir()
    monkeypatch.setenv("EXPORTS_DIR", str(folder))
    monkeypatch.setenv("DATA_DIR", str(tmp_path / "data"))
    return folder


@pytest.fixture(scope="session")
def mnist_dir() -> Path:
    value = os.environ.get("MNIST_DIR")
    if not value:
        pytest.skip("MNIST_DIR not set (CI sets MNIST_DIR=../shared/mnist)")
    path = Path(value)
    if not path.is_dir():
        pytest.skip(f"MNIST_DIR={value} is not a folder")
    return path


@pytest.fixture(scope="session")
def mnist(mnist_dir):
    """The real MNIST data set (uint8 images, int64 labels)."""
    from training.mnist import load_mnist

    return load_mnist(mnist_dir, download=False)


@pytest.fixture(scope="session")
def shipped_models_available(exports_copy) -> bool:
    from training.registry import MODELS

    return all((exports_copy / f"{name}.onnx").is_file() for name in MODELS)


# -- headless Chromium for the browser tests (Playwright driving Debian's /usr/bin/chromium)

@pytest.fixture(scope="module")
def sync_api():
    if not CHROMIUM.is_file():
        pytest.skip(f"Debian's chromium is not installed at {CHROMIUM} (apt-get install chromium)")
    return pytest.importorskip("playwright.sync_api", reason="playwright is not installed "
                                                              "(pip install -r requirements-dev.txt)")


@pytest.fixture(scope="module")
def browser(sync_api):
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield browser
        browser.close()


# -- one live app for the Explain tests (issue 19): tests/test_explain_api.py and test_explain_browser.py

@pytest.fixture(scope="session")
def explain_app(exports_copy, tmp_path_factory) -> str:
    """`python app.py` with small explanation bounds, so that the API tests' floods reach them (1 worker,
    1 waiting, 2 per client); the browser tests' one page keeps one request in flight. Shared by both
    modules: one server start (~5 s here, a minute on a loaded machine) instead of two."""
    import time

    import httpx

    from tests.app_server import copy_exports, running_app, wait_for_workers
    from training.registry import MODELS

    if not all((exports_copy / f"{name}.onnx").is_file() for name in MODELS):
        pytest.skip("every registry model's shipped export is needed")
    root = tmp_path_factory.mktemp("explain_app")
    exports = copy_exports(exports_copy, root / "exports")
    with running_app(exports, root / "server.log", PREDICT_WORKERS="2", EXPLAIN_WORKERS="1", EXPLAIN_WAITING="1",
                     EXPLAIN_PER_CLIENT="2", GRADIO_TEMP_DIR=str(root / "gradio")) as app:
        env = lambda: httpx.get(app.url + "env", timeout=120).json()  # noqa: E731
        wait_for_workers(env, 2, timeout=300)  # a busy machine: the workers start together with the explainer
        deadline = time.monotonic() + 300
        while env()["explanation_workers"]["ready"] < 1:
            assert time.monotonic() < deadline, "the explanation worker did not start"
            time.sleep(0.1)
        yield app.url
