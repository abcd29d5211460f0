"""The UI's own files (ui/static: HTML, JS, CSS) and the guard every gr.HTML template goes through.
Shared by the Draw tab and the corrections bar, which each build their own controls."""
from __future__ import annotations

from pathlib import Path

STATIC = Path(__file__).resolve().parent / "static"


def static_text(name: str) -> str:
    return (STATIC / name).read_text(encoding="utf-8")


def template(text: str) -> str:
    """gr.HTML evaluates its template as a JavaScript template literal and a Handlebars
    template: refuse what either would run, so the markup shows exactly as written."""
    for token in ("`", "${", "{{"):
        if token in text:
            raise ValueError(f"gr.HTML template contains {token!r}, which Gradio would evaluate")
    return text
