"""REST routes of the model versions (issue 12), included by api/app.py: create_api.

    GET  /models/{model}/versions                  -> [{"version", "accuracy", "drawings_accuracy",
                                                        "trained_at", "options", "serving", ...}]
    POST /models/{model}/versions/{version}/serve  -> 200 the version, now serving (token rule: like training)

Serving points the model's serving.json in the data location at the version, atomically
(training/model_versions.py); the predictor and the prediction workers reload by file
signature, so requests keep being answered during the switch. With PostgreSQL the pointer is in
the database too, and every replica follows it within a second (training/version_store.py);
while the database is down these routes answer 503 in words.
"""
from __future__ import annotations

from typing import Any, Callable

from api.errors import BodyLimitRoute, ErrorResponse, whole_number
from fastapi import APIRouter, Depends
from starlette.exceptions import HTTPException as StarletteHTTPException

from inference.predictor import Predictor
from training.model_versions import ModelVersions, VersionError, VersionsUnavailableError


def versions_router(versions: ModelVersions, predictor: Predictor, require_token: Callable[..., None]) -> APIRouter:

    router = APIRouter(route_class=BodyLimitRoute, tags=["versions"])
    errors = {code: {"model": ErrorResponse} for code in (401, 403, 404, 503)}

    def model_or_404(name: str) -> str:
        if name not in versions.models:
            raise StarletteHTTPException(404, f"Unknown model {name[:40]!r}; choose one of: {', '.join(versions.models)}")
        return name

    @router.get("/models/{model}/versions", summary="The kept versions of a model, newest first", responses=errors)
    def list_versions(model: str) -> list[dict[str, Any]]:
        try:
            return versions.list(model_or_404(model))
        except VersionsUnavailableError as error:
            raise StarletteHTTPException(503, str(error)) from None

    @router.post("/models/{model}/versions/{version}/serve", summary="Serve a kept version (atomic, hot)",
                 responses=errors, dependencies=[Depends(require_token)])
    def serve_version(model: str, version: str) -> dict[str, Any]:
        name = model_or_404(model)
        if not version.isascii():  # "¹": 422 like every malformed number (issue 18 item 13)
            raise StarletteHTTPException(422, f"Versions are written with the digits 0-9, got {version[:20]!r}")
        number = whole_number(version, max_digits=9)
        if number is None:
            raise StarletteHTTPException(404, f"No version {version[:20]!r} of {name}: versions are whole numbers; "
                                              f"GET /models/{name}/versions lists them")
        try:
            served = versions.serve(name, number)
        except VersionsUnavailableError as error:  # the database of the versions (PostgreSQL) is down
            raise StarletteHTTPException(503, str(error)) from None
        except VersionError as error:
            raise StarletteHTTPException(404, str(error)) from None
        predictor.reload(name)  # now rather than at the next request (which would also see the new file)
        return served

    return router
