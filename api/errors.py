"""What every REST route shares: the body limit, the {"error": ...} shape of every failure, and
the JSON 405 for a path's other methods. Routers (api/*.py) import from here; api/app.py
installs the handlers once on the app.
"""
from __future__ import annotations

import json
import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from fastapi.routing import APIRoute
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import Message, Receive, Send

log = logging.getLogger(__name__)

MAX_BODY_BYTES = 5 * 1024 * 1024  # a phone photo as base64 fits; a 280x280 drawing is ~5-20 KB
JSON_EXAMPLE = '{"image": "data:image/png;base64,iVBOR...", "model": "model2"}'
TRAIN_JSON_EXAMPLE = '{"epochs": 2} (or no body for the defaults)'
ALL_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")


def whole_number(text: str, max_digits: int = 18) -> int | None:
    """`text` as a whole number written with the ASCII digits 0-9, else None.

    Not str.isdigit() alone: it is true for "²" and "³", which int() then refuses with a ValueError (a
    500 and a reset keep-alive connection, issue 18 item 13); int() itself takes Arabic-Indic and other
    scripts' digits, which no route documents. `max_digits` bounds int()'s work and the number."""
    if not (text.isascii() and text.isdigit()) or len(text) > max_digits:
        return None
    return int(text)


class ErrorResponse(BaseModel):
    error: str = Field(description="What is wrong and how to fix it")


class BodyLimitRoute(APIRoute):
    """Refuses a body over MAX_BODY_BYTES with a JSON 413: by its Content-Length before reading
    it, and by counting while it streams in (chunked uploads have no Content-Length).

    (FastAPI's own `max_body_size` answers in plain text, which would break the
    {"error": ...} contract.)
    """

    def get_route_handler(self):
        handler = super().get_route_handler()

        async def limited_handler(request: Request) -> Response:
            length = request.headers.get("content-length", "")
            if length.isascii() and length.isdigit() and int(length) > MAX_BODY_BYTES:
                raise StarletteHTTPException(413)
            return await handler(Request(request.scope, _limited_receive(request.receive)))

        return limited_handler


def _limited_receive(receive: Receive) -> Receive:
    received = 0

    async def limited() -> Message:
        nonlocal received
        message = await receive()
        received += len(message.get("body", b""))
        if received > MAX_BODY_BYTES:
            raise StarletteHTTPException(413)  # FastAPI re-raises it from its body reading
        return message

    return limited


async def send_error(send: Send, status_code: int, message: str, headers: list[tuple[bytes, bytes]] = ()) -> None:
    """Answer {"error": message} straight through ASGI `send`, for middleware that answers before any route."""
    body = json.dumps({"error": message}).encode()
    await send({"type": "http.response.start", "status": status_code,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                            *headers]})
    await send({"type": "http.response.body", "body": body})


def body_too_large_message() -> str:
    return (f"Request body is larger than {MAX_BODY_BYTES // (1024 * 1024)} MB: send a smaller image "
            f"(a 280x280 PNG drawing is about 5-20 KB)")


def error_response(status_code: int, message: str, headers: dict[str, str] | None = None, **extra: Any) -> JSONResponse:
    return JSONResponse({"error": message, **extra}, status_code=status_code, headers=headers)


def install_error_handlers(app: FastAPI) -> None:
    """Every error of `app` answers {"error": "<what is wrong and how to fix it>"}, never a stack trace."""

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        message = exc.detail if isinstance(exc.detail, str) else str(exc.detail)
        if exc.status_code == 413:
            message = body_too_large_message()
        elif exc.status_code == 405:
            message = f"{request.method} is not allowed on {request.url.path}; see /docs for the methods it accepts"
        elif exc.status_code == 404 and message == "Not Found":
            message = f"No route {request.url.path}; see /docs for the API"
        return error_response(exc.status_code, message, headers=getattr(exc, "headers", None))

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        example = TRAIN_JSON_EXAMPLE if request.url.path.startswith("/train") else JSON_EXAMPLE
        status_code, message = describe_validation_errors(exc.errors(), example)
        return error_response(status_code, message)

    @app.exception_handler(Exception)
    async def unexpected_error(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return error_response(500, f"Internal error ({type(exc).__name__}); the server logged the details")


def refuse_other_methods(app: FastAPI) -> None:
    """A JSON 405 for every REST path's other methods. Without these routes a request such as
    GET /predict matches no route of ours by method and falls through to the Gradio app
    mounted at "/", which answers 404 {"detail": "Not Found"}."""
    allowed: dict[str, set[str]] = {}
    for path, methods in _api_routes(app.routes):
        allowed.setdefault(path, set()).update(methods)
    for path, methods in allowed.items():
        if "GET" in methods:
            methods.add("HEAD")
        others = [method for method in ALL_METHODS if method not in methods]
        app.add_api_route(path, _method_not_allowed(", ".join(sorted(methods))), methods=others,
                          include_in_schema=False)


def _api_routes(routes: list, prefix: str = "") -> list[tuple[str, set[str]]]:
    """(path, methods) of every API route, those of included routers too: FastAPI 0.165 keeps an included
    router as one entry of app.routes (its routes stay the router's), so a plain walk of app.routes saw
    none of the routers' paths and their other methods fell through to Gradio's 404."""
    found = []
    for route in routes:
        if isinstance(route, APIRoute):
            found.append((prefix + route.path, set(route.methods)))
        elif hasattr(route, "original_router"):  # fastapi.routing._IncludedRouter
            context = getattr(route, "include_context", None)
            found += _api_routes(route.original_router.routes, prefix + getattr(context, "prefix", ""))
    return found


def _method_not_allowed(allow: str):
    async def wrong_method(request: Request) -> JSONResponse:
        return error_response(405, f"{request.method} is not allowed on {request.url.path}; use {allow} "
                                   "(see /docs)", headers={"Allow": allow})

    return wrong_method


def describe_validation_errors(errors: list[dict[str, Any]], example: str = JSON_EXAMPLE) -> tuple[int, str]:
    """One user-facing sentence for FastAPI/Pydantic validation errors, and the status code."""
    for error in errors:
        if error.get("type") == "json_invalid":
            detail = (error.get("ctx") or {}).get("error", "syntax error")
            return 400, f"The body is not valid JSON: {detail}; send a JSON object like {example}"
    problems = []
    for error in errors:
        location = [str(part) for part in error.get("loc", ()) if part != "body"]
        kind = error.get("type", "")
        if not location:
            if kind == "missing":
                return 422, f"Request body is missing; send a JSON object like {example}"
            if isinstance(error.get("input"), (bytes, bytearray)):
                return 422, ("Request body must be JSON: send it with the header "
                             f"'Content-Type: application/json', like {example}")
            return 422, f"Request body must be a JSON object like {example}"
        field = ".".join(location)
        if kind == "missing":
            problems.append(f"'{field}' is missing")
        else:
            problems.append(f"'{field}': {error.get('msg', 'invalid value')}")
    return 422, "; ".join(problems) + f" (expected a JSON object like {example})"
