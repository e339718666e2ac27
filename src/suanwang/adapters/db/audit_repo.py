"""The audit log table: inserted into and read, never updated or deleted.

This module has no update or delete path on purpose; the migration adds database triggers
that refuse both (and TRUNCATE on PostgreSQL), so a bug elsewhere cannot rewrite history.
"""

from __future__ import annotations

from sqlalchemy import Select, select
from sqlalchemy.orm import Session

from suanwang.adapters.db.tables import AuditRow
from suanwang.domain.audit import Actor, AuditAction, AuditEntry, AuditQuery
from suanwang.domain.tenancy import Scope

MAX_ROW_ID = 2**31 - 1
"""The largest id the audit table holds (a 32-bit integer column on PostgreSQL)."""


class AuditRepository:
    """Appends and reads audit entries inside one unit of work."""

    def __init__(self, session: Session) -> None:
        self._s = session

    def append(self, entry: AuditEntry) -> int:
        row = AuditRow(
            at=entry.at,
            actor_key_id=entry.actor.key_id,
            actor_key_prefix=entry.actor.key_prefix,
            actor_scope=entry.actor.scope.value,
            actor_tenant=entry.actor.tenant,
            action=entry.action.value,
            resource=entry.resource.value,
            resource_id=entry.resource_id,
            tenant=entry.tenant,
            before=None if entry.before is None else dict(entry.before),
            after=None if entry.after is None else dict(entry.after),
            request_id=entry.request_id,
            outcome=entry.outcome,
        )
        self._s.add(row)
        self._s.flush()
        return row.id

    def entries(self, query: AuditQuery) -> list[AuditEntry]:
        rows = self._s.scalars(_filtered(query).order_by(AuditRow.id.desc()).limit(query.limit))
        return [_entry(r) for r in rows]


def _filtered(q: AuditQuery) -> Select[AuditRow]:
    stmt = select(AuditRow)
    if q.before_id is not None and q.before_id <= MAX_ROW_ID:  # a larger bound bounds nothing
        stmt = stmt.where(AuditRow.id < q.before_id)
    if q.since is not None:
        stmt = stmt.where(AuditRow.at >= q.since)
    if q.until is not None:
        stmt = stmt.where(AuditRow.at < q.until)
    if q.tenant is not None:
        stmt = stmt.where(AuditRow.tenant == q.tenant)
    if q.action is not None:
        stmt = stmt.where(AuditRow.action == q.action.value)
    if q.resource is not None:
        stmt = stmt.where(AuditRow.resource == q.resource.value)
    if q.resource_id is not None:
        stmt = stmt.where(AuditRow.resource_id == q.resource_id)
    if q.actor is not None:
        stmt = stmt.where(AuditRow.actor_key_id == q.actor)
    return stmt


def _entry(row: AuditRow) -> AuditEntry:
    return AuditEntry(
        id=row.id,
        at=row.at,
        actor=Actor(
            row.actor_key_id, row.actor_key_prefix, Scope(row.actor_scope), row.actor_tenant
        ),
        action=AuditAction(row.action),
        resource_id=row.resource_id,
        tenant=row.tenant,
        before=row.before,
        after=row.after,
        request_id=row.request_id,
        outcome=row.outcome,
    )
