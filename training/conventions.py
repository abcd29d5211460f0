"""Writers' conventions the training mix adds as stroke-level variants.

Empty in this commit: the conventions of issue 21 (item 2) come next. MNIST_EDITS maps a kind to
a function (work-frame shape, rng) -> lines to add to an MNIST digit; GENERATED maps a kind to a
generator rng -> polylines.
"""
from __future__ import annotations

MNIST_EDITS: dict = {}
GENERATED: dict = {}
