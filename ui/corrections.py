"""The Draw tab's correction controls: "Right: it's a 7" and "Wrong? It's a … [0-9]" under the answers.

One click saves the canvas drawing with its label: the controls (a gr.HTML, #correction-controls,
ui/static/corrections.js) trigger their `click` event with {"label", "version"} as event data,
and `save_from_page` stores the `sketch` value (ui/draw_tab.py) through the same
drawings.corrections.save_correction as REST POST /drawings and the public gradio_client
endpoint `save_drawing` (ui/drawings_tab.py). This event is page plumbing, so it stays private.

Everything here comes from the browser and is untrusted: the sketch must be the canvas's PNG
data URL (never a file path, never a dict Gradio could read a file for), at most
MAX_SKETCH_CHARS long, refused before any decoding; the label is checked by save_correction;
with TRAIN_TOKEN set, a visitor's corrections count against ctx.correction_limiter, by the
client's address, together with their REST posts.
"""
from __future__ import annotations

import html
import time
from typing import Any

import gradio as gr

from drawings.corrections import LabelError, RateLimitedError, save_correction
from drawings.store import StoreError
from inference.image_io import EmptyImageError, ImageInputError
from inference.answer import DEFAULT_MODEL
from ui.assets import static_text, template
from ui.context import PREDICT_QUEUE, PRIVATE, AppContext

CANVAS_PREFIX = "data:image/png;base64,"  # what canvas.toDataURL("image/png") always starts with
# The canvas is 280x280: its PNG is at most ~315 KB even for pure noise (~420 KB as base64), a
# drawing ~5-20 KB. 1 MB refuses a forged value long before image_io's 5 MB limit for any image.
MAX_SKETCH_CHARS = 1024 * 1024
PUBLIC_NOTE = "Answers are saved to improve this app's models."
HINT = "Draw a digit, then tell the models whether they read it right."

# What the page says (gr.Info / gr.Warning, and the line beside the buttons).
SAVED = "Saved as a {label} — thank you"
BLANK = "Nothing to save: the canvas is empty. Draw a digit first."
UNREADABLE = "Not saved: this drawing could not be read. Clear the canvas and draw it again."
TOO_LARGE = "Not saved: this drawing is too large to save. Clear the canvas and draw it again."
BAD_LABEL = "Not saved: choose the digit it is, from 0 to 9."
CHANGED = "Not saved: the drawing changed. Wait for the models' new answer, then choose again."
NOT_SAVED = "Not saved: {reason}"
NO_STORE = "Not saved: this server keeps no drawings."


def build(ctx: AppContext, sketch: gr.HTML) -> gr.HTML:
    """The controls inside the current layout (the Draw tab's #corrections row), wired to `sketch`."""
    def save(value: Any, event: gr.EventData, request: gr.Request) -> dict[str, Any]:
        data = getattr(event, "_data", None)
        data = data if isinstance(data, dict) else {}
        return save_from_page(ctx, value, data.get("label"), data.get("version"), client_host(request))

    controls = gr.HTML(None, html_template=controls_template(public=bool(ctx.train_token)),
                       js_on_load=static_text("corrections.js"), apply_default_css=False,
                       head=f"<style>{static_text('corrections.css')}</style>",
                       elem_id="correction-controls")
    # The answer goes back to the controls (their line says it) and in a toast (gr.Info / gr.Warning).
    controls.click(save, sketch, controls, api_name="save_correction", show_progress="hidden", **PREDICT_QUEUE,
                   **PRIVATE)
    return controls


def save_from_page(ctx: AppContext, sketch: Any, label: Any, version: Any, client: str | None) -> dict[str, Any]:
    """Save the canvas drawing in `sketch` labelled `label`; returns the controls' new value
    {"saved", "label", "version", "message", "at"} and shows the message as gr.Info or gr.Warning."""
    if ctx.drawings is None:  # an app assembled without the drawings database (some tests' apps)
        return _answer(False, label, version, NO_STORE)
    try:
        image = canvas_image(sketch)
        if isinstance(sketch, dict) and version is not None and sketch.get("version") != version:
            raise _Refused(CHANGED)  # the buttons showed an older drawing's answer than the one sent
        new_id = save_correction(ctx.drawings, ctx.predictor, image, label, client, limiter=ctx.correction_limiter)
    except _Refused as error:
        return _answer(False, label, version, str(error))
    except EmptyImageError:
        return _answer(False, label, version, BLANK)
    except ImageInputError:
        return _answer(False, label, version, UNREADABLE)
    except LabelError:
        return _answer(False, label, version, BAD_LABEL)
    except (RateLimitedError, StoreError) as error:
        return _answer(False, label, version, NOT_SAVED.format(reason=_lower_first(str(error))))
    return _answer(True, label, version, SAVED.format(label=label), drawing_id=new_id)


def canvas_image(sketch: Any) -> str:
    """The PNG data URL of the canvas value `sketch`, or _Refused / EmptyImageError in the page's words.

    Only the canvas's own shape is accepted: a str starting "data:image/png;base64,". A dict
    such as {"path": ...} is refused, so no value from the browser ever names a file."""
    if sketch is None or (isinstance(sketch, dict) and sketch.get("image") is None and "image" in sketch):
        raise EmptyImageError(BLANK)
    image = sketch.get("image") if isinstance(sketch, dict) else None
    if not isinstance(image, str) or not image.startswith(CANVAS_PREFIX):
        raise _Refused(UNREADABLE)
    if len(image) > MAX_SKETCH_CHARS:
        raise _Refused(TOO_LARGE)
    return image


def controls_template(public: bool) -> str:
    """The buttons: "Right" (disabled until the models answer), "Wrong? It's a …" and ten digits."""
    digits = "".join(f'<button type="button" class="ds-pick" data-digit="{d}" aria-label="It is a {d}" '
                     f'disabled>{d}</button>' for d in range(10))
    note = f'<p class="ds-public-note">{html.escape(PUBLIC_NOTE)}</p>' if public else ""
    return template(
        f'<div class="ds-corrections" data-model="{html.escape(DEFAULT_MODEL)}" role="group" '
        f'aria-label="Tell the models the right answer">'
        f'<div class="ds-correction-buttons">'
        f'<button type="button" id="correct-right" class="ds-right" disabled>Right</button>'
        f'<span id="wrong-label" class="ds-wrong-label">Wrong? It&#39;s a …</span>'
        f'<div class="ds-picks" role="group" aria-labelledby="wrong-label">{digits}</div></div>'
        f'<p id="correction-note" class="ds-correction-note" aria-live="polite" data-hint="{html.escape(HINT)}">'
        f'{html.escape(HINT)}</p>{note}</div>')


def client_host(request: gr.Request | None) -> str | None:
    """The visitor's address, the client id REST's POST /drawings uses too (one rate for both)."""
    return getattr(getattr(request, "client", None), "host", None)


class _Refused(ValueError):
    """A sketch value the page would never send (the message is the page's words)."""


def _answer(saved: bool, label: Any, version: Any, message: str, drawing_id: int | None = None) -> dict[str, Any]:
    (gr.Info if saved else gr.Warning)(message)
    # "at" makes every answer a new value, so the page's watch() sees a second identical warning too.
    return {"saved": saved, "id": drawing_id, "label": label if isinstance(label, int) else None,
            "version": version if isinstance(version, int) else None, "message": message, "at": time.time_ns()}


def _lower_first(text: str) -> str:
    return text[:1].lower() + text[1:]
