"""Errors as RFC 9457 problem documents that name the field and give a hint."""

from __future__ import annotations

import re

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException

from suanwang.domain.errors import DomainError

PROBLEM = "application/problem+json"


class Problem(BaseModel):
    """The body of every error answer (RFC 9457), as the OpenAPI document describes it."""

    type: str = Field("about:blank", description="always about:blank: the status says it all")
    title: str = Field(description="the status's reason phrase")
    status: int = Field(ge=400, le=599, description="the HTTP status, repeated")
    detail: str = Field(description="what went wrong, in one line")
    field: str | None = Field(None, description="the request field at fault, when one is")
    hint: str | None = Field(None, description="what to do next, when there is advice")


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
    body = Problem(
        title=title, status=status, detail=detail, field=field or None, hint=hint or None
    )
    return JSONResponse(
        body.model_dump(exclude_none=True), status_code=status, media_type=PROBLEM, headers=headers
    )


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
    429: "Too Many Requests",
    503: "Service Unavailable",
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


_UNION_MEMBER = re.compile(
    r"(str|int|float|bool|bytes|list|dict|tuple|set|frozenset|none)(\[.*\])?|[a-z-]+\[.*\]"
)
"""How pydantic names the member of a union it tried (``str``, ``list[str]``,
``function-after[...]``) in an error's location: not a field."""


async def validation_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    first = exc.errors()[0] if exc.errors() else {"loc": ("body",), "msg": "invalid request"}
    loc = [str(p) for p in first.get("loc", ()) if p not in ("body",)]
    if "[key]" in loc:  # a bad key of a mapping: name the mapping, not the key
        loc = loc[: loc.index("[key]") - 1]
    members = [i for i, part in enumerate(loc) if _UNION_MEMBER.fullmatch(part)]
    if members:  # a value that matched no member of a union: name the field
        loc = loc[: members[0]]
    field = ".".join(loc) or "body"
    return problem(
        422,
        "Unprocessable Content",
        f"{field}: {first.get('msg', 'invalid')}",
        field=field,
        hint="see /docs for the request schema",
    )


async def http_error(request: Request, exc: Exception) -> JSONResponse:
    """Starlette's own errors (404 no route, 405 wrong method) keep their headers.

    A 405 lists in ``Allow`` every method the path has (RFC 9110), not only those of the
    first route Starlette tried."""
    assert isinstance(exc, HTTPException)
    cause = type(exc.__cause__) if exc.__cause__ is not None else None
    unparsable = _UNPARSABLE.get(cause) if exc.status_code == 400 else None
    if unparsable is not None:  # FastAPI's json.loads raised (it says only "error parsing")
        detail, hint = unparsable
        return problem(400, "Bad Request", detail, field="body", hint=hint)
    if exc.status_code == 400:  # the body is not UTF-8
        return problem(400, "Bad Request", str(exc.detail), field="body", hint="send UTF-8 JSON")
    headers = dict(exc.headers or {})
    if exc.status_code == 405:
        headers["Allow"] = ", ".join(allowed_methods(request.app, request.url.path, headers))
    title = _TITLES.get(exc.status_code, "Error")
    return problem(exc.status_code, title, str(exc.detail), headers=headers or None)


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


def allowed_methods(app: FastAPI, path: str, headers: dict[str, str]) -> list[str]:
    """The methods the OpenAPI document gives ``path``, plus those Starlette named."""
    methods = {m.strip().upper() for m in headers.get("Allow", "").split(",") if m.strip()}
    for template, operations in app.openapi()["paths"].items():
        if _template_regex(template).fullmatch(path):
            methods |= {m.upper() for m in operations}
    return sorted(methods)


def _template_regex(template: str) -> re.Pattern[str]:
    parts = re.split(r"(\{[^}]+\})", template)
    return re.compile("".join("[^/]+" if p.startswith("{") else re.escape(p) for p in parts))
