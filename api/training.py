"""Training over REST: start, cancel and follow a model's training job (the job manager is shared with
the UI's Train tab, so a run started here shows there and the other way round).

    POST   /train/{model}          start training (optional JSON options) -> 202; 409 if already running
    POST   /train/{model}/cancel   cancel (also DELETE /train/{model})
    GET    /train_status/{model}   {"progress", "status", "accuracy", "running", "error", ...}

Starting and cancelling need `Authorization: Bearer <token>` when the server sets TRAIN_TOKEN.
"""
from __future__ import annotations

from typing import Any, Callable

from fastapi import APIRouter, Body, Depends
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from api.errors import BodyLimitRoute, ErrorResponse, error_response
from training.jobs import JobAlreadyRunningError, JobManager, TrainingUnavailableError

STATUS_HISTORY = 100  # events in /train_status (the UI streams the rest from the job manager)


def training_router(jobs: JobManager, require_train_token: Callable[..., None]) -> APIRouter:
    router = APIRouter(route_class=BodyLimitRoute, tags=["training"])
    error_responses = {code: {"model": ErrorResponse} for code in (401, 403, 404, 409, 413, 422, 503)}

    def model_or_404(name: str) -> str:
        if name not in jobs.models:
            raise StarletteHTTPException(404, f"Unknown model {name!r}; choose one of: {', '.join(jobs.models)}")
        return name

    @router.post("/train/{model}", status_code=202, summary="Start training a model in the background",
                 responses=error_responses, dependencies=[Depends(require_train_token)])
    def start_training(model: str, options: dict[str, Any] | None = Body(
            None, examples=[{"epochs": 2}, {"preset": "quick"}],
            description="Optional: epochs, batch_size, learning_rate, limit, seed, preset ('default' or 'quick')")):
        name = model_or_404(model)
        try:
            status = jobs.start(name, options)
        except JobAlreadyRunningError as exc:
            return error_response(409, str(exc), status=_without_history(jobs.status(name)))
        except TrainingUnavailableError as exc:
            return error_response(503, str(exc))
        except ValueError as exc:
            return error_response(422, str(exc))
        return JSONResponse({"started": True, "model": name, "status_url": f"/train_status/{name}",
                             **_without_history(status)}, status_code=202)

    @router.post("/train/{model}/cancel", summary="Cancel a running training job",
                 responses=error_responses, dependencies=[Depends(require_train_token)])
    def cancel_training(model: str) -> dict[str, Any]:
        name = model_or_404(model)
        cancelled = jobs.cancel(name)
        status = _without_history(jobs.status(name))
        if cancelled:
            message = "Cancelling: the previous model stays in place"
        elif status["running"]:  # the run had already saved its files: they are in place
            message = f"Too late to cancel: {name}'s new model is already saved and in use; the job is finishing"
        else:
            message = f"{name} is not training (its last job: {status['status']})"
        return {"cancelled": cancelled, "model": name, "message": message, **status}

    router.add_api_route("/train/{model}", cancel_training, methods=["DELETE"], summary="Cancel a running training job",
                         responses=error_responses, dependencies=[Depends(require_train_token)])

    @router.get("/train_status/{model}", summary="Progress of the current or last training job",
                responses=error_responses)
    def train_status(model: str) -> dict[str, Any]:
        return jobs.status(model_or_404(model), history=STATUS_HISTORY)

    return router


def _without_history(status: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in status.items() if key != "history"}
