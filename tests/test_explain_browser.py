"""The Draw tab's Explain view in a real browser (Debian's Chromium through Playwright), on a desktop
and on a 390x844 touch phone: closed by default and silent while closed; one click or tap opens it;
the maps appear for a drawn 7 and change with the drawing; an ambiguous 4/9 shows both candidates
side by side; Model 1 shows its ten weight images with the drawing's score, Model 2 its layers."""
from __future__ import annotations

import json

import pytest

from benchmarks.browser.pen import AMBIGUOUS_FOUR_NINE, DIGIT_STROKES, draw_mouse, draw_touch
from tests.test_browser import PHONE, WAIT, clear, open_page, wait_for_answer
from training.registry import MODELS

pytestmark = [pytest.mark.browser, pytest.mark.slow]

EXPLAINED = """() => {
    const v = document.querySelector('#sketchpad canvas').dataset.version;
    return [...document.querySelectorAll('#explain-view .ds-explain-model')].every(s => s.dataset.version === v);
}"""


@pytest.fixture(scope="module")
def server(sync_api, explain_app) -> str:
    return explain_app  # tests/conftest.py: shared with tests/test_explain_api.py


def explain_posts(page) -> list[dict]:
    """The /predict bodies the page sent that asked for explanations."""
    return [body for body in page.__sent if body.get("explain")]


def record_posts(page) -> None:
    page.__sent = []

    def seen(request):
        if request.method == "POST" and request.url.endswith("/predict") and request.post_data:
            page.__sent.append(json.loads(request.post_data))

    page.on("request", seen)


def section(page, model: str) -> str:
    return f'#explain-view .ds-explain-model[data-model="{model}"]'


def map_sources(page, model: str) -> list[str]:
    return page.eval_on_selector_all(f"{section(page, model)} .ds-map img", "imgs => imgs.map(i => i.src)")


@pytest.fixture(scope="module")
def desktop(browser, server):
    page = open_page(browser, server, viewport={"width": 1280, "height": 960})
    page.wait_for_selector("#explain summary")
    record_posts(page)
    yield page
    page.context.close()


def test_closed_by_default_and_silent_while_closed(desktop):
    assert desktop.evaluate("document.querySelector('#explain').open") is False
    draw_mouse(desktop, DIGIT_STROKES[1])
    wait_for_answer(desktop)
    assert explain_posts(desktop) == []  # nothing more is asked than before the view existed
    assert not desktop.is_visible(f"{section(desktop, 'model2')} .ds-explain-caption")
    clear(desktop)


def test_one_click_opens_it_and_the_maps_follow_the_drawing(desktop):
    desktop.click("#explain summary")
    assert desktop.evaluate("document.querySelector('#explain').open") is True
    draw_mouse(desktop, DIGIT_STROKES[7])
    desktop.wait_for_function(EXPLAINED)
    for model in MODELS:
        sources = map_sources(desktop, model)
        assert len(sources) == 3 and all(src.startswith("data:image/png;base64,") for src in sources)
        assert "Reads 7" in desktop.inner_text(f"{section(desktop, model)} .ds-explain-caption")
    assert len(explain_posts(desktop)) >= 1 and all(body["model"] == "all" for body in explain_posts(desktop))
    legend = desktop.inner_text("#explain-view .ds-legend")
    assert "blue" in legend and "for" in legend and "orange" in legend and "against" in legend
    # Model 1: its ten weight images with the drawing's score against each, the 7 highlighted.
    templates = desktop.eval_on_selector_all(f"{section(desktop, 'model1')} .ds-template figcaption",
                                             "cells => cells.map(c => c.innerText)")
    assert [cell.split()[0] for cell in templates] == [str(digit) for digit in range(10)]
    assert desktop.inner_text(f"{section(desktop, 'model1')} .ds-template.ds-top figcaption").startswith("7")
    before = {model: map_sources(desktop, model) for model in MODELS}
    # Change the drawing: a bar across the 7's stem. The maps follow.
    draw_mouse(desktop, [[(-0.25, 0.1), (0.2, 0.1)]])
    desktop.wait_for_function(EXPLAINED)
    assert all(map_sources(desktop, model) != before[model] for model in MODELS)


def test_the_cnn_layers_show_their_activation_maps(desktop):
    desktop.wait_for_function(EXPLAINED)
    layers = desktop.eval_on_selector_all(
        f"{section(desktop, 'model2')} .ds-layer",
        "figs => figs.map(f => [f.querySelector('figcaption').innerText, f.querySelector('img').naturalWidth])")
    assert [caption.split(":")[0] for caption, _ in layers] == ["conv 1", "pool 1", "conv 2", "pool 2"]
    assert "32 maps of 26×26" in layers[0][0] and "64 maps of 11×11" in layers[2][0]
    # The mosaics loaded: 8 tiles a row, 1 px apart (26, 13, 11 and 5 px tiles).
    assert [width for _, width in layers] == [8 * (side + 1) - 1 for side in (26, 13, 11, 5)]
    assert desktop.eval_on_selector_all(f"{section(desktop, 'model1')} .ds-layer", "figs => figs.length") == 0


def test_an_ambiguous_four_or_nine_shows_both_candidates(desktop):
    clear(desktop)
    draw_mouse(desktop, AMBIGUOUS_FOUR_NINE)
    desktop.wait_for_function(EXPLAINED)
    unsure = [model for model in MODELS
              if desktop.get_attribute(section(desktop, model), "data-verdict") == "unsure"]
    assert "model2" in unsure, desktop.inner_text("#answers")
    for model in unsure:
        caption = desktop.inner_text(f"{section(desktop, model)} .ds-explain-caption")
        assert caption.startswith("Not sure:") and "4" in caption and "9" in caption
        candidates = desktop.eval_on_selector_all(f"{section(desktop, model)} .ds-candidates figcaption",
                                                  "cells => cells.map(c => c.innerText)")
        assert {candidates[0], candidates[1]} == {"what makes it a 4", "what makes it a 9"}
        boxes = [desktop.locator(f"{section(desktop, model)} .ds-{which}").bounding_box()
                 for which in ("first", "second")]
        assert abs(boxes[0]["y"] - boxes[1]["y"]) < 2 and boxes[0]["x"] < boxes[1]["x"]  # side by side


def test_on_a_phone_one_tap_opens_it_and_a_touch_drawn_seven_is_explained(browser, server):
    phone = open_page(browser, server, viewport=PHONE, has_touch=True, is_mobile=True, device_scale_factor=2)
    try:
        phone.wait_for_selector("#explain summary")
        phone.locator("#explain summary").scroll_into_view_if_needed()
        phone.tap("#explain summary")
        assert phone.evaluate("document.querySelector('#explain').open") is True
        phone.locator("#sketchpad canvas").scroll_into_view_if_needed()
        cdp = phone.context.new_cdp_session(phone)
        draw_touch(phone, cdp, DIGIT_STROKES[7])
        phone.wait_for_function(EXPLAINED, timeout=WAIT * 1000)
        for model in MODELS:
            assert len(map_sources(phone, model)) == 3
            assert "Reads 7" in phone.inner_text(f"{section(phone, model)} .ds-explain-caption")
        # Everything fits the phone's width: no sideways scrolling.
        assert phone.evaluate("document.scrollingElement.scrollWidth") <= PHONE["width"]
        box = phone.locator(f"{section(phone, 'model2')} .ds-map").first.bounding_box()
        assert box["width"] >= 90  # a map is big enough to see
    finally:
        phone.context.close()
