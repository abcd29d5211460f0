"""A refusal in the interface's words that also carries the HTTP status REST gives the same refusal.

The page and gradio_client show it as any gr.Error. Gradio's one-shot route (POST /gradio_api/run/<api>,
what a curl user calls) answers every gr.Error with HTTP 500; the server reads `status` from the error
(api/gradio_fixes.py) and answers with it instead: 400 for a bad input unless said, 404 for something
that does not exist, 403 for a missing token, 429/503 for a busy server, as REST does, with REST's
Retry-After when the refusal says when to come back (`retry_after`).
"""
from __future__ import annotations

import gradio as gr


class Refused(gr.Error):
    """gr.Error with an HTTP status; no traceback is printed for it (it is the visitor's input, not a bug)."""

    def __init__(self, message: str, status: int = 400, retry_after: float | None = None):
        super().__init__(message, print_exception=False)
        self.status = status
        self.retry_after = retry_after  # seconds until a 429 / 503 may be asked again (Retry-After), if known


def refused(error: Exception) -> Refused:
    """A domain error met by an event (an image, a label, the store), with the status REST answers it with."""
    from drawings.corrections import error_status

    return Refused(str(error), error_status(error), getattr(error, "retry_after", None))
