"""What the server says about itself: GET /env (the runtime, the workers, the database) and
GET /model_status (each model: trained, serving, accuracy). inference/status.py computes both, so the
UI's Models tab and client endpoints say the same."""
from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from api.errors import BodyLimitRoute
from inference.explain.lane import ExplainLane
from inference.pool import PredictionPool
from inference.predictor import Predictor
from inference.status import environment, model_status_report
from training.jobs import JobManager


def status_router(predictor: Predictor, jobs: JobManager, pool: PredictionPool | None,
                  explain_lane: ExplainLane | None, drawings: Any) -> APIRouter:
    router = APIRouter(route_class=BodyLimitRoute, tags=["status"])

    @router.get("/env", summary="Runtime environment")
    def get_env() -> dict[str, Any]:
        return environment(pool, explain_lane, drawings)

    @router.get("/model_status", summary="Each model: trained, serving, accuracy")
    def model_status() -> dict[str, Any]:
        return model_status_report(predictor, jobs)

    return router
