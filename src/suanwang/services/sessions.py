"""Web-console sessions as use cases: log in with an API key, find the session's principal,
log out.

The principal of a session is always its key's, read again on every request: a session
never grants more than its key, and a revoked or expired key ends it (revoking also deletes
the key's sessions). Logins and logouts are audited like every other change.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass

from suanwang.domain.audit import AuditAction
from suanwang.domain.console_sessions import (
    SESSION_ID_BYTES,
    SESSION_TTL_S,
    SessionRecord,
    audit_name,
    hash_session_id,
)
from suanwang.domain.errors import Unauthenticated
from suanwang.domain.ids import TenantId
from suanwang.domain.tenancy import Principal
from suanwang.ports import Clock, UnitOfWork, UnitOfWorkFactory
from suanwang.services import audit
from suanwang.services.tenancy import Tenancy

NO_SESSION = "not logged in, or the session ended"


@dataclass(frozen=True, slots=True)
class NewSession:
    """A session as opened: the id goes into the cookie and is never stored or shown again."""

    session_id: str
    expires_at: float
    principal: Principal


class ConsoleSessions:
    """Log in, look up and log out console sessions."""

    def __init__(self, uows: UnitOfWorkFactory, clock: Clock, tenancy: Tenancy) -> None:
        self._uows = uows
        self._clock = clock
        self._tenancy = tenancy

    def login(self, presented_key: str | None, request_id: str | None = None) -> NewSession:
        """Exchange a valid API key for a new session (Unauthenticated otherwise)."""
        principal = self._tenancy.authenticate(presented_key)
        principal = Principal(
            principal.key_id,
            principal.scope,
            principal.tenant_id,
            key_prefix=principal.key_prefix,
            request_id=request_id,
        )
        session_id = secrets.token_urlsafe(SESSION_ID_BYTES)
        now = self._clock.now()
        record = SessionRecord(
            hash_session_id(session_id), principal.key_id, now, now + SESSION_TTL_S
        )
        with self._uows() as uow:
            uow.sessions.delete_expired(now)
            uow.sessions.add(record)
            self._audit(uow, principal, AuditAction.SESSION_LOGIN, record, now)
            uow.commit()
        return NewSession(session_id, record.expires_at, principal)

    def principal(self, session_id: str | None, request_id: str | None = None) -> Principal:
        """The principal of a live session whose key is still usable (Unauthenticated else)."""
        if not session_id:
            raise Unauthenticated(NO_SESSION, hint="log in with an API key")
        now = self._clock.now()
        with self._uows() as uow:
            record = uow.sessions.get(hash_session_id(session_id))
            key = None if record is None else uow.tenancy.key(record.key_id)
            if record is None or key is None:
                raise Unauthenticated(NO_SESSION, hint="log in with an API key")
            if record.expires_at <= now or not key.usable_at(now):
                uow.sessions.delete(record.id_hash)
                uow.commit()
                raise Unauthenticated(NO_SESSION, hint="log in again")
        tenant = TenantId(key.tenant) if key.tenant else None
        return Principal(key.id, key.scope, tenant, key_prefix=key.prefix, request_id=request_id)

    def logout(self, session_id: str, principal: Principal) -> bool:
        """End the session; False if it had already ended."""
        now = self._clock.now()
        id_hash = hash_session_id(session_id)
        with self._uows() as uow:
            record = uow.sessions.get(id_hash)
            if record is None or not uow.sessions.delete(id_hash):
                return False
            self._audit(uow, principal, AuditAction.SESSION_LOGOUT, record, now)
            uow.commit()
        return True

    @staticmethod
    def _audit(
        uow: UnitOfWork,
        principal: Principal,
        action: AuditAction,
        record: SessionRecord,
        at: float,
    ) -> None:
        audit.record(
            uow,
            principal,
            action,
            audit_name(record.id_hash),
            tenant=principal.tenant_id,
            at=at,
            after={"key_id": record.key_id, "expires_at": record.expires_at},
        )
