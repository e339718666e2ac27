"""What the OpenAPI document promises about answers, kept true by construction.

Every operation gets its error answers from two places, so a new route is documented the
moment it is added:

- **derived** from the authorization table (:mod:`authz`) and the operation's shape: the
  bearer-key security requirement and 401 on every non-public route, 403 where the route
  needs more than a read-only key, 404 where the path names an object, 400 (not UTF-8) and
  413 (too large) where there is a body, 422 where there are parameters or a body; all as
  ``application/problem+json``, which is what :mod:`problems` sends (not FastAPI's default
  ``HTTPValidationError``);
- **declared** on the route with :func:`errors` for what only the service knows (404 for an
  object named in the body, 409, 429), and with :func:`text_body` / :func:`csv_body` for
  answers that are not JSON.

``tests/security/test_openapi_fuzz.py`` (suite R4) checks with Schemathesis that the app
answers only what this document says.
"""

from __future__ import annotations

from typing import Any, Final

from fastapi import FastAPI
from pydantic import BaseModel

from suanwang.adapters.http.authz import PUBLIC, Rule, rule_for
from suanwang.adapters.http.problems import PROBLEM, Problem
from suanwang.domain.tenancy import Scope

Responses = dict[int | str, dict[str, Any]]
BEARER: Final = "bearer"
_PROBLEM_REF: Final = {"$ref": "#/components/schemas/Problem"}
_TEXT_SCHEMA: Final = {"type": "string"}

_DESCRIPTIONS: Final = {
    400: "The request body could not be read (not UTF-8 text)",
    401: "No valid key: missing, unknown, revoked or expired",
    403: "The key's scope does not allow this",
    404: "No such object, or it belongs to another tenant (the same answer either way)",
    409: "The object's state forbids the change",
    413: "The request body is larger than the server's limit",
    422: "The request is malformed or impossible; `field` names the culprit",
    429: "Too many requests; retry after `Retry-After` seconds",
}
_HEADERS: Final[dict[int, dict[str, Any]]] = {
    401: {"WWW-Authenticate": {"description": "Bearer", "schema": {"type": "string"}}},
    429: {"Retry-After": {"description": "seconds to wait", "schema": {"type": "integer"}}},
}


def error(status: int, description: str | None = None) -> dict[str, Any]:
    """One problem+json response object."""
    response: dict[str, Any] = {
        "description": description or _DESCRIPTIONS.get(status, "Error"),
        "content": {PROBLEM: {"schema": dict(_PROBLEM_REF)}},
    }
    if status in _HEADERS:
        response["headers"] = dict(_HEADERS[status])
    return response


def errors(*answers: int | tuple[int, str]) -> Responses:
    """``responses=`` for a route: problem+json answers beyond the derived ones.

    ``errors(409)``, or with a text for this route: ``errors((404, "No such model"))``.
    """
    responses: Responses = {}
    for answer in answers:
        status, description = answer if isinstance(answer, tuple) else (answer, None)
        responses[status] = error(status, description)
    return responses


def text_body(description: str, media_type: str = "text/plain") -> Responses:
    """``responses=`` for a route whose 200 answer is plain text."""
    return {200: {"description": description, "content": {media_type: {"schema": _TEXT_SCHEMA}}}}


def csv_body(description: str) -> Responses:
    """``responses=`` for a route that answers CSV as well as JSON (``?format=csv``)."""
    return {200: {"description": description, "content": {"text/csv": {"schema": _TEXT_SCHEMA}}}}


def request_body(model: type[BaseModel], *media_types: str) -> dict[str, Any]:
    """``openapi_extra=`` for a route that reads its body itself (e.g. YAML or JSON)."""
    schema = inline_schema(model.model_json_schema())
    content = {media_type: {"schema": schema} for media_type in media_types}
    return {"requestBody": {"required": True, "content": content}}


def inline_schema(schema: dict[str, Any]) -> dict[str, Any]:
    """``schema`` with its local ``$defs`` references replaced by the definitions."""
    definitions = schema.pop("$defs", {})

    def resolve(node: Any) -> Any:
        if isinstance(node, dict):
            ref = node.get("$ref", "")
            if ref.startswith("#/$defs/"):
                return resolve(definitions[ref.removeprefix("#/$defs/")])
            return {key: resolve(value) for key, value in node.items()}
        if isinstance(node, list):
            return [resolve(item) for item in node]
        return node

    resolved: dict[str, Any] = resolve(schema)
    return resolved


def install_document(app: FastAPI) -> None:
    """Make ``app.openapi()`` return the document with the derived answers added."""

    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = complete(generate())
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def complete(document: dict[str, Any]) -> dict[str, Any]:
    """Add security and the derived error answers to every operation of ``document``."""
    components = document.setdefault("components", {})
    schemas = components.setdefault("schemas", {})
    schemas["Problem"] = Problem.model_json_schema()
    components["securitySchemes"] = {
        BEARER: {"type": "http", "scheme": "bearer", "description": "an API key (sw_…)"}
    }
    for path, operations in document.get("paths", {}).items():
        for method, operation in operations.items():
            rule = rule_for(method, path)
            if rule is None:
                raise RuntimeError(f"no authorization rule for {method.upper()} {path}")
            _complete_operation(operation, rule)
    for unused in ("HTTPValidationError", "ValidationError"):
        schemas.pop(unused, None)
    return document


def _complete_operation(operation: dict[str, Any], rule: Rule) -> None:
    responses: dict[str, Any] = operation.setdefault("responses", {})
    operation["security"] = [] if rule == PUBLIC else [{BEARER: []}]
    for status in derived_statuses(operation, rule):
        described = responses.get(str(status), {})
        if PROBLEM not in described.get("content", {}):
            responses[str(status)] = error(status, _derived_description(status, rule))
    operation["responses"] = dict(sorted(responses.items()))


def derived_statuses(operation: dict[str, Any], rule: Rule) -> list[int]:
    """The error statuses an operation can answer because of what it is."""
    parameters = operation.get("parameters", [])
    has_body = "requestBody" in operation
    statuses = []
    if rule != PUBLIC:
        statuses.append(401)
        if isinstance(rule, Scope) and rule.rank > Scope.READ_ONLY.rank:
            statuses.append(403)
    if any(p.get("in") == "path" for p in parameters):
        statuses.append(404)
    if has_body:
        statuses += [400, 413]
    if parameters or has_body:
        statuses.append(422)
    return statuses


def _derived_description(status: int, rule: Rule) -> str:
    if status == 403:
        return f"This route needs a {rule} key (or broader)"
    return _DESCRIPTIONS[status]
