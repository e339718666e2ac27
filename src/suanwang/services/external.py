"""External endpoints: register, update, remove and health-check OpenAI-compatible servers
that suanwang does not run, as deployments the gateway routes to.

Only the operator registers, changes or removes one (a tenant cannot make the gateway call a
URL of its choosing); it may be public or private to one tenant. Each is a deployment of
engine ``openai-compatible`` on cluster ``external`` with one replica without a job, whose
``base_url`` is the endpoint's. The credential is sealed by a
:class:`~suanwang.ports.SecretBox` before it reaches the database, and no answer of this
service carries it (only ``has_credential``).
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from dataclasses import dataclass

from suanwang.domain.audit import AuditAction
from suanwang.domain.changes import UNCHANGED, Unchanged
from suanwang.domain.deployments import (
    DeploymentChange,
    DeploymentRecord,
    DeploymentState,
    ReplicaChange,
    ReplicaRecord,
    check_deployment_id,
)
from suanwang.domain.errors import Conflict, Forbidden, NotFound, ValidationError
from suanwang.domain.external import (
    EXTERNAL_CLUSTER,
    OPENAI_COMPATIBLE,
    ExternalChange,
    ExternalEndpoint,
    HealthCheck,
    Resolver,
    check_base_url,
    check_credential,
    check_model_name,
)
from suanwang.domain.serving import ModelKind, ModelSpec, ReplicaState, TokenPrice
from suanwang.domain.tenancy import Principal
from suanwang.ports import Clock, EndpointProbe, SecretBox, UnitOfWork
from suanwang.ports import UnitOfWorkFactory as Uows
from suanwang.services import audit
from suanwang.services.external_health import PROBE_INTERVAL_S, ExternalHealth


@dataclass(frozen=True, slots=True)
class ExternalSpec:
    """What the operator registers (validated by :meth:`ExternalEndpoints.register`)."""

    model: str
    base_url: str
    credential: str | None = None
    upstream_model: str | None = None
    health: HealthCheck = HealthCheck.MODELS
    kind: ModelKind = ModelKind.CHAT
    price: TokenPrice | None = None
    """``None``: the catalogue's price for a catalogue model, else free."""
    tenant: str | None = None
    allow_private_network: bool = False


@dataclass(frozen=True, slots=True)
class ExternalUpdate:
    """What an update sets; ``credential`` ``None`` removes it."""

    base_url: str | Unchanged = UNCHANGED
    credential: str | Unchanged | None = UNCHANGED
    upstream_model: str | Unchanged | None = UNCHANGED
    health: HealthCheck | Unchanged = UNCHANGED
    price: TokenPrice | Unchanged = UNCHANGED
    allow_private_network: bool | Unchanged = UNCHANGED


@dataclass(frozen=True, slots=True)
class ExternalDetail:
    deployment: DeploymentRecord
    endpoint: ExternalEndpoint
    replica: ReplicaRecord | None


class ExternalEndpoints:
    """Use cases over external endpoints; ``resolve`` is the DNS resolver (injected)."""

    def __init__(
        self,
        uows: Uows,
        clock: Clock,
        box: SecretBox,
        probe: EndpointProbe,
        resolve: Resolver,
        catalogue: Mapping[str, ModelSpec],
        probe_interval_s: float = PROBE_INTERVAL_S,
    ) -> None:
        self._uows, self._clock, self._box = uows, clock, box
        self._probe, self._resolve = probe, resolve
        self._catalogue = dict(catalogue)
        self._health = ExternalHealth(uows, clock, box, probe, probe_interval_s)

    # --- use cases ----------------------------------------------------------------------
    def register(self, principal: Principal, spec: ExternalSpec) -> ExternalDetail:
        _operator(principal)
        check_model_name(spec.model)
        if spec.upstream_model is not None:
            check_model_name(spec.upstream_model, "upstream_model")
        url = check_base_url(
            spec.base_url, self._resolve, allow_private_network=spec.allow_private_network
        )
        sealed = self._box.seal(check_credential(spec.credential)) if spec.credential else None
        price = self._price(spec)
        now = self._clock.now()
        with self._uows() as uow:
            uow.lock_scheduler()
            if spec.tenant is not None and uow.tenancy.tenant(spec.tenant) is None:
                raise NotFound(f"no tenant {spec.tenant!r}", field="tenant")
            self._check_same_price(uow, spec.model, price)
            dep = DeploymentRecord(
                id=f"dep-{secrets.token_hex(4)}",
                tenant=spec.tenant,
                model=spec.model,
                cluster=EXTERNAL_CLUSTER,
                engine=OPENAI_COMPATIBLE,
                replicas=1,
                state=DeploymentState.ACTIVE,
                chip="",
                simulated=False,
                created_at=now,
                updated_at=now,
            )
            endpoint = ExternalEndpoint(
                dep.id, url, spec.upstream_model, spec.health, spec.kind, price,
                spec.allow_private_network, sealed, now, now,
            )  # fmt: skip
            uow.deployments.add_deployment(dep)
            uow.externals.add(endpoint)
            uow.deployments.add_replica(_replica(dep.id, url, now))
            audit.record(
                uow, principal, AuditAction.DEPLOYMENT_CREATE, dep.id, tenant=dep.tenant,
                at=now, after=_audit_value(dep, endpoint),
            )  # fmt: skip
            uow.commit()
            return self._detail(uow, dep.id)

    def update(
        self, principal: Principal, deployment_id: str, up: ExternalUpdate
    ) -> ExternalDetail:
        _operator(principal)
        now = self._clock.now()
        with self._uows() as uow:
            uow.lock_scheduler()
            before = self._detail(uow, deployment_id, active=True)
            change = self._change(before.endpoint, up)
            uow.externals.update(deployment_id, now, change)
            if not isinstance(change.base_url, Unchanged) and before.replica is not None:
                restart = ReplicaChange(
                    base_url=change.base_url,
                    state=ReplicaState.STARTING,
                    reason="base URL changed; waiting for its health check",
                )
                uow.deployments.update_replica(before.replica.id, restart)
            uow.deployments.update_deployment(deployment_id, now, DeploymentChange())
            after = self._detail(uow, deployment_id)
            _record_change(uow, principal, AuditAction.DEPLOYMENT_UPDATE, (before, after), now)
            uow.commit()
            return after

    def remove(self, principal: Principal, deployment_id: str) -> ExternalDetail:
        """Stop routing to the endpoint and forget its credential (idempotent)."""
        _operator(principal)
        now = self._clock.now()
        with self._uows() as uow:
            uow.lock_scheduler()
            before = self._detail(uow, deployment_id)
            if before.deployment.state is DeploymentState.DELETED:
                return before
            deleted = DeploymentChange(state=DeploymentState.DELETED)
            uow.deployments.update_deployment(deployment_id, now, deleted)
            uow.externals.update(deployment_id, now, ExternalChange(sealed_credential=None))
            if before.replica is not None:
                stopped = ReplicaChange(state=ReplicaState.STOPPED, reason="removed", base_url="")
                uow.deployments.update_replica(before.replica.id, stopped)
            after = self._detail(uow, deployment_id)
            _record_change(uow, principal, AuditAction.DEPLOYMENT_DELETE, (before, after), now)
            uow.commit()
            return after

    def registered(self, principal: Principal) -> list[ExternalDetail]:
        _operator(principal)
        with self._uows() as uow:
            ids = [e.deployment for e in uow.externals.all()]
            details = [self._detail(uow, i) for i in ids]
        return [d for d in details if d.deployment.state is DeploymentState.ACTIVE]

    def get(self, principal: Principal, deployment_id: str) -> ExternalDetail:
        _operator(principal)
        with self._uows() as uow:
            return self._detail(uow, deployment_id)

    def token_prices(self) -> dict[str, TokenPrice]:
        """Prices of external models not in the catalogue (for bills)."""
        with self._uows() as uow:
            return _external_prices(uow, set(self._catalogue))

    def reseal_all(self) -> int:
        """Re-encrypt every stored credential under the newest key; how many there were."""
        now = self._clock.now()
        with self._uows() as uow:
            sealed = [e for e in uow.externals.all() if e.sealed_credential is not None]
            for e in sealed:
                assert e.sealed_credential is not None
                change = ExternalChange(sealed_credential=self._box.reseal(e.sealed_credential))
                uow.externals.update(e.deployment, now, change)
            uow.commit()
        return len(sealed)

    # --- health -------------------------------------------------------------------------
    def check_health(self) -> None:
        """Probe each active endpoint (at most every ``probe_interval_s``) and record it."""
        with self._uows() as uow:
            active = [(d.endpoint, d.replica) for d in self._active(uow) if d.replica]
        self._health.check([(e, r) for e, r in active if r is not None])

    # --- helpers ------------------------------------------------------------------------
    def _active(self, uow: UnitOfWork) -> list[ExternalDetail]:
        details = [self._detail(uow, e.deployment) for e in uow.externals.all()]
        return [d for d in details if d.deployment.state is DeploymentState.ACTIVE]

    def _detail(
        self, uow: UnitOfWork, deployment_id: str, *, active: bool = False
    ) -> ExternalDetail:
        check_deployment_id(deployment_id)
        dep = uow.deployments.deployment(deployment_id)
        endpoint = uow.externals.get(deployment_id)
        if dep is None or endpoint is None:
            raise NotFound(
                f"no external endpoint {deployment_id!r}",
                field="deployment_id",
                hint="see `suanwang models external list`",
            )
        if active and dep.state is DeploymentState.DELETED:
            raise Conflict(f"external endpoint {deployment_id} was removed", field="deployment_id")
        replicas = uow.deployments.replicas(deployment_id)
        return ExternalDetail(dep, endpoint, replicas[0] if replicas else None)

    def _price(self, spec: ExternalSpec) -> TokenPrice:
        catalogued = self._catalogue.get(spec.model)
        if catalogued is None:
            return spec.price or TokenPrice(0, 0)
        if catalogued.kind is not spec.kind:
            raise ValidationError(
                f"{spec.model!r} is a {catalogued.kind} model in the catalogue",
                field="kind",
                hint=f"use kind {catalogued.kind}, or register it under another model name",
            )
        if spec.price is not None:
            raise ValidationError(
                f"{spec.model!r} is priced by the catalogue",
                field="price",
                hint="omit the price, or register the endpoint under another model name",
            )
        return TokenPrice(0, 0)  # billed at the catalogue's price by model name

    def _check_same_price(self, uow: UnitOfWork, model: str, price: TokenPrice) -> None:
        known = {d.deployment.model: d.endpoint.price for d in self._active(uow)}.get(model)
        if model not in self._catalogue and known is not None and known != price:
            raise Conflict(
                f"another external endpoint serves {model!r} at a different price",
                field="price",
                hint=f"use {known.input_per_million}/{known.output_per_million} micro-units "
                "per million tokens, or another model name",
            )

    def _change(self, endpoint: ExternalEndpoint, up: ExternalUpdate) -> ExternalChange:
        allow = (
            endpoint.allow_private_network
            if isinstance(up.allow_private_network, Unchanged)
            else up.allow_private_network
        )
        url: str | Unchanged = UNCHANGED
        if not isinstance(up.base_url, Unchanged) or allow != endpoint.allow_private_network:
            wanted = endpoint.base_url if isinstance(up.base_url, Unchanged) else up.base_url
            url = check_base_url(wanted, self._resolve, allow_private_network=allow)
        sealed: str | Unchanged | None = UNCHANGED
        if up.credential is None:
            sealed = None
        elif not isinstance(up.credential, Unchanged):
            sealed = self._box.seal(check_credential(up.credential))
        if isinstance(up.upstream_model, str):
            check_model_name(up.upstream_model, "upstream_model")
        if not isinstance(up.price, Unchanged) and endpoint.price != up.price:
            raise ValidationError(
                "an endpoint's price is fixed at registration",
                field="price",
                hint="register a new endpoint (and remove this one) to change the price",
            )
        return ExternalChange(
            base_url=url,
            upstream_model=up.upstream_model,
            health=up.health,
            allow_private_network=up.allow_private_network,
            sealed_credential=sealed,
        )


def _operator(principal: Principal) -> None:
    if not principal.is_operator:
        raise Forbidden(
            "only the operator registers and manages external endpoints",
            field="scope",
            hint="ask the operator; tenants cannot make the platform call URLs they choose",
        )


def _replica(deployment_id: str, url: str, now: float) -> ReplicaRecord:
    return ReplicaRecord(
        id=f"{deployment_id}-0",
        deployment=deployment_id,
        number=0,
        job=None,
        state=ReplicaState.STARTING,
        base_url=url,
        simulated=False,
        chip="",
        reason="external endpoint; waiting for its first health check",
        failures=0,
        restarts=0,
        port=None,
        created_at=now,
        ready_at=None,
        last_health_at=None,
    )


def _external_prices(uow: UnitOfWork, catalogue: set[str]) -> dict[str, TokenPrice]:
    """Prices by model name; an active endpoint's price wins over a removed one's (bills of
    past periods still price a removed endpoint's usage)."""
    active: dict[str, TokenPrice] = {}
    removed: dict[str, TokenPrice] = {}
    for e in uow.externals.all():
        dep = uow.deployments.deployment(e.deployment)
        if dep is not None and dep.model not in catalogue:
            into = active if dep.state is DeploymentState.ACTIVE else removed
            into[dep.model] = e.price
    return removed | active


def _record_change(
    uow: UnitOfWork,
    principal: Principal,
    action: AuditAction,
    change: tuple[ExternalDetail, ExternalDetail],
    now: float,
) -> None:
    """Audit an update or removal: the endpoint before and after (never the credential)."""
    before, after = change
    audit.record(
        uow, principal, action, after.deployment.id, tenant=after.deployment.tenant, at=now,
        before=_audit_value(before.deployment, before.endpoint),
        after=_audit_value(after.deployment, after.endpoint),
    )  # fmt: skip


def _audit_value(dep: DeploymentRecord, endpoint: ExternalEndpoint) -> dict[str, object]:
    """The audit log's view: the credential's presence, never the credential."""
    return audit.deployment_value(dep) | {
        "base_url": endpoint.base_url,
        "upstream_model": endpoint.upstream_model,
        "health": endpoint.health.value,
        "kind": endpoint.kind.value,
        "allow_private_network": endpoint.allow_private_network,
        "has_credential": endpoint.has_credential,
        "price": [endpoint.price.input_per_million, endpoint.price.output_per_million],
    }
