"""REST routes of the drawings database (issue 12), included by api/app.py: create_api.

    POST   /drawings              {"image": data URL, "label": 0-9} -> 201 {"id"}   open, within limits
    GET    /drawings              ?limit=&offset=&label= -> {"drawings": [...], "total"}      token
    GET    /drawings/stats        drawings per digit, and the serving models' held-out accuracy  open
    GET    /drawings/{id}/image   the PNG as it was sent                                    token
    DELETE /drawings/{id}         -> 204                                                    token
    GET    /drawings/export       zip: <label>/<id>.png + drawings.csv                      token
    POST   /drawings/import       that zip as the body -> {"imported", "skipped", "problems"}  token

"token": with TRAIN_TOKEN set, the route needs `Authorization: Bearer <token>` (the
same check as training). Posting stays open so visitors can correct the models, within
limits: the body limit (5 MB) and image limits of /predict, the row cap, and for a
client without the token a per-client rate (drawings/limits.py). Without TRAIN_TOKEN
everything is open and there is no rate limit (a local user, a script measuring).
Errors are {"error": ...} through api/errors.py's handlers. The store's errors map to 503 (the
database cannot be used right now: a PostgreSQL restart, a file the app will not touch;
with Retry-After) and 507 (the row cap, a full disk); none is a 500.
"""
from __future__ import annotations

import tempfile
from typing import Any, Callable

import anyio
from fastapi import APIRouter, Body, Depends, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.exceptions import HTTPException as StarletteHTTPException

from api.errors import BodyLimitRoute, ErrorResponse, whole_number
from drawings.archive import ArchiveError, export_zip, import_zip
from drawings.corrections import CORRECTION_ERRORS, RateLimitedError, error_status, save_correction
from drawings.heldout import held_out_accuracy
from drawings.limits import RateLimiter
from drawings.store import DrawingStore, StoreError
from inference.predictor import Predictor

CORRECTION_EXAMPLE = '{"image": "data:image/png;base64,iVBOR...", "label": 7}'
LIST_LIMIT = (50, 500)  # default and largest page of GET /drawings
EXPORT_CHUNK = 256 * 1024
EXPORT_IN_MEMORY = 8 * 1024 * 1024  # a bigger export spills to a temporary file
STATS_AT_ONCE = 2  # /drawings/stats computed in parallel; more wait without holding a thread (issue 18 item 4)
RETRY_AFTER = "2"  # s, with a 503: a PostgreSQL restart or a repaired SQLite file takes about that


def drawings_router(store: DrawingStore, predictor: Predictor, require_token: Callable[..., None],
                    limiter: RateLimiter | None = None) -> APIRouter:
    """The routes over `store`; `require_token` is create_api's training-token dependency."""

    limiter = limiter if limiter is not None else RateLimiter.shared()
    router = APIRouter(route_class=BodyLimitRoute, tags=["drawings"])
    bearer = HTTPBearer(auto_error=False, description="Needed only when the server sets TRAIN_TOKEN")

    def require_drawings_token(credentials: HTTPAuthorizationCredentials | None = Depends(bearer)) -> None:
        try:
            require_token(credentials)
        except StarletteHTTPException as error:  # the same check as training, worded for the drawings
            wrong = error.status_code == 403
            raise StarletteHTTPException(
                error.status_code, ("Wrong token" if wrong else "The saved drawings are protected on this server") +
                ": send the server's TRAIN_TOKEN as 'Authorization: Bearer <TRAIN_TOKEN>' (adding a drawing needs "
                "no token)", headers=error.headers) from None

    protected = [Depends(require_drawings_token)]
    errors = {code: {"model": ErrorResponse} for code in (400, 401, 403, 404, 413, 422, 429, 503, 507)}

    def has_token(credentials: HTTPAuthorizationCredentials | None) -> bool:
        try:
            require_token(credentials)  # passes when the server has no token, or it is the right one
        except StarletteHTTPException:
            return False
        return True

    @router.post("/drawings", status_code=201, summary="Save a corrected drawing with its label", responses=errors)
    def add_drawing(request: Request, payload: Any = Body(None, examples=[{"image": "data:image/png;base64,iVBOR...",
                                                                          "label": 7}]),
                    credentials: HTTPAuthorizationCredentials | None = Depends(bearer)) -> JSONResponse:
        image, label = _correction_fields(payload)
        client = request.client.host if request.client else None
        try:
            new_id = save_correction(store, predictor, image, label, client,
                                     limiter=None if has_token(credentials) else limiter)
        except RateLimitedError as error:
            return _error(429, str(error), headers={"Retry-After": str(int(error.retry_after + 0.999))})
        except CORRECTION_ERRORS as error:
            return _correction_error(error)
        return JSONResponse({"id": new_id, "label": label}, status_code=201)

    @router.get("/drawings", summary="List the saved drawings, newest first", responses=errors,
                dependencies=protected)
    def list_drawings(limit: str | None = None, offset: str | None = None, label: str | None = None) -> dict[str, Any]:
        count = _int_param(limit, "limit", 1, LIST_LIMIT[1], LIST_LIMIT[0])
        start = _int_param(offset, "offset", 0, 10**9, 0)
        digit = _int_param(label, "label", 0, 9, None)
        drawings, total = _available(lambda: store.list(limit=count, offset=start, label=digit))
        for drawing in drawings:
            drawing["image_url"] = f"/drawings/{drawing['id']}/image"
        return {"drawings": drawings, "total": total, "limit": count, "offset": start}

    stats_lane = anyio.CapacityLimiter(STATS_AT_ONCE)

    def stats() -> dict[str, Any]:
        counts = _available(store.counts)
        return {"counts": {str(digit): number for digit, number in counts.items()}, "total": sum(counts.values()),
                "max_rows": store.max_rows, **_available(lambda: held_out_accuracy(store, predictor))}

    @router.get("/drawings/stats", summary="Drawings per digit and the serving models' held-out accuracy",
                responses=errors)
    async def drawing_stats() -> dict[str, Any]:
        # Open to everyone: the counts are ten rows and the held-out measure is made once per change
        # (drawings/heldout.py), and callers beyond STATS_AT_ONCE wait here without taking one of the
        # threads that the other routes (/env, listing, ...) run in.
        return await anyio.to_thread.run_sync(stats, limiter=stats_lane)

    @router.get("/drawings/export", summary="All drawings as a zip: <label>/<id>.png and drawings.csv",
                responses={**errors, 200: {"content": {"application/zip": {}}}}, dependencies=protected)
    def export_drawings() -> StreamingResponse:
        spool = tempfile.SpooledTemporaryFile(max_size=EXPORT_IN_MEMORY)
        try:
            _available(lambda: export_zip(store, spool))
        except BaseException:
            spool.close()
            raise
        spool.seek(0)

        def chunks():
            with spool:
                while chunk := spool.read(EXPORT_CHUNK):
                    yield chunk

        return StreamingResponse(chunks(), media_type="application/zip",
                                 headers={"Content-Disposition": 'attachment; filename="drawings.zip"'})

    @router.post("/drawings/import", summary="Add the drawings of an exported zip (the zip is the request body)",
                 responses=errors, dependencies=protected,
                 openapi_extra={"requestBody": {"content": {"application/zip": {"schema": {"type": "string",
                                                                                          "format": "binary"}}}}})
    async def import_drawings(request: Request) -> JSONResponse:
        data = await request.body()  # at most 5 MB: BodyLimitRoute
        if not data:
            return _error(422, "The request body is empty: send the zip made by GET /drawings/export as the body "
                               "(curl --data-binary @drawings.zip -H 'Content-Type: application/zip')")
        try:
            summary = await anyio.to_thread.run_sync(import_zip, store, predictor, data)
        except ArchiveError as error:
            return _error(400, str(error))
        except StoreError as error:  # what was imported before stays; importing again skips it
            return _correction_error(error)
        return JSONResponse(summary)

    @router.get("/drawings/{drawing_id}/image", summary="The drawing's PNG, as it was sent", responses=errors,
                response_class=Response, dependencies=protected)
    def drawing_image(drawing_id: str) -> Response:
        number = _drawing_id(drawing_id)
        png = _available(lambda: store.png(number))
        if png is None:
            raise StarletteHTTPException(404, f"No drawing {number}; GET /drawings lists them")
        return Response(png, media_type="image/png", headers={"Cache-Control": "private, max-age=3600"})

    @router.delete("/drawings/{drawing_id}", status_code=204, summary="Delete a drawing", responses=errors,
                   response_class=Response, dependencies=protected)
    def delete_drawing(drawing_id: str) -> Response:
        number = _drawing_id(drawing_id)
        if not _available(lambda: store.delete(number)):
            raise StarletteHTTPException(404, f"No drawing {number}; GET /drawings lists them")
        return Response(status_code=204)

    return router


def _correction_fields(payload: Any) -> tuple[str, int]:
    if not isinstance(payload, dict):
        raise StarletteHTTPException(422, f"Send a JSON object like {CORRECTION_EXAMPLE}")
    missing = [key for key in ("image", "label") if key not in payload]
    if missing:
        raise StarletteHTTPException(422, f"{' and '.join(repr(k) for k in missing)} missing: send a JSON object "
                                          f"like {CORRECTION_EXAMPLE}")
    image, label = payload["image"], payload["label"]
    if not isinstance(image, str):
        raise StarletteHTTPException(422, "'image' must be a data URL string like 'data:image/png;base64,...'")
    return image, label  # the label is checked by save_correction (a bool, "7" or 10 is refused there)


def _int_param(value: str | None, name: str, low: int, high: int, default: int | None) -> int | None:
    if value is None or value == "":
        return default
    number = whole_number(value)
    if number is None or not low <= number <= high:
        raise StarletteHTTPException(422, f"'{name}' must be a whole number from {low} to {high} "
                                          f"(digits 0-9), got {value[:20]!r}")
    return number


def _drawing_id(value: str) -> int:
    if not value.isascii():  # "²" or "٣": not an id anyone was given (422 like a malformed query)
        raise StarletteHTTPException(422, f"Drawing ids are written with the digits 0-9, got {value[:20]!r}")
    number = whole_number(value)
    if number is None:
        raise StarletteHTTPException(404, f"No drawing {value[:20]!r}: ids are whole numbers; GET /drawings lists them")
    return number


def _available(work: Callable[[], Any]) -> Any:
    try:
        return work()
    except StoreError as error:
        status = error_status(error)
        raise StarletteHTTPException(status, str(error), headers=_retry_after(status)) from None


def _correction_error(error: Exception) -> JSONResponse:
    """A correction's error (drawings.corrections.error_status), with Retry-After on a 503."""
    status = error_status(error)
    return _error(status, str(error), headers=_retry_after(status))


def _retry_after(status: int) -> dict[str, str] | None:
    """A 503 (the store unavailable for a moment) says when to try again."""
    return {"Retry-After": RETRY_AFTER} if status == 503 else None


def _error(status: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status, headers=headers)
