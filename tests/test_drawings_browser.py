"""Issue 12 in a real browser (Debian's Chromium via Playwright) on a live `python app.py`: the Drawings
tab's gallery, selection and delete, the Train tab's "Include my drawings (N)" and what a run replaces,
and the Models tab's Serve button per version."""
from __future__ import annotations

import base64

import httpx
import pytest

from tests.app_server import copy_exports, running_app
from tests.segments import segment_digit
from tests.test_browser import WAIT, wait_for_text

pytestmark = [pytest.mark.browser, pytest.mark.slow]



@pytest.fixture(scope="module")
def server(sync_api, exports_copy, tmp_path_factory):
    folder = tmp_path_factory.mktemp("drawings_browser")
    exports = copy_exports(exports_copy, folder / "exports")
    with running_app(exports, folder / "app.log", DATA_DIR=str(folder / "data"), PREDICT_WORKERS="0") as running:
        for digit in (2, 2, 5, 5, 5, 8):
            image = "data:image/png;base64," + base64.b64encode(segment_digit(digit, digit)).decode()
            assert httpx.post(f"{running.url}drawings", json={"image": image, "label": digit}).status_code == 201
        yield running.url, exports, folder / "data"


@pytest.fixture(scope="module")
def page(browser, server):
    page = browser.new_page(viewport={"width": 1280, "height": 1200})
    page.set_default_timeout(WAIT * 1000)
    page.goto(server[0])
    page.wait_for_selector("#sketchpad canvas")
    yield page
    page.close()


def test_drawings_tab_gallery_and_delete(page, server):
    page.get_by_role("tab", name="Drawings").click()
    wait_for_text(page, "#drawings-summary", lambda text: "6 drawings saved" in text)
    page.locator("#drawings-gallery img").nth(5).wait_for()
    assert page.locator("#drawings-gallery img").count() == 6
    page.locator("#drawings-digit").get_by_role("radio", name="5").check()  # only the 5s
    wait_for_text(page, "#drawings-note", lambda text: text.startswith("3 drawings"))
    page.locator("#drawings-gallery img").first.click()
    selected = wait_for_text(page, "#drawings-note", lambda text: "Selected drawing #" in text)
    page.locator("#drawings-delete").click()
    wait_for_text(page, "#drawings-summary", lambda text: "5 drawings saved" in text)
    number = int(selected.split("#")[1].split()[0].strip("*:"))
    assert httpx.get(f"{server[0]}drawings/{number}/image").status_code == 404


def test_train_tab_says_what_a_run_replaces_and_models_tab_serves_a_version(page, server):
    page.get_by_role("tab", name="Train").click()
    wait_for_text(page, "#replaces-model1", lambda text: "A run replaces the serving v1" in text)
    assert "Include my drawings (5)" in page.locator("#include-drawings-model1").inner_text()

    # A second version, as a finished run leaves it (the test's tiny model, written through the real export).
    from tests.fakes import write_tiny_model
    from training.model_versions import ModelVersions

    # As `python -m training model1` leaves it while the app runs: version 2, serving.
    write_tiny_model(ModelVersions(data_dir=server[2], shipped_dir=server[1]), "model1", digit=4, accuracy=0.3)

    page.get_by_role("tab", name="Models").click()
    wait_for_text(page, "#version-model1-0", lambda text: "v2 · serving" in text)
    wait_for_text(page, "#version-model1-1", lambda text: text.startswith("v1") and "serving" not in text)
    page.locator("#serve-model1-1").click()
    wait_for_text(page, "#version-model1-1", lambda text: "v1 · serving" in text)
    wait_for_text(page, "#card-model1", lambda text: "Version: 1" in text)
    assert httpx.get(f"{server[0]}model_status").json()["model1"]["version"] == 1


def test_a_run_with_my_drawings_offers_to_restore_the_previous_version(page, server, mnist_dir):
    page.get_by_role("tab", name="Train").click()
    wait_for_text(page, "#replaces-model1", lambda text: "A run replaces the serving v1" in text)
    page.locator("#quick-model1").click()
    page.locator("#include-drawings-model1 input[type=checkbox]").check()
    page.locator("#train-model1").click()
    summary = wait_for_text(page, "#summary-model1", lambda text: "Your drawings:" in text, timeout=240)
    assert "held out" in summary
    restore = page.locator("#restore-model1")
    restore.wait_for(state="visible")
    assert "Restore version 1" in restore.inner_text()
    versions = httpx.get(f"{server[0]}models/model1/versions").json()
    assert versions[0]["serving"] and versions[0]["options"]["include_drawings"]
    restore.click()
    restore.wait_for(state="hidden")
    wait_for_text(page, "#replaces-model1", lambda text: "A run replaces the serving v1" in text)
    assert httpx.get(f"{server[0]}model_status").json()["model1"]["version"] == 1
