"""The Drawings tab: the corrections people saved, per digit, and how the serving models read them.

Thin handlers over the drawings database (drawings/store.py) and its helpers; REST
offers the same (api/drawings.py). With TRAIN_TOKEN set, anyone may add a
correction (Draw tab, or the `save_drawing` client endpoint, rate-limited), but seeing,
deleting, exporting and importing the drawings needs the token, as training does.

Also registers `save_drawing(image, label)` for gradio_client: the same save_correction
the Draw tab's "Right" / "Wrong? It's a ..." buttons call.
"""

import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gradio as gr
from gradio.data_classes import FileData

from drawings.archive import ArchiveError, export_zip, import_zip
from drawings.corrections import CORRECTION_ERRORS, save_correction
from drawings.heldout import held_out_accuracy
from drawings.store import StoreError
from inference.image_io import MAX_ENCODED_BYTES, ImageInputError, load_image
from training.registry import MODELS
from ui import draw, views
from ui.context import PRIVATE, AppContext
from ui.refusals import refused
from ui.training import token_matches

GALLERY_LIMIT = 60  # drawings shown at once (newest first); GET /drawings pages through all of them
MAX_IMPORT_BYTES = MAX_ENCODED_BYTES  # the same 5 MB as REST's body limit
EXPORT_KEEP_SECONDS = 600  # an export's zip is kept this long for its download, then removed
ALL = "All"
DIGIT_CHOICES = [ALL, *[str(digit) for digit in range(10)]]
_EXPORT_DIR: Path | None = None


@dataclass
class DrawingsTab:
    tab: gr.Tab


def build(ctx: AppContext) -> DrawingsTab:
    """Lay out the Drawings tab inside the current gr.Blocks and wire its events."""
    store = ctx.drawings
    locked = bool(ctx.train_token)

    def show(token: str | None, digit: str) -> list[Any]:
        """(summary, gallery, shown ids, selection note, selected id)."""
        try:
            summary = summary_text(ctx)
            if not token_matches(token, ctx.train_token):
                return [summary, [], [], "Enter the token to see the drawings.", None]
            drawings, total = store.list(limit=GALLERY_LIMIT, label=None if digit == ALL else int(digit))
        except StoreError as error:
            gr.Warning(str(error))
            return [f"**The drawings database is unavailable:** {error}", [], [], "", None]
        items = [(load_image(store.png(d["id"]) or b""), caption(d)) for d in drawings]
        note = (f"Showing the newest {len(drawings)} of {total}." if total > len(drawings)
                else f"{total} drawing{'s' * (total != 1)}.") + " Click one to select it."
        return [summary, items, [d["id"] for d in drawings], note, None]

    def select(ids: list[int], event: gr.SelectData) -> tuple[int | None, str]:
        index = event.index if isinstance(event.index, int) else None
        if index is None or not 0 <= index < len(ids):
            return None, "Nothing selected."
        return ids[index], f"Selected drawing **#{ids[index]}**: Delete removes it from the database."

    def delete(token: str | None, selected: int | None, digit: str) -> list[Any]:
        if not token_matches(token, ctx.train_token):
            gr.Warning("Deleting drawings needs this server's training token.")
            return [gr.skip()] * 5
        if selected is None:
            gr.Warning("Select a drawing first (click it in the gallery).")
            return [gr.skip()] * 5
        try:
            if not store.delete(selected):
                gr.Info(f"Drawing #{selected} was already deleted.")
        except StoreError as error:  # the database is down or refused: said in words, nothing changed
            gr.Warning(str(error))
        return show(token, digit)

    def export(token: str | None) -> str | None:
        if not token_matches(token, ctx.train_token):
            gr.Warning("Exporting the drawings needs this server's training token.")
            return None
        path = _export_path()
        try:
            with open(path, "wb") as handle:
                count = export_zip(store, handle)
        except StoreError as error:
            gr.Warning(str(error))
            return None
        gr.Info(f"Exported {count} drawing{'s' * (count != 1)}: folders 0-9 of PNGs plus drawings.csv.")
        return str(path)

    def import_(upload: Any, token: str | None, digit: str) -> list[Any]:
        if not token_matches(token, ctx.train_token):
            gr.Warning("Importing drawings needs this server's training token.")
            return ["**Not imported:** enter the token first.", *show(token, digit)]
        try:
            path = draw.uploaded_path(upload)
        except ImageInputError:
            gr.Warning("That file was not uploaded through this page: upload the zip again.")
            return ["**Not imported.**", *show(token, digit)]
        if path is None:
            return ["", *show(token, digit)]
        if path.stat().st_size > MAX_IMPORT_BYTES:
            message = f"The zip is larger than {MAX_IMPORT_BYTES // (1024 * 1024)} MB: import it in parts."
            gr.Warning(message)
            return [f"**Not imported.** {message}", *show(token, digit)]
        try:
            summary = import_zip(store, ctx.predictor, path.read_bytes())
        except (ArchiveError, StoreError) as error:
            gr.Warning(str(error))
            return [f"**Not imported.** {error}", *show(token, digit)]
        problems = "".join(f"\n- {problem}" for problem in summary["problems"])
        text = f"**Imported {summary['imported']}**, skipped {summary['skipped']}.{problems}"
        return [text, *show(token, digit)]

    def save_drawing(image: FileData, label: int, token: str = "", request: gr.Request = None) -> int:
        """Save a picture of one digit with its right label (0-9) to improve this app's models; returns its id.
        (The Draw tab's "Right" / "Wrong? It's a ..." buttons do the same.)"""
        try:
            path = draw.uploaded_path(image)
            if path is None:
                raise ImageInputError("No image was given: upload a picture of one digit.")
            client = getattr(getattr(request, "client", None), "host", None)
            trusted = token_matches(token, ctx.train_token)
            return save_correction(store, ctx.predictor, path.read_bytes(), label, client,
                                   limiter=None if trusted else ctx.correction_limiter)
        except CORRECTION_ERRORS as error:
            raise refused(error) from None

    with gr.Tab("Drawings", id="drawings") as tab:
        gr.api(save_drawing, api_name="save_drawing")  # inside the tab: gr.Tabs takes only tabs
        gr.Markdown("The drawings people corrected on the **Draw** tab, saved to improve this app's models. "
                    "One in five (fixed by id) is never trained on: it measures how well the serving models "
                    "read drawings like yours. Train with **Include my drawings** on the **Train** tab.")
        token = gr.Textbox("", label="Training token", type="password", visible=locked,
                           info="This server protects the saved drawings: enter its TRAIN_TOKEN to see, delete, "
                                "export or import them (anyone may add a correction).", elem_id="drawings-token")
        summary = gr.Markdown(elem_id="drawings-summary")
        digit = gr.Radio(DIGIT_CHOICES, value=ALL, label="Digit", elem_id="drawings-digit")
        gallery = gr.Gallery(label="Saved drawings, newest first", format="png", columns=8, height=320,
                             allow_preview=False, interactive=False, elem_id="drawings-gallery")
        ids, selected = gr.State([]), gr.State(None)
        note = gr.Markdown(elem_id="drawings-note")
        with gr.Row():
            delete_btn = gr.Button("Delete selected", variant="stop", size="sm", elem_id="drawings-delete")
            refresh_btn = gr.Button("Refresh", size="sm", elem_id="drawings-refresh")
            export_btn = gr.Button("Export as zip", size="sm", elem_id="drawings-export")
        with gr.Row():
            exported = gr.File(label="Export (folders 0-9 of PNGs + drawings.csv)", interactive=False,
                               elem_id="drawings-exported")
            upload = gr.File(label="Import a zip made by Export", file_types=[".zip"], elem_id="drawings-import")
        imported = gr.Markdown(elem_id="drawings-imported")

    shown = [summary, gallery, ids, note, selected]
    gr.on([tab.select, refresh_btn.click, digit.change, token.submit], show, [token, digit], shown,
          api_name="show_drawings", show_progress="hidden", **PRIVATE)
    gallery.select(select, ids, [selected, note], api_name="select_drawing", queue=False, **PRIVATE)
    delete_btn.click(delete, [token, selected, digit], shown, api_name="delete_drawing", **PRIVATE)
    export_btn.click(export, token, exported, api_name="export_drawings", **PRIVATE)
    # Raw payload (preprocess=False): the path is checked against Gradio's upload folder here.
    upload.upload(import_, [upload, token, digit], [imported, *shown], api_name="import_drawings",
                  preprocess=False, **PRIVATE)
    return DrawingsTab(tab=tab)


def summary_text(ctx: AppContext) -> str:
    """Counts per digit, and the serving models' accuracy on the held-out drawings (measured now)."""
    counts = ctx.drawings.counts()
    total = sum(counts.values())
    if not total:
        return ("**No drawings yet.** Correct the models on the Draw tab (\"Right\" / \"Wrong? It's a …\"): "
                "each one is saved here.")
    header = "| Digit | " + " | ".join(str(d) for d in range(10)) + " |\n|" + " --- |" * 11
    row = "\n| Drawings | " + " | ".join(str(counts[d]) for d in range(10)) + " |"
    measured = held_out_accuracy(ctx.drawings, ctx.predictor)
    held = measured["held_out"]
    if held:
        scores = " · ".join(f"{views.short_title(MODELS[name].title)} **{views.format_percent(value, 0)}**"
                            for name, value in measured["models"].items())
        accuracy = f"Serving models on the {held} held-out drawings: {scores}."
    else:
        accuracy = "No drawing is held out yet (one in five is): the models' accuracy on them shows here."
    return f"**{total} drawing{'s' * (total != 1)}** saved.\n\n{header}{row}\n\n{accuracy}"


def caption(drawing: dict[str, Any]) -> str:
    read = ", ".join(f"{views.short_title(MODELS[name].title).replace('Model ', 'M')} read {p['digit']}"
                     for name, p in drawing["predictions"].items() if name in MODELS)
    held = " · held out" if drawing["held_out"] else ""
    return f"#{drawing['id']}: {drawing['label']}{held} ({read})" if read else f"#{drawing['id']}: {drawing['label']}"


def _export_path() -> Path:
    """A fresh file for one export, in one temporary folder; exports older than EXPORT_KEEP_SECONDS go."""
    global _EXPORT_DIR
    if _EXPORT_DIR is None or not _EXPORT_DIR.is_dir():
        _EXPORT_DIR = Path(tempfile.mkdtemp(prefix="digit-studio-exports-"))
    now = time.time()
    for old in _EXPORT_DIR.glob("*.zip"):
        if now - old.stat().st_mtime > EXPORT_KEEP_SECONDS:
            old.unlink(missing_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime(now))
    return _EXPORT_DIR / f"drawings-{stamp}-{int(now * 1000) % 1000:03d}.zip"


