"""Apps: create, version, publish, share, delete; resolve one for the gateway.

An app belongs to one tenant and is addressed by its name. Every lookup goes through
:meth:`Apps._owned`, which answers 404 for another tenant's app exactly as for a missing
one. Knowledge bases are named by id or name and must be the caller's tenant's: another
tenant's is refused with the same words as a missing one (422, ``knowledge_bases``).
Sharing names key ids of the app's own tenant; :meth:`Apps.resolve` (the gateway's
lookup) answers None to any other key, so the gateway's 404 is the same as for an
unknown model.
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace

from suanwang.domain.apps import (
    App,
    AppChange,
    AppSettings,
    AppVersion,
    PublishedApp,
    check_name,
    kept_hits,
)
from suanwang.domain.errors import Conflict, NotFound, ValidationError
from suanwang.domain.knowledge import Hit, KnowledgeBase
from suanwang.domain.serving import ModelKind
from suanwang.domain.tenancy import Principal
from suanwang.ports import Clock, UnitOfWork, UnitOfWorkFactory
from suanwang.services.knowledge import KnowledgeBases, RetrievalQuery


@dataclass(frozen=True, slots=True)
class AppSpec:
    name: str
    settings: AppSettings
    """``knowledge_bases`` may name bases by id or name; they are stored as ids."""
    description: str = ""
    template: str | None = None
    shared_keys: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class AppDetail:
    """An app with one of its versions and that version's knowledge bases."""

    app: App
    version: AppVersion
    bases: tuple[KnowledgeBase, ...]


class Apps:
    def __init__(
        self,
        uows: UnitOfWorkFactory,
        clock: Clock,
        knowledge: KnowledgeBases,
        model_kinds: Mapping[str, ModelKind],
    ) -> None:
        self._uows = uows
        self._clock = clock
        self._knowledge = knowledge
        self._kinds = model_kinds

    def create(self, principal: Principal, spec: AppSpec) -> AppDetail:
        tenant = _tenant_of(principal)
        check_name(spec.name)
        settings, bases = self._checked(principal, spec.settings)
        now = self._clock.now()
        with self._uows() as uow:
            keys = self._shared(uow, tenant, spec.shared_keys)
            if uow.apps.named(tenant, spec.name) is not None:
                raise Conflict(f"app {spec.name!r} exists", field="name", hint="update it")
            app = App(
                id=f"app_{secrets.token_hex(8)}",
                tenant=tenant,
                name=spec.name,
                description=spec.description,
                published=1,
                latest=1,
                shared_keys=keys,
                template=spec.template,
                created_at=now,
                updated_at=now,
            )
            version = AppVersion(app.id, 1, settings, "created", now)
            uow.apps.add(app, version)
            uow.commit()
        return AppDetail(app, version, bases)

    def visible(self, principal: Principal) -> list[App]:
        with self._uows() as uow:
            return uow.apps.all(None if principal.is_operator else principal.tenant_id or "")

    def get(self, principal: Principal, name: str, version: int | None = None) -> AppDetail:
        """The app with its published version (or ``version``)."""
        with self._uows() as uow:
            app = self._owned(uow, principal, name)
            found = uow.apps.version(app.id, version or app.published)
        if found is None:
            raise NotFound(f"app {name!r} has no version {version}", field="version")
        return AppDetail(app, found, self._bases(principal, found.settings))

    def versions(self, principal: Principal, name: str) -> list[AppVersion]:
        with self._uows() as uow:
            return uow.apps.versions(self._owned(uow, principal, name).id)

    def update(
        self, principal: Principal, name: str, change: AppChange, *, publish: bool = True
    ) -> AppDetail:
        """A new version from the latest one with ``change`` applied (published unless
        ``publish`` is false)."""
        with self._uows() as uow:
            app = self._owned(uow, principal, name)
            latest = uow.apps.version(app.id, app.latest)
        assert latest is not None
        settings, bases = self._checked(principal, change.applied_to(latest.settings))
        now = self._clock.now()
        with self._uows() as uow:
            app = self._owned(uow, principal, name)
            version = AppVersion(app.id, app.latest + 1, settings, "updated", now)
            uow.apps.add_version(version, now, publish=publish)
            uow.commit()
        published = version.version if publish else app.published
        app = replace(app, latest=version.version, published=published, updated_at=now)
        return AppDetail(app, version, bases)

    def publish(self, principal: Principal, name: str, version: int) -> AppDetail:
        """Make ``version`` the one ``app:<name>`` calls use (an older one: a rollback)."""
        with self._uows() as uow:
            app = self._owned(uow, principal, name)
            found = uow.apps.version(app.id, version)
            if found is None:
                raise NotFound(f"app {name!r} has no version {version}", field="version")
            now = self._clock.now()
            uow.apps.publish(app.id, version, now)
            uow.commit()
        app = replace(app, published=version, updated_at=now)
        return AppDetail(app, found, self._bases(principal, found.settings))

    def share(self, principal: Principal, name: str, key_ids: Sequence[str]) -> App:
        """Restrict the app to these keys of its tenant (empty: every key of the tenant)."""
        with self._uows() as uow:
            app = self._owned(uow, principal, name)
            keys = self._shared(uow, app.tenant, tuple(key_ids))
            now = self._clock.now()
            uow.apps.share(app.id, keys, now)
            uow.commit()
        return replace(app, shared_keys=keys, updated_at=now)

    def delete(
        self, principal: Principal, name: str, *, with_knowledge_bases: bool = False
    ) -> tuple[App, list[KnowledgeBase]]:
        """Delete the app and its versions; with ``with_knowledge_bases`` also every base
        one of its versions used that no other app of the tenant uses."""
        with self._uows() as uow:
            app = self._owned(uow, principal, name)
            used = {kb for v in uow.apps.versions(app.id) for kb in v.settings.knowledge_bases}
            for other in uow.apps.all(app.tenant):
                if other.id != app.id:
                    used -= {
                        kb for v in uow.apps.versions(other.id) for kb in v.settings.knowledge_bases
                    }
            uow.apps.delete(app.id)
            uow.commit()
        gone: list[KnowledgeBase] = []
        for kb_id in sorted(used) if with_knowledge_bases else []:
            kb = self._knowledge.owned(principal, kb_id)
            if kb is not None:
                gone.append(self._knowledge.delete(principal, kb.id))
        return app, gone

    # the gateway's side
    def resolve(self, principal: Principal, name: str, version: int | None) -> PublishedApp | None:
        """The app version ``principal``'s key may call, or None (missing, another
        tenant's, not shared with this key, no such version: all alike)."""
        if principal.tenant_id is None:
            return None
        with self._uows() as uow:
            app = uow.apps.named(principal.tenant_id, name)
            if app is None or not app.usable_by(principal.tenant_id, principal.key_id):
                return None
            found = uow.apps.version(app.id, version or app.published)
        if found is None:
            return None
        bases = self._bases(principal, found.settings)
        return PublishedApp(app.name, found.version, found.settings, bases)

    def search(self, app: PublishedApp, query: str, vector: Sequence[float] | None) -> list[Hit]:
        """The chunks given to the model (top_k, above the score floor)."""
        if not app.bases or not query.strip():
            return []
        s = app.settings
        wanted = RetrievalQuery(query[:2000], s.top_k, s.retrieval_mode)
        return kept_hits(self._knowledge.search(app.bases, wanted, vector), s.score_floor)

    # checks
    def _checked(
        self, principal: Principal, settings: AppSettings
    ) -> tuple[AppSettings, tuple[KnowledgeBase, ...]]:
        kind = self._kinds.get(settings.model)
        if kind is not ModelKind.CHAT:
            raise ValidationError(
                f"{settings.model!r} is not a chat model of the catalogue",
                field="model",
                hint="see suanwang models list",
            )
        bases: list[KnowledgeBase] = []
        for ref in settings.knowledge_bases:
            kb = self._knowledge.owned(principal, ref)
            if kb is None:
                raise ValidationError(
                    f"no knowledge base {ref!r} in your tenant",
                    field="knowledge_bases",
                    hint="suanwang kb list",
                )
            if kb not in bases:
                bases.append(kb)
        if len({kb.embedding_model for kb in bases if kb.embedding_model}) > 1:
            raise ValidationError(
                "the knowledge bases use different embedding models",
                field="knowledge_bases",
                hint="use bases embedded with one model",
            )
        ids = tuple(kb.id for kb in bases)
        return replace(settings, knowledge_bases=ids), tuple(bases)

    def _bases(self, principal: Principal, settings: AppSettings) -> tuple[KnowledgeBase, ...]:
        """The version's bases that still exist (a deleted one is skipped)."""
        found = [self._knowledge.owned(principal, kb_id) for kb_id in settings.knowledge_bases]
        return tuple(kb for kb in found if kb is not None)

    def _shared(self, uow: UnitOfWork, tenant: str, key_ids: tuple[str, ...]) -> tuple[str, ...]:
        for key_id in key_ids:
            key = uow.tenancy.key(key_id)
            if key is None or key.tenant != tenant or key.revoked_at is not None:
                raise ValidationError(
                    f"no key {key_id!r} in your tenant", field="key_ids", hint="suanwang keys list"
                )
        return tuple(dict.fromkeys(key_ids))

    def _owned(self, uow: UnitOfWork, principal: Principal, name: str) -> App:
        app = uow.apps.named(principal.tenant_id, name) if principal.tenant_id else None
        if app is None:
            raise NotFound(f"no app {name!r}", field="name")
        return app


def _tenant_of(principal: Principal) -> str:
    if principal.tenant_id is None:
        raise ValidationError(
            "apps belong to a tenant; the operator key has none",
            field="authorization",
            hint="use a tenant admin key",
        )
    return principal.tenant_id
