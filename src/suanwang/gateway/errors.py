"""Errors in OpenAI's shape: ``{"error": {"message", "type", "param", "code"}}``.

The ``openai`` client maps the HTTP status to its exception class (400 BadRequestError,
401 AuthenticationError, 403 PermissionDeniedError, 404 NotFoundError, 429 RateLimitError,
5xx InternalServerError) and reads ``Retry-After`` on 429.
"""

from __future__ import annotations

import json

from suanwang.domain.errors import DomainError
from suanwang.domain.limits import QuotaExhausted, RateLimited
from suanwang.domain.usage import Outcome

_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    405: "invalid_request_error",
    408: "timeout_error",
    413: "invalid_request_error",
    429: "rate_limit_error",
    500: "server_error",
    502: "upstream_error",
    503: "service_unavailable",
    504: "timeout_error",
}


class GatewayError(Exception):
    """An error answered to the client in OpenAI's shape."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        code: str | None = None,
        param: str | None = None,
        kind: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.code = code
        self.param = param
        self.kind = kind or _TYPES.get(status, "invalid_request_error")
        self.headers = headers or {}

    def body(self) -> bytes:
        error = {"message": self.message, "type": self.kind, "param": self.param, "code": self.code}
        return json.dumps({"error": error}).encode()


def bad_request(
    message: str, param: str | None = None, code: str = "invalid_value"
) -> GatewayError:
    return GatewayError(400, message, param=param, code=code)


def unauthenticated() -> GatewayError:
    return GatewayError(
        401,
        "Invalid or missing API key. Send 'Authorization: Bearer sw_...'.",
        code="invalid_api_key",
        headers={"www-authenticate": "Bearer"},
    )


def from_domain(error: DomainError) -> GatewayError:
    """A domain error (limits, validation) as an OpenAI error."""
    message = error.one_line()
    if isinstance(error, RateLimited):
        return GatewayError(
            429,
            message,
            code="rate_limit_exceeded",
            param=error.field,
            headers={"retry-after": str(error.retry_after_s)},
        )
    if isinstance(error, QuotaExhausted):
        return GatewayError(
            429, message, code="insufficient_quota", param=error.field, kind="insufficient_quota"
        )
    status = 400 if error.status == 422 else error.status
    return GatewayError(status, message, param=error.field)


def ending(error: GatewayError) -> tuple[int, Outcome]:
    """The status and outcome billed for a request refused or failed with ``error``."""
    if error.status == 499:
        return 499, Outcome.CLIENT_DISCONNECT
    if error.status == 504:
        return 504, Outcome.TIMEOUT
    return error.status, Outcome.REJECTED if error.status < 500 else Outcome.UPSTREAM_ERROR
