"""What the app reports about itself: the runtime (GET /env) and each model's serving and training
status (GET /model_status). Shared by the REST API (api/) and the UI's Models tab and client
endpoints (ui/), so neither interface imports the other.
"""
from __future__ import annotations

import functools
import importlib.util
import os
import platform
from typing import Any

from inference.explain.lane import ExplainLane
from inference.pool import PredictionPool
from inference.predictor import Predictor
from training.jobs import JobManager
from training.versions import package_versions

_VERSIONED_PACKAGES = ("numpy", "pillow", "onnxruntime", "onnx", "scikit-learn", "skl2onnx", "tensorflow", "keras",
                       "tf2onnx", "fastapi", "uvicorn", "pydantic", "gradio")


def environment(pool: PredictionPool | None = None, explain_lane: ExplainLane | None = None,
                drawings: Any = None) -> dict[str, Any]:
    """GET /env (and the UI's `env` client endpoint and Models tab, which must say the same): the runtime,
    the prediction and explanation workers, and which database holds the drawings (`drawings` is a
    DrawingStore; no address or password: /env is public)."""
    workers = pool.describe() if pool is not None else {"configured": 0, "ready": 0, "answered": 0}
    out = {**_runtime(), "prediction_workers": workers}
    if explain_lane is not None:
        out["explanation_workers"] = explain_lane.describe()
    if drawings is not None:
        out["database"] = drawings.database.describe()
    return out


@functools.lru_cache(maxsize=1)
def _runtime() -> dict[str, Any]:
    versions = package_versions(_VERSIONED_PACKAGES)
    return {
        "python": platform.python_version(),
        "arch": platform.machine(),
        "platform": platform.platform(terse=True),
        # find_spec, not import: TensorFlow takes seconds to import and prediction never needs it.
        "tf_available": importlib.util.find_spec("tensorflow") is not None,
        "cpu_count": os.cpu_count(),
        "versions": versions,
    }


def model_status_report(predictor: Predictor, jobs: JobManager) -> dict[str, Any]:
    """Each model's serving status plus whether it trains now or can be trained here (GET /model_status;
    the UI's Models tab and its `model_status` client endpoint show the same)."""
    status = predictor.status()
    for name, entry in status.items():
        spec = jobs.models.get(name)
        reason = spec.unavailable_reason() if spec else "not in the registry"
        entry["training"] = jobs.is_running(name)
        entry["trainable"] = reason is None
        entry["train_unavailable_reason"] = reason
    return status
