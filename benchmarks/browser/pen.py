"""Drawing digits in a real browser page, as a person would: strokes for 0-9, by mouse or by touch.

Shared by the browser benchmark (benchmarks/browser/draw_tab.py) and the browser test
(tests/test_browser.py). A stroke is a list of points in units of the canvas's
half-width from its centre (-1..1, y down); `draw_mouse` presses, moves in small
steps and releases with Playwright's mouse; `draw_touch` sends the same strokes as
touch events through a CDP session (`Input.dispatchTouchEvent`), like a finger.
"""
from __future__ import annotations

import math
import time

from pathlib import Path

# Debian's Chromium, never a browser a tool downloads; without the background-networking flag it
# keeps trying to reach Google's hosts from this machine's closed network.
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]

Point = tuple[float, float]
Stroke = list[Point]


def _curve(fx, fy, steps: int = 24, start: float = 0.0, end: float = 2 * math.pi) -> Stroke:
    return [(fx(start + (end - start) * i / steps), fy(start + (end - start) * i / steps)) for i in range(steps + 1)]


DIGIT_STROKES: dict[int, list[Stroke]] = {
    0: [_curve(lambda t: 0.36 * math.sin(t), lambda t: -0.58 * math.cos(t))],
    1: [[(-0.15, -0.42), (0.05, -0.62), (0.05, 0.62)]],
    2: [[(-0.36, -0.35), (-0.15, -0.58), (0.2, -0.58), (0.38, -0.35), (0.3, -0.05), (-0.38, 0.58),
         (0.42, 0.58)]],
    3: [[(-0.35, -0.5), (0.0, -0.62), (0.32, -0.45), (0.3, -0.15), (-0.05, 0.0), (0.32, 0.15), (0.35, 0.45),
         (0.0, 0.62), (-0.38, 0.5)]],
    4: [[(-0.1, -0.62), (-0.4, 0.15), (0.42, 0.15)], [(0.2, -0.35), (0.2, 0.62)]],
    5: [[(0.35, -0.58), (-0.3, -0.58), (-0.35, -0.05), (0.1, -0.12), (0.38, 0.1), (0.35, 0.42), (0.05, 0.6),
         (-0.38, 0.48)]],
    6: [[(0.3, -0.6), (-0.1, -0.4), (-0.35, 0.05), (-0.3, 0.45), (0.0, 0.6), (0.3, 0.45), (0.32, 0.15),
         (0.0, 0.0), (-0.32, 0.2)]],
    7: [[(-0.45, -0.5), (0.45, -0.5), (-0.05, 0.65)]],
    8: [_curve(lambda t: 0.3 * math.sin(2 * t), lambda t: -0.6 * math.cos(t), steps=32)],
    9: [_curve(lambda t: 0.3 * math.cos(t), lambda t: -0.3 - 0.28 * math.sin(t), steps=20)
        + [(0.28, 0.62)]],
}

HALF_SPAN = 130  # px from the centre: inside a 280 px drawing area (the canvas is at least that big)
STEPS_PER_SEGMENT = 6  # each move is a round trip to the browser: few, but a smooth line
SEGMENT_SECONDS = 0.04  # a hand draws a segment in tens of milliseconds: answers come while drawing


def _path(stroke: Stroke, centre: Point, half: float) -> list[Point]:
    points = [stroke[0]]
    for start, end in zip(stroke, stroke[1:]):
        for step in range(1, STEPS_PER_SEGMENT + 1):
            t = step / STEPS_PER_SEGMENT
            points.append((start[0] + (end[0] - start[0]) * t, start[1] + (end[1] - start[1]) * t))
    return [(centre[0] + x * half, centre[1] + y * half) for x, y in points]


def canvas_centre(page, selector: str = "#sketchpad canvas") -> Point:
    box = page.locator(selector).last.bounding_box()
    return box["x"] + box["width"] / 2, box["y"] + box["height"] / 2


def draw_mouse(page, strokes: list[Stroke], *, half: float = HALF_SPAN, selector: str = "#sketchpad canvas",
               segment_seconds: float = SEGMENT_SECONDS, before_up=None) -> None:
    """Draw `strokes` with the mouse. `before_up(stroke_index)` runs just before each release."""
    centre = canvas_centre(page, selector)
    for index, stroke in enumerate(strokes):
        path = _path(stroke, centre, half)
        page.mouse.move(*path[0])
        page.mouse.down()
        for number, point in enumerate(path[1:], 1):
            page.mouse.move(*point)
            if number % STEPS_PER_SEGMENT == 0 and segment_seconds:
                time.sleep(segment_seconds)
        if before_up is not None:
            before_up(index)
        page.mouse.up()


def draw_touch(page, cdp, strokes: list[Stroke], *, half: float = HALF_SPAN, selector: str = "#sketchpad canvas",
               segment_seconds: float = SEGMENT_SECONDS, during=None) -> None:
    """Draw `strokes` with one finger through a CDP session (`page.context.new_cdp_session(page)`).
    `during()` runs in the middle of each stroke, with the finger still down."""
    centre = canvas_centre(page, selector)
    for stroke in strokes:
        path = _path(stroke, centre, half)

        def touch(kind: str, point: Point | None) -> None:
            points = [] if point is None else [{"x": point[0], "y": point[1], "id": 1, "radiusX": 4, "radiusY": 4,
                                                "force": 0.5}]
            cdp.send("Input.dispatchTouchEvent", {"type": kind, "touchPoints": points})

        touch("touchStart", path[0])
        for number, point in enumerate(path[1:], 1):
            touch("touchMove", point)
            if number % STEPS_PER_SEGMENT == 0 and segment_seconds:
                time.sleep(segment_seconds)
            if during is not None and number == len(path) // 2:
                during()
        touch("touchEnd", None)


def canvas_png(strokes: list[Stroke], *, width: int = 16, size: int = 280, half: float = HALF_SPAN) -> bytes:
    """The PNG the page would send for `strokes` drawn with a `width` px round pen, black on a white
    size x size canvas (Pillow, no browser): for tests and benchmarks of the server side alone."""
    import io

    from PIL import Image, ImageDraw

    image = Image.new("RGB", (size, size), "white")
    draw = ImageDraw.Draw(image)
    centre = (size / 2, size / 2)
    for stroke in strokes:
        points = _path(stroke, centre, half * size / 280)
        draw.line(points, fill="black", width=width, joint="curve")
        for x, y in (points[0], points[-1]):
            draw.ellipse((x - width / 2, y - width / 2, x + width / 2, y + width / 2), fill="black")
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


# A 4 with a closed, rounded-off top: every shipped model hesitates between 4 and 9 ("Not sure: 4 or 9?")
# when it is drawn by mouse at 1280x960 in Chromium. Found by a search over such shapes in Chromium (the
# left corner's x and the bar's height; the models retrained on 2026-12-06 read the previous shape as a
# plain 4 or 9): the same verdicts in 4 of 4 repeats and with the corner 0.02 further left or right; a bar
# 0.02 lower, or the top's corner 0.02 either way, is read as a plain 4 or 9 by some model. Used by the Explain view's browser test.
AMBIGUOUS_FOUR_NINE: list[Stroke] = [[(0.15, -0.45), (0.0, -0.45), (-0.26, 0.0), (0.15, 0.0)],
                                     [(0.15, -0.45), (0.15, 0.62)]]
