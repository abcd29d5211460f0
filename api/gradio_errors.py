"""Gradio's refusals in the app's words: every error answer of a Gradio route carries {"error"}.

The REST routes answer every failure as {"error": "..."} (api/errors.py). Gradio's own routes answer
theirs as {"detail": "..."} (a 503 "Queue is full", a 400 "Session hash not found", a 403 "File not
allowed"), as a list of Pydantic errors under "detail" (a 422 for a missing field), or as plain text
(a 400 "Could not parse multipart request"). `GradioErrorsInOurWords` adds the same "error" to each,
worded for a person, and keeps Gradio's "detail" beside it for Gradio's own clients. Only small answers
are rewritten; anything else, and every success, passes as it came. MCP answers JSON-RPC errors in
JSON-RPC's own shape, which its clients read: its path is left alone.

Gradio's one-shot route (POST /gradio_api/run/<api>, and its old name /gradio_api/api/<api>) answers an
event's gr.Error, a refusal already in words ({"error": "Unknown model ..."}), with HTTP 500. The event's
status (REFUSAL_STATUS in the request's scope, set by api/gradio_fixes.py from ui/refusals.Refused: 422
for an unknown model, 429 for too many, ...) replaces the 500, so a curl user gets what REST answers,
with REST's Retry-After when the refusal says when to come back (REFUSAL_RETRY_AFTER).
"""
from __future__ import annotations

import json

ERROR_BODY_MAX = 64 * 1024  # Gradio's refusals are ~100 bytes; an error answer bigger than this passes as it is
VALIDATION_ERRORS_NAMED = 3  # of a 422's Pydantic errors, the ones named in "error"
REFUSAL_STATUS = "digit_studio.refusal_status"  # scope key: the status of the event's refusal, if it refused
REFUSAL_RETRY_AFTER = "digit_studio.refusal_retry_after"  # scope key: its Retry-After (whole seconds), if it has one


class GradioErrorsInOurWords:
    """ASGI middleware over the Gradio app's routes (`prefix`), MCP's excepted."""

    def __init__(self, app, prefix: str = "/gradio_api/"):
        self.app = app
        self.prefix = prefix
        self.mcp = prefix + "mcp"

    async def __call__(self, scope, receive, send) -> None:
        path = scope.get("path", "") if scope["type"] == "http" else ""
        if path.startswith(self.prefix) and not path.startswith(self.mcp):
            send = errors_in_our_words(send, scope)
        await self.app(scope, receive, send)


def errors_in_our_words(send, scope: dict | None = None):
    """`send` with a small error answer (status >= 400) rewritten by `with_error`, and an event's refusal
    answered with its own status instead of Gradio's 500."""
    held: dict | None = None
    body = b""

    async def sending(message) -> None:
        nonlocal held, body
        if message["type"] == "http.response.start" and message["status"] == 500 and scope \
                and scope.get(REFUSAL_STATUS):
            message = {**message, "status": scope[REFUSAL_STATUS]}
            if scope.get(REFUSAL_RETRY_AFTER) is not None:
                message["headers"] = [*message.get("headers", []),
                                      (b"retry-after", str(scope[REFUSAL_RETRY_AFTER]).encode())]
        if message["type"] == "http.response.start" and message["status"] >= 400:
            held = message
            return
        if held is None or message["type"] != "http.response.body":
            await send(message)
            return
        body += message.get("body", b"")
        if message.get("more_body") and len(body) <= ERROR_BODY_MAX:
            return
        start, held = held, None
        rewritten = with_error(body, _content_type(start)) if not message.get("more_body") else None
        if rewritten is None:  # not a small refusal we can read: pass on what came, as it came
            await send(start)
            await send({"type": "http.response.body", "body": body, "more_body": message.get("more_body", False)})
            return
        headers = [(key, value) for key, value in start.get("headers", [])
                   if key.lower() not in (b"content-length", b"content-type")]
        await send({**start, "headers": [*headers, (b"content-type", b"application/json"),
                                         (b"content-length", str(len(rewritten)).encode())]})
        await send({"type": "http.response.body", "body": rewritten})

    return sending


def with_error(body: bytes, content_type: str) -> bytes | None:
    """The answer's body with an "error" in words, or None to leave it as it is."""
    if content_type.startswith("text/plain"):
        text = body.decode("utf-8", "replace").strip()
        return json.dumps({"error": text}).encode() if text else None
    try:
        answer = json.loads(body)
    except ValueError:
        return None
    if not isinstance(answer, dict) or "error" in answer:
        return None
    detail = answer.get("detail")
    if isinstance(detail, str):
        return json.dumps({"error": detail, **answer}).encode()
    if isinstance(detail, list) and detail:
        return json.dumps({"error": _validation_in_words(detail), **answer}).encode()
    return None


def _validation_in_words(problems: list) -> str:
    """A Pydantic error list (FastAPI's 422) as one sentence: 'session_hash: Field required; ...'."""
    named = []
    for problem in problems[:VALIDATION_ERRORS_NAMED]:
        if not isinstance(problem, dict):
            continue
        where = ".".join(str(part) for part in problem.get("loc", []) if part not in ("body", "query"))
        named.append(f"{where or 'the request'}: {str(problem.get('msg', 'not valid'))[:100]}")
    more = len(problems) - VALIDATION_ERRORS_NAMED
    extra = f"; and {more} more" if more > 0 else ""
    return f"This request is not what the route takes ({'; '.join(named)}{extra})."


def _content_type(start: dict) -> str:
    for key, value in start.get("headers", []):
        if key.lower() == b"content-type":
            return value.decode("latin-1").lower()
    return ""
