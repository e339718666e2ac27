"""Web-console session rows: the hash of the session id, the key, expiry."""

from __future__ import annotations

from sqlalchemy import delete
from sqlalchemy.orm import Session

from suanwang.adapters.db.tables import ConsoleSessionRow
from suanwang.domain.console_sessions import SessionRecord


class SessionRepository:
    """Reads and writes console sessions inside one unit of work."""

    def __init__(self, session: Session) -> None:
        self._s = session

    def add(self, record: SessionRecord) -> None:
        self._s.add(
            ConsoleSessionRow(
                id_hash=record.id_hash,
                key_id=record.key_id,
                created_at=record.created_at,
                expires_at=record.expires_at,
            )
        )
        self._s.flush()

    def get(self, id_hash: str) -> SessionRecord | None:
        row = self._s.get(ConsoleSessionRow, id_hash)
        if row is None:
            return None
        return SessionRecord(row.id_hash, row.key_id, row.created_at, row.expires_at)

    def delete(self, id_hash: str) -> bool:
        result = self._s.execute(
            delete(ConsoleSessionRow).where(ConsoleSessionRow.id_hash == id_hash)
        )
        return bool(result.rowcount)  # type: ignore[attr-defined]

    def delete_for_key(self, key_id: str) -> int:
        result = self._s.execute(
            delete(ConsoleSessionRow).where(ConsoleSessionRow.key_id == key_id)
        )
        return int(result.rowcount)  # type: ignore[attr-defined]

    def delete_expired(self, now: float) -> int:
        result = self._s.execute(
            delete(ConsoleSessionRow).where(ConsoleSessionRow.expires_at <= now)
        )
        return int(result.rowcount)  # type: ignore[attr-defined]
