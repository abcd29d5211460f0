"""Issue 19's Models tab in a real browser (Debian's Chromium via Playwright) on a live `python app.py`
started WITHOUT MNIST (no MNIST_DIR, an empty cache, no download): every registry model's card shows
its confusion matrix, what it has learned and its most confident mistakes from the served version's
metadata and ONNX file, and follows a version switch."""
from __future__ import annotations

import io
from urllib.parse import urljoin

import pytest

from tests.app_server import copy_exports, running_app
from tests.test_browser import WAIT, wait_for_text
from training.registry import MODELS

pytestmark = [pytest.mark.browser, pytest.mark.slow]


@pytest.fixture(scope="module")
def server(sync_api, exports_copy, tmp_path_factory):
    folder = tmp_path_factory.mktemp("models_tab_browser")
    exports = copy_exports(exports_copy, folder / "exports")
    with running_app(exports, folder / "app.log", DATA_DIR=str(folder / "data"), PREDICT_WORKERS="0",
                     MNIST_DIR=None, MNIST_CACHE=str(folder / "no-mnist"), MNIST_DOWNLOAD="0") as running:
        yield running.url, exports, folder / "data"


@pytest.fixture(scope="module")
def page(browser, server):
    page = browser.new_page(viewport={"width": 1280, "height": 1200})
    page.set_default_timeout(WAIT * 1000)
    page.goto(server[0], wait_until="load")
    page.wait_for_selector("#sketchpad canvas")
    yield page
    page.close()


def image_of(page, selector: str) -> bytes:
    """The pixels of the figure an image component shows (fetched the way the page fetched them)."""
    from PIL import Image

    source = page.locator(f"{selector} img").get_attribute("src")
    assert source, f"no image in {selector}"
    response = page.request.get(urljoin(page.url, source))
    assert response.ok, response.status
    with Image.open(io.BytesIO(response.body())) as image:
        return image.convert("RGB").tobytes()


def test_every_card_is_complete_without_mnist_and_follows_the_served_version(page, server):
    page.get_by_role("tab", name="Models").click()
    names = [name for name in MODELS if (server[1] / f"{name}.onnx").is_file()]
    assert names
    for name in names:
        note = wait_for_text(page, f"#confusion-note-{name}", lambda text: "correct" in text)
        assert "recorded with the model" in note
        page.locator(f"#confusion-{name} img").wait_for()
        page.locator(f"#mistakes-{name} img").wait_for()
        assert "most confidently wrong" in page.inner_text(f"#mistakes-note-{name}")
    assert "MNIST is not available" not in page.inner_text("body")
    assert "thinks each digit looks like" in page.inner_text("#learned-note-model1")
    assert "32 3×3 filters" in page.inner_text("#learned-note-model2")
    shipped_weights = image_of(page, "#learned-model1")

    # A second version of Model 1, as a finished run leaves it (a tiny model through the real export).
    from tests.fakes import write_tiny_model
    from training.model_versions import ModelVersions

    # As `python -m training model1` leaves it while the app runs: version 2, serving.
    write_tiny_model(ModelVersions(data_dir=server[2], shipped_dir=server[1]), "model1", seed=4)
    page.locator("#models-refresh").click()
    wait_for_text(page, "#learned-note-model1", lambda text: "Model 1 version 2" in text)
    wait_for_text(page, "#confusion-note-model1", lambda text: "of 16 test images" in text)
    assert image_of(page, "#learned-model1") != shipped_weights

    page.locator("#serve-model1-1").click()  # version 1 (the shipped model) again
    wait_for_text(page, "#learned-note-model1", lambda text: "Model 1 version 1" in text)
    wait_for_text(page, "#confusion-note-model1", lambda text: "of 10,000 test images" in text)
    assert image_of(page, "#learned-model1") == shipped_weights
