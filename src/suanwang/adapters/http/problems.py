"""Errors as RFC 9457 problem documents that name the field and give a hint."""

from __future__ import annotations

from typing import Any

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from suanwang.domain.errors import DomainError

PROBLEM = "application/problem+json"


def problem(
    status: int,
    title: str,
    detail: str,
    *,
    field: str | None = None,
    hint: str | None = None,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    """A problem+json response."""
    body: dict[str, Any] = {
        "type": "about:blank",
        "title": title,
        "status": status,
        "detail": detail,
    }
    if field:
        body["field"] = field
    if hint:
        body["hint"] = hint
    return JSONResponse(body, status_code=status, media_type=PROBLEM, headers=headers)


_TITLES = {
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    409: "Conflict",
    413: "Content Too Large",
    415: "Unsupported Media Type",
    422: "Unprocessable Content",
}


async def domain_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, DomainError)
    headers = {"WWW-Authenticate": "Bearer"} if exc.status == 401 else None
    return problem(
        exc.status,
        _TITLES.get(exc.status, "Error"),
        exc.message,
        field=exc.field,
        hint=exc.hint,
        headers=headers,
    )


async def validation_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    first = exc.errors()[0] if exc.errors() else {"loc": ("body",), "msg": "invalid request"}
    loc = [str(p) for p in first.get("loc", ()) if p not in ("body",)]
    field = ".".join(loc) or "body"
    return problem(
        422,
        "Unprocessable Content",
        f"{field}: {first.get('msg', 'invalid')}",
        field=field,
        hint="see /docs for the request schema",
    )


async def http_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, HTTPException)
    cause = type(exc.__cause__) if exc.__cause__ is not None else None
    unparsable = _UNPARSABLE.get(cause) if exc.status_code == 400 else None
    if unparsable is not None:  # FastAPI's json.loads raised (it says only "error parsing")
        detail, hint = unparsable
        return problem(400, "Bad Request", detail, field="body", hint=hint)
    return problem(exc.status_code, _TITLES.get(exc.status_code, "Error"), str(exc.detail))


_UNPARSABLE: dict[type[BaseException] | None, tuple[str, str]] = {
    RecursionError: (
        "the body nests arrays or objects too deeply to parse",
        "no request needs more than a few levels",
    ),
    ValueError: (
        "the body holds a number with thousands of digits, more than can be converted",
        "send numbers in their documented ranges",
    ),
}
"""Why json.loads gave up on a body (its other failures are 422 json_invalid)."""
