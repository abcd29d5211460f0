"""End to end in a real browser: Debian's Chromium driven by Playwright (never a downloaded browser).

Draws digits with mouse strokes on the sketchpad of a live `python app.py`, checks what the
models read, clears, then trains Model 1 from the Train tab and from the REST API and watches
the page follow both.

    UPDATE_SCREENSHOT=1 python -m pytest tests/test_browser.py   # also rewrites docs/screenshot.png
"""
from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import pytest
from PIL import Image, ImageDraw

from tests.app_server import ROOT, copy_exports, running_app

pytestmark = [pytest.mark.browser, pytest.mark.slow]

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]
SCREENSHOT = ROOT / "docs" / "screenshot.png"
WAIT = 90  # s: generous, the test machine may be busy

# Strokes in units of the canvas half-width, from its centre (-1..1).
SEVEN = [[(-0.45, -0.5), (0.45, -0.5), (-0.05, 0.65)]]
ONE = [[(-0.1, -0.35), (0.05, -0.6), (0.05, 0.6)]]


@pytest.fixture(scope="module")
def sync_api():
    if not CHROMIUM.is_file():
        pytest.skip(f"Debian's chromium is not installed at {CHROMIUM} (apt-get install chromium)")
    return pytest.importorskip("playwright.sync_api", reason="playwright is not installed "
                                                              "(pip install -r requirements-dev.txt)")


@pytest.fixture(scope="module")
def server(sync_api, exports_copy, tmp_path_factory, request):
    """The app with a private copy of the exports; Model 1 quick-trained first if none is shipped."""
    exports = copy_exports(exports_copy, tmp_path_factory.mktemp("browser_exports"))
    log = tmp_path_factory.mktemp("browser_server") / "app.log"
    with running_app(exports, log) as (url, _pid):
        if not (exports / "model1.onnx").is_file():
            from gradio_client import Client

            request.getfixturevalue("mnist_dir")  # training needs MNIST: skips with the reason otherwise
            client = Client(url, verbose=False)
            client.submit(2, 200, 0.1, 2000, "", api_name="/train_model1").result(timeout=300)
            client.close()
        yield url


@pytest.fixture(scope="module")
def page(sync_api, server):
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1280, "height": 960})
        page.set_default_timeout(WAIT * 1000)
        page.goto(server)
        page.wait_for_selector("#sketchpad canvas")
        yield page
        browser.close()


def draw(page, strokes) -> None:
    """Draw with the mouse, like a person: press, move in small steps, release."""
    box = page.locator("#sketchpad canvas").last.bounding_box()
    centre_x, centre_y = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
    half = 130  # px: inside the 280 px drawing area, whatever the canvas element's own size

    def at(point):
        return centre_x + point[0] * half, centre_y + point[1] * half

    for stroke in strokes:
        page.mouse.move(*at(stroke[0]))
        page.mouse.down()
        for start, end in zip(stroke, stroke[1:]):
            for step in range(1, 7):  # each move is a round trip to the browser: few, but a smooth line
                t = step / 6
                page.mouse.move(*at((start[0] + (end[0] - start[0]) * t, start[1] + (end[1] - start[1]) * t)))
        page.mouse.up()


def wait_for_text(page, selector: str, predicate, timeout: float = WAIT) -> str:
    deadline = time.monotonic() + timeout
    text = ""
    while time.monotonic() < deadline:
        text = page.inner_text(selector)
        if predicate(text):
            return text
        time.sleep(0.2)
    raise AssertionError(f"{selector} never matched; last text: {text!r}")


def progress_of(page, name: str) -> float:
    return float(page.locator(f"#progress-{name} input[type=number]").input_value() or 0)


def test_drawing_is_read_live_and_clear_starts_over(page, tmp_path):
    hint = page.inner_text("#verdict")
    assert "Draw a digit" in hint

    draw(page, SEVEN)  # no tool to pick first: the first stroke draws
    caption = wait_for_text(page, "#caption-model1", lambda text: text.startswith("Reads"))
    assert caption.startswith("Reads 7"), caption
    assert "7" in page.inner_text("#verdict")
    label = [line.strip() for line in page.inner_text("#probabilities-model1").splitlines() if line.strip()]
    assert label[:2] == ["Model 1: logistic regression", "7"], label  # the title, then the top class
    assert page.locator("#model-input img").get_attribute("src")  # the 28x28 input is shown
    time.sleep(1)  # let the label bars settle before the picture
    page.screenshot(path=str(tmp_path / "draw.png"), full_page=True)
    if os.environ.get("UPDATE_SCREENSHOT"):
        SCREENSHOT.parent.mkdir(exist_ok=True)
        shutil.copy(tmp_path / "draw.png", SCREENSHOT)

    page.click("#clear")
    wait_for_text(page, "#verdict", lambda text: "Draw a digit" in text)
    wait_for_text(page, "#caption-model1", lambda text: text.strip() == "", timeout=10)

    time.sleep(1)  # the sketchpad re-initialises its canvas after a reset
    draw(page, ONE)
    caption = wait_for_text(page, "#caption-model1", lambda text: text.startswith("Reads"))
    assert caption.startswith("Reads 1"), caption


def test_model_choice_and_upload(page, sync_api, tmp_path):
    page.get_by_text("Model 1: logistic regression", exact=True).first.click()
    page.wait_for_function("() => !document.querySelector('#probabilities-model2')?.checkVisibility()")
    page.get_by_text("Both, side by side").click()
    page.locator("#probabilities-model2").wait_for(state="visible")

    page.get_by_role("tab", name="Upload").click()
    wait_for_text(page, "#verdict", lambda text: "Upload a picture" in text)
    picture = tmp_path / "seven.png"
    Image.new("RGB", (200, 200), "white").save(picture)
    image = Image.open(picture)
    ImageDraw.Draw(image).line([(50, 40), (150, 40), (85, 170)], fill="black", width=16)
    image.save(picture)
    page.locator("#upload input[type=file]").set_input_files(str(picture))
    caption = wait_for_text(page, "#caption-model1", lambda text: text.startswith("Reads"))
    assert caption.startswith("Reads 7"), caption

    broken = tmp_path / "broken.png"
    broken.write_bytes(b"\x89PNG\r\n\x1a\n but not really")
    page.locator("#upload input[type=file]").set_input_files(str(broken))
    wait_for_text(page, "#verdict", lambda text: "Cannot read that image" in text)
    sync_api.expect(page.get_by_text("Warning").first).to_be_visible(timeout=WAIT * 1000)  # a gr.Warning toast, not an error
    page.get_by_role("tab", name="Draw").last.click()  # back to the sketchpad
    wait_for_text(page, "#verdict", lambda text: "Draw a digit" in text or "read" in text)


def test_training_from_the_train_tab_streams_progress(page, sync_api, mnist_dir):
    page.get_by_role("tab", name="Train").click()
    page.click("#quick-model1")
    limit = page.locator("#limit-model1 input")
    deadline = time.monotonic() + WAIT
    while limit.input_value() in ("", "0") and time.monotonic() < deadline:
        time.sleep(0.1)
    assert int(limit.input_value()) > 0  # quick settings use a subset of the images

    page.click("#train-model1")
    seen = watch_progress(page, "model1")
    assert any(0 < value < 100 for value in seen), f"no progress between 0 and 100: {seen}"
    # The summary comes with the trainer's Result, an update after the "Done" progress event.
    sync_api.expect(page.locator("#summary-model1")).to_contain_text("Test accuracy", timeout=WAIT * 1000)
    # Unlocked again for the next run: a step chained after the stream, so it may land a moment later.
    sync_api.expect(page.locator("#train-model1")).to_be_enabled(timeout=WAIT * 1000)


def test_training_started_through_rest_shows_in_the_train_tab(page, sync_api, server, mnist_dir):
    import httpx

    assert page.get_by_role("tab", name="Train").get_attribute("aria-selected") == "true"
    # Long enough (several seconds) for the page's watch timer to catch it under way.
    response = httpx.post(server + "train/model1", json={"preset": "quick", "epochs": 3, "limit": 8000},
                          timeout=30)
    assert response.status_code == 202, response.text
    seen = watch_progress(page, "model1")
    # The page showed the new run from its start (progress below 100) to its end.
    assert any(value < 100 for value in seen) and seen[-1] == 100.0, seen
    # The summary comes with the trainer's Result, an update after the "Done" progress event.
    sync_api.expect(page.locator("#summary-model1")).to_contain_text("Test accuracy", timeout=WAIT * 1000)


def watch_progress(page, name: str) -> list[float]:
    """Progress values the page shows for a run that is starting now, until it is done.

    The panel may still show the previous run's "Done" at 100%: a run counts only once
    the page has shown it under way.
    """
    seen: list[float] = []
    under_way = False
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        value = progress_of(page, name)
        status = page.inner_text(f"#status-{name}")
        if not seen or value != seen[-1]:
            seen.append(value)
        assert "failed" not in status.lower(), status
        under_way = under_way or value < 100 or not status.startswith("Done")
        if under_way and value == 100.0 and status.startswith("Done"):
            return seen
        time.sleep(0.1)
    raise AssertionError(f"training did not finish on the page; progress seen: {seen}")
