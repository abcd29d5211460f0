"""No calls home: the app sends nothing anywhere unless its user asks (training's MNIST download).

Gradio reports usage to api.gradio.app and, through huggingface_hub, to huggingface.co
(both measured with every name lookup recorded: tests/test_security.py); onnxruntime
has telemetry events of its own (sent on Windows builds). `apply()` turns each off
before the library is imported. A variable the user set explicitly wins: to opt in to
Gradio's analytics, start with GRADIO_ANALYTICS_ENABLED=True.

Called first by app.py (before it imports Gradio) and by every prediction worker
(inference/pool_worker.py, which also inherits the server's environment).
"""
from __future__ import annotations

import os

PRIVATE_DEFAULTS = {
    "GRADIO_ANALYTICS_ENABLED": "False",  # Gradio's analytics and the huggingface_hub telemetry it sends
    "HF_HUB_DISABLE_TELEMETRY": "1",  # huggingface_hub's own telemetry
    "HF_HUB_OFFLINE": "1",  # no hub requests at all: the app loads no theme, model or Space from the hub
}


def apply() -> None:
    """Set the defaults above where the environment does not say otherwise, and mute onnxruntime."""
    for variable, value in PRIVATE_DEFAULTS.items():
        os.environ.setdefault(variable, value)
    import onnxruntime  # the predictor imports it anyway; telemetry is a process-wide switch

    onnxruntime.disable_telemetry_events()
