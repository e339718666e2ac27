"""App rows and their immutable version rows (migration 0014)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import delete, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from suanwang.adapters.db.tables import AppRow, AppVersionRow
from suanwang.domain.apps import App, AppSettings, AppVersion
from suanwang.domain.errors import Conflict
from suanwang.domain.knowledge import RetrievalMode


class AppRepository:
    """:class:`~suanwang.ports.AppStore` inside one unit of work."""

    def __init__(self, session: Session) -> None:
        self._s = session

    def add(self, app: App, version: AppVersion) -> None:
        self._s.add(
            AppRow(
                id=app.id,
                tenant=app.tenant,
                name=app.name,
                description=app.description,
                published=app.published,
                latest=app.latest,
                shared_keys=list(app.shared_keys),
                template=app.template,
                created_at=app.created_at,
                updated_at=app.updated_at,
            )
        )
        try:
            self._s.flush()
        except IntegrityError as exc:  # created at the same moment by another request
            raise Conflict(f"app {app.name!r} exists", field="name", hint="update it") from exc
        self._s.add(_version_row(version))
        self._s.flush()

    def get(self, app_id: str) -> App | None:
        row = self._s.get(AppRow, app_id)
        return None if row is None else _app(row)

    def named(self, tenant: str, name: str) -> App | None:
        row = self._s.scalar(select(AppRow).where(AppRow.tenant == tenant, AppRow.name == name))
        return None if row is None else _app(row)

    def all(self, tenant: str | None) -> list[App]:
        query = select(AppRow).order_by(AppRow.tenant, AppRow.name)
        if tenant is not None:
            query = query.where(AppRow.tenant == tenant)
        return [_app(r) for r in self._s.scalars(query)]

    def add_version(self, version: AppVersion, now: float, *, publish: bool) -> None:
        self._s.add(_version_row(version))
        values: dict[str, Any] = {"latest": version.version, "updated_at": now}
        if publish:
            values["published"] = version.version
        try:
            self._s.flush()
        except IntegrityError as exc:  # another update made this version meanwhile
            raise Conflict("the app changed meanwhile", field="name", hint="retry") from exc
        self._s.execute(update(AppRow).where(AppRow.id == version.app_id).values(**values))

    def versions(self, app_id: str) -> list[AppVersion]:
        query = (
            select(AppVersionRow)
            .where(AppVersionRow.app_id == app_id)
            .order_by(AppVersionRow.version)
        )
        return [_version(r) for r in self._s.scalars(query)]

    def version(self, app_id: str, version: int) -> AppVersion | None:
        row = self._s.get(AppVersionRow, (app_id, version))
        return None if row is None else _version(row)

    def publish(self, app_id: str, version: int, now: float) -> None:
        query = update(AppRow).where(AppRow.id == app_id)
        self._s.execute(query.values(published=version, updated_at=now))

    def share(self, app_id: str, key_ids: tuple[str, ...], now: float) -> None:
        query = update(AppRow).where(AppRow.id == app_id)
        self._s.execute(query.values(shared_keys=list(key_ids), updated_at=now))

    def delete(self, app_id: str) -> None:
        self._s.execute(delete(AppVersionRow).where(AppVersionRow.app_id == app_id))
        self._s.execute(delete(AppRow).where(AppRow.id == app_id))


def _app(row: AppRow) -> App:
    return App(
        id=row.id,
        tenant=row.tenant,
        name=row.name,
        description=row.description,
        published=row.published,
        latest=row.latest,
        shared_keys=tuple(str(k) for k in row.shared_keys),
        template=row.template,
        created_at=row.created_at,
        updated_at=row.updated_at,
    )


def _version_row(v: AppVersion) -> AppVersionRow:
    s = v.settings
    return AppVersionRow(
        app_id=v.app_id,
        version=v.version,
        model=s.model,
        system_prompt=s.system_prompt,
        knowledge_bases=list(s.knowledge_bases),
        parameters={
            "temperature": s.temperature,
            "max_tokens": s.max_tokens,
            "top_k": s.top_k,
            "retrieval_mode": s.retrieval_mode.value,
            "score_floor": s.score_floor,
        },
        note=v.note,
        created_at=v.created_at,
    )


def _version(row: AppVersionRow) -> AppVersion:
    p = row.parameters
    temperature, max_tokens, floor = p.get("temperature"), p.get("max_tokens"), p.get("score_floor")
    top_k = p.get("top_k")
    settings = AppSettings(
        model=row.model,
        system_prompt=row.system_prompt,
        knowledge_bases=tuple(str(k) for k in row.knowledge_bases),
        temperature=float(temperature) if isinstance(temperature, int | float) else None,
        max_tokens=max_tokens if isinstance(max_tokens, int) else None,
        top_k=top_k if isinstance(top_k, int) else 3,
        retrieval_mode=RetrievalMode(str(p.get("retrieval_mode", "hybrid"))),
        score_floor=float(floor) if isinstance(floor, int | float) else None,
    )
    return AppVersion(row.app_id, row.version, settings, row.note, row.created_at)
