"""The one token rule: with TRAIN_TOKEN set, protected routes need `Authorization: Bearer <token>`
(compared in constant time). Every router takes the dependency made here."""
from __future__ import annotations

import hmac
from typing import Callable

from fastapi import Depends
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.exceptions import HTTPException as StarletteHTTPException

bearer = HTTPBearer(auto_error=False, description="Needed only when the server sets TRAIN_TOKEN")


def token_dependency(train_token: str | None) -> Callable[..., None]:
    """A FastAPI dependency that lets a request through when no token is set or it sends the token."""

    def require_train_token(credentials: HTTPAuthorizationCredentials | None = Depends(bearer)) -> None:
        if not train_token:
            return
        if credentials is None:
            raise StarletteHTTPException(
                401, "Training is protected on this server: send the header 'Authorization: Bearer <TRAIN_TOKEN>'",
                headers={"WWW-Authenticate": "Bearer"})
        if not hmac.compare_digest(credentials.credentials.encode(), train_token.encode()):
            raise StarletteHTTPException(403, "Wrong training token: send the server's TRAIN_TOKEN as "
                                              "'Authorization: Bearer <TRAIN_TOKEN>'")

    return require_train_token
