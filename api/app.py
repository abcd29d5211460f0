"""The REST API over the shared predictor and job manager: the original app's routes and JSON, plus
the drawings database and model versions. One router per resource:

    api/status.py     GET /env, GET /model_status
    api/training.py   POST /train/{model}, /train/{model}/cancel (and DELETE), GET /train_status/{model}
    api/predict.py    POST /predict
    api/drawings.py   /drawings ... (the corrections database)
    api/versions.py   /models/{model}/versions ...

Shared errors and limits are api/errors.py's: every error is a 4xx/503 JSON body {"error": "<what is
wrong and how to fix it>"} (never a stack trace), bodies over 5 MB are a 413, a path's other methods a
JSON 405. With `train_token` set, training, versions and drawings writes need `Authorization: Bearer
<token>` (api/auth.py). Request input is only ever decoded as image bytes, never used as a file path.
"""
from __future__ import annotations

import contextlib
import logging
from typing import Any

from fastapi import FastAPI

from api.auth import token_dependency
from api.drawings import drawings_router
from api.errors import BodyLimitRoute, install_error_handlers, refuse_other_methods
from api.predict import predict_router
from api.status import status_router
from api.training import training_router
from api.versions import versions_router
from inference.explain.lane import ExplainLane
from inference.lanes import PredictionLanes
from inference.pool import PredictionPool
from inference.predictor import Predictor
from training.artifacts import exports_dir, remove_staged_files
from training.jobs import JobManager

log = logging.getLogger(__name__)


def create_api(predictor: Predictor, jobs: JobManager, *, train_token: str | None = None,
               pool: PredictionPool | None = None, drawings: Any = None, versions: Any = None,
               explain_lane: ExplainLane | None = None, lanes: PredictionLanes | None = None) -> FastAPI:
    """The REST routes over one predictor and one job manager (shared with the UI).

    With a `pool`, the server starts its worker processes when it starts (and stops them
    when it stops), and /predict uses them whenever requests overlap. `explain_lane`
    computes "explain": true requests (inference/explain/lane.py; started and stopped with
    the server too); without one such a request is answered 503. `lanes` decides where each prediction
    runs (inference/lanes.py; pass the one the UI uses, so both share its large-image lane).
    """
    lanes = lanes or PredictionLanes(predictor, pool)

    @contextlib.asynccontextmanager
    async def lifespan(_app: FastAPI):
        # A run killed with kill -9 leaves its staged files behind; no run of this process stages yet.
        # Runs write new versions into the data location; a job manager given a folder writes there.
        removed = versions.remove_abandoned_runs() if versions is not None else []
        if jobs.exports_dir is not None:
            removed += remove_staged_files(exports_dir(jobs.exports_dir))
        if removed:
            log.warning("removed the staged files of %d interrupted training run(s): %s", len(removed),
                        ", ".join(path.name for path in removed))
        if pool is not None:
            await pool.start()
        if explain_lane is not None:
            await explain_lane.start(after=pool)  # once the prediction workers are up: see ExplainLane.start
        try:
            yield
        finally:
            if explain_lane is not None:
                await explain_lane.close()
            if pool is not None:
                await pool.close()

    app = FastAPI(
        lifespan=lifespan,
        title="Digit Studio API",
        description=f"Handwritten digit recognition with {len(jobs.models)} models ({', '.join(jobs.models)}; "
                    "served through ONNX), and live training.",
        version="1.0",
    )
    app.router.route_class = BodyLimitRoute  # every API route; Gradio's mount keeps its own limits
    install_error_handlers(app)
    require_train_token = token_dependency(train_token)
    app.include_router(status_router(predictor, jobs, pool, explain_lane, drawings))
    app.include_router(training_router(jobs, require_train_token))
    app.include_router(predict_router(predictor, lanes, explain_lane))
    # The drawings database and model versions (api/drawings.py, api/versions.py).
    if drawings is not None:
        app.include_router(drawings_router(drawings, predictor, require_train_token))
    if versions is not None:
        app.include_router(versions_router(versions, predictor, require_train_token))
    refuse_other_methods(app)
    return app
