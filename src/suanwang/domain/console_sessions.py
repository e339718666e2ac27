"""Web-console sessions: what is stored, and how the cookie and CSRF tokens relate.

The browser holds a random session id (the cookie); the database holds only its SHA-256
hash, the key the session was opened with and when it expires. The principal is the key's,
read again on every request, so a revoked or expired key ends its sessions at once. The
CSRF token is derived from the session id (HMAC), so it needs no storage and is worthless
without the HttpOnly cookie it belongs to (a synchronizer token per session).
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass
from typing import Final

SESSION_TTL_S: Final = 8 * 3600
"""A console session lasts a working day; logging in again starts a new one."""
SESSION_ID_BYTES: Final = 32


@dataclass(frozen=True, slots=True)
class SessionRecord:
    """A stored session: never the id itself, only its hash."""

    id_hash: str
    key_id: str
    created_at: float
    expires_at: float


def hash_session_id(session_id: str) -> str:
    """SHA-256 hex of the cookie's value (a 256-bit random id: a fast hash is right)."""
    return hashlib.sha256(session_id.encode("utf-8")).hexdigest()


def csrf_token(session_id: str) -> str:
    """The session's CSRF token: HMAC-SHA256 of a fixed label under the session id."""
    return hmac.new(session_id.encode("utf-8"), b"suanwang-console-csrf", "sha256").hexdigest()


def csrf_matches(session_id: str, presented: str | None) -> bool:
    """Whether ``presented`` is the session's CSRF token (constant-time)."""
    return presented is not None and hmac.compare_digest(csrf_token(session_id), presented)


def audit_name(id_hash: str) -> str:
    """How the audit log names a session: a short prefix of its hash (never the id)."""
    return id_hash[:12]
