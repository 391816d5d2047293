"""Errors of the relay API, in Varg's own error shape.

    RelayError                 {"error", "message", "field"?, "statusCode"}
    ├── ValidationError        400  bad input; `field` names it
    ├── AuthError              401  missing or unknown bearer token
    ├── NotFoundError          404  no such subscription, delivery or watched job
    ├── MethodNotAllowed       405  the route exists, not with this method; `Allow` lists its own
    ├── PayloadTooLarge        413  body over 64 KiB
    ├── RateLimitError         429
    └── InternalError          500  a bug; the message never carries details
"""

from __future__ import annotations

from typing import Any


class RelayError(Exception):
    status_code = 500
    name = "InternalError"

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field

    def body(self) -> dict[str, Any]:
        body: dict[str, Any] = {"error": self.name, "message": self.message}
        if self.field is not None:
            body["field"] = self.field
        body["statusCode"] = self.status_code
        return body


class ValidationError(RelayError):
    status_code = 400
    name = "ValidationError"


class AuthError(RelayError):
    status_code = 401
    name = "AuthError"


class NotFoundError(RelayError):
    status_code = 404
    name = "NotFoundError"


class MethodNotAllowed(RelayError):
    status_code = 405
    name = "MethodNotAllowed"


class PayloadTooLarge(RelayError):
    status_code = 413
    name = "PayloadTooLarge"


class RateLimitError(RelayError):
    status_code = 429
    name = "RateLimitError"


class InternalError(RelayError):
    pass
