"""No calls home: the app sends nothing anywhere unless its user asks (training's MNIST download).

Gradio reports usage to api.gradio.app and, through huggingface_hub, to huggingface.co
(both measured with every name lookup recorded: tests/test_security.py). onnxruntime has
telemetry of its own: since 1.29 also on Linux, where its native code looked up
mobile.events.data.microsoft.com twice in the server and in every prediction worker
(onnxruntime 1.32, seen with strace; `disable_telemetry_events()` did not stop it, and a
Python-level recorder cannot see a lookup made by native code). Its full opt-out is
ORT_DISABLE_TELEMETRY=1, read when onnxruntime initialises: so `apply()` sets every
variable below before the library is imported. A variable the user set explicitly wins:
to opt in to Gradio's analytics, start with GRADIO_ANALYTICS_ENABLED=True.

Called first by app.py (before it imports Gradio or onnxruntime) and by every prediction
worker (inference/pool_worker.py, which also inherits the server's environment); the
training CLI sets the variables too (`apply_environment()`).
"""
from __future__ import annotations

import os

PRIVATE_DEFAULTS = {
    "GRADIO_ANALYTICS_ENABLED": "False",  # Gradio's analytics and the huggingface_hub telemetry it sends
    "HF_HUB_DISABLE_TELEMETRY": "1",  # huggingface_hub's own telemetry
    "HF_HUB_OFFLINE": "1",  # no hub requests at all: the app loads no theme, model or Space from the hub
    "ORT_DISABLE_TELEMETRY": "1",  # onnxruntime's native telemetry (DNS lookups at start, measured)
}


def apply_environment() -> None:
    """Set the defaults above where the environment does not say otherwise (before the libraries load)."""
    for variable, value in PRIVATE_DEFAULTS.items():
        os.environ.setdefault(variable, value)


def apply() -> None:
    """apply_environment(), then mute onnxruntime's telemetry events too (the Python-level switch)."""
    apply_environment()
    import onnxruntime  # the predictor imports it anyway; telemetry is a process-wide switch

    onnxruntime.disable_telemetry_events()
