"""An event's refusal carries the status REST answers the same refusal with (ui/refusals.py)."""
from __future__ import annotations

import pytest

from api.gradio_fixes import refusal_status
from drawings.corrections import LabelError, RateLimitedError
from drawings.store import StoreError, StoreFullError
from inference.image_io import EmptyImageError, ImageInputError
from ui.refusals import Refused, refused


@pytest.mark.parametrize("error, status", [
    (EmptyImageError("The canvas is empty."), 422),
    (LabelError("The label must be 0-9."), 422),
    (ImageInputError("This is not a picture."), 400),
    (StoreFullError("The store is full."), 507),
    (StoreError("The database is down."), 503),
])
def test_domain_errors_get_rests_status(error, status):
    refusal = refused(error)
    assert (refusal.status, refusal.message) == (status, str(error))
    assert refusal.print_exception is False  # a visitor's input, not a bug: no traceback in the log


def test_too_many_is_429():
    refusal = refused(RateLimitedError(12))
    assert refusal.status == 429 and "wait 12 s" in refusal.message


def test_any_other_gr_error_is_a_400_and_a_status_out_of_range_is_not_taken():
    import gradio as gr

    assert refusal_status(gr.Error("words")) == 400
    assert refusal_status(Refused("gone", 404)) == 404
    odd = gr.Error("odd")
    odd.status = 200  # not an error status: the refusal stays a 400
    assert refusal_status(odd) == 400
