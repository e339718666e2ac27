"""Domain errors. Every error carries the field it concerns and a hint on what to do next.

DomainError
├── ValidationError      bad input (HTTP 422 / CLI exit 1)
├── NotFound             missing, or not yours (HTTP 404, identical either way)
├── Conflict             state forbids the change (HTTP 409)
├── Forbidden            authenticated, but the scope does not allow it (HTTP 403)
├── Unauthenticated      no valid key (HTTP 401)
└── Unavailable          a cluster's engine cannot be reached now (HTTP 503)
"""

from __future__ import annotations


class DomainError(Exception):
    """Base of all expected errors; ``message`` is one readable line."""

    status = 400

    def __init__(self, message: str, *, field: str | None = None, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field
        self.hint = hint

    def one_line(self) -> str:
        """The error as one line: message, field and hint."""
        parts = [self.message]
        if self.field:
            parts.append(f"(field: {self.field})")
        if self.hint:
            parts.append(f"hint: {self.hint}")
        return " ".join(parts)


class ValidationError(DomainError):
    """The input is malformed or impossible to satisfy."""

    status = 422


class NotFound(DomainError):
    """The object does not exist, or belongs to someone else."""

    status = 404


class Conflict(DomainError):
    """The object's state forbids the change."""

    status = 409


class Forbidden(DomainError):
    """The caller's scope does not allow this."""

    status = 403


class Unauthenticated(DomainError):
    """No valid credentials."""

    status = 401


class Unavailable(DomainError):
    """Something the request needs (a cluster's engine) cannot be reached now; try later."""

    status = 503
