"""``/api/v1/models`` (the catalogue) and ``/api/v1/deployments`` (deploy, scale,
autoscale, delete).

The operator deploys public models; a tenant admin deploys private ones in its own tenant.
Replicas on simulated clusters say ``simulated: true``. Autoscaling settings are parsed here
into the domain's :class:`~suanwang.domain.autoscaling.AutoscaleSpec` (which checks them).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Header, Path
from pydantic import BaseModel, ConfigDict, Field

from suanwang.adapters.http.responses import errors
from suanwang.adapters.http.schemas import checked_pattern
from suanwang.adapters.http.security import AuthorizedRoute, current_platform, current_principal
from suanwang.domain.autoscaling import AutoscaleSpec, ScalingTarget
from suanwang.domain.deployments import DEPLOYMENT_ID
from suanwang.domain.serving import MAX_REPLICAS, ModelSpec
from suanwang.domain.tenancy import Principal
from suanwang.services.deployments import DeploymentDetail
from suanwang.services.platform import Platform

models_router = APIRouter(prefix="/api/v1/models", tags=["models"], route_class=AuthorizedRoute)
router = APIRouter(prefix="/api/v1/deployments", tags=["models"], route_class=AuthorizedRoute)
PrincipalDep = Annotated[Principal, Depends(current_principal)]
PlatformDep = Annotated[Platform, Depends(current_platform)]
Short = Annotated[str, Field(min_length=1, max_length=128)]
Replicas = Annotated[int, Field(ge=0, le=MAX_REPLICAS)]
DeploymentId = Annotated[
    str,
    Path(
        max_length=36,
        json_schema_extra=checked_pattern(DEPLOYMENT_ID.pattern),
        description="e.g. dep-3f9c1a2b",
    ),
]


class PricePublic(BaseModel):
    input_per_million: int
    output_per_million: int


class ModelPublic(BaseModel):
    name: str
    family: str
    params_b: float
    context_length: int
    kind: str
    engines: list[str]
    chips: list[str]
    cards: int
    prices: dict[str, PricePublic] = Field(description="micro-units per million tokens, by tier")
    local_weights: bool
    description: str


Seconds = Annotated[float, Field(ge=0, le=86_400)]


class TargetIn(BaseModel):
    """Exactly one of the four."""

    model_config = ConfigDict(extra="forbid")
    inflight_per_replica: float | None = Field(
        None, gt=0, le=10_000, description="queued + in-flight requests per replica"
    )
    tokens_per_s_per_replica: float | None = Field(None, gt=0, le=1e9)
    ttft_p95_s: float | None = Field(
        None, gt=0, le=3600, description="latency SLO: p95 time to first token, seconds"
    )
    slo_ttft_p95_s: float | None = Field(
        None,
        gt=0,
        le=3600,
        description="the same SLO met by sizing: the fewest replicas a queueing model of the "
        "measured replicas predicts keep the p95 under it at the measured arrival rate",
    )


class AutoscaleIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    min_replicas: Replicas = Field(description="0 lets an idle deployment scale to zero")
    max_replicas: Replicas
    target: TargetIn
    scale_up_cooldown_s: Seconds = 30.0
    scale_down_cooldown_s: Seconds = Field(
        300.0, description="also the window a scale-down waits for (highest recommendation)"
    )
    idle_to_zero_s: Seconds = Field(600.0, description="idle time before 0 (min_replicas 0)")
    tolerance: float = Field(0.1, ge=0, lt=1, description="hysteresis band around the target")

    def spec(self) -> AutoscaleSpec:
        t = self.target
        return AutoscaleSpec(
            min_replicas=self.min_replicas,
            max_replicas=self.max_replicas,
            target=ScalingTarget(
                inflight_per_replica=t.inflight_per_replica,
                tokens_per_s_per_replica=t.tokens_per_s_per_replica,
                ttft_p95_s=t.ttft_p95_s,
                slo_ttft_p95_s=t.slo_ttft_p95_s,
            ),
            scale_up_cooldown_s=self.scale_up_cooldown_s,
            scale_down_cooldown_s=self.scale_down_cooldown_s,
            idle_to_zero_s=self.idle_to_zero_s,
            tolerance=self.tolerance,
        )


class DeployIn(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    model: Short
    cluster: Short
    replicas: Replicas = Field(1, description="replicas to run (0 keeps the deployment idle)")
    engine: Short | None = Field(None, description="default: the model's first engine for the chip")
    tenant: Short | None = Field(
        None, description="operator only: deploy privately for this tenant (default: public)"
    )
    autoscale: AutoscaleIn | None = Field(
        None, description="scale with demand in [min, max] (replicas: the starting count)"
    )


class ScaleIn(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    replicas: Replicas


class ReplicaPublic(BaseModel):
    id: str
    number: int
    state: str
    reason: str
    job: str | None
    base_url: str
    simulated: bool
    chip: str
    restarts: int
    failures: int
    ready_at: float | None
    last_health_at: float | None


class TargetPublic(BaseModel):
    inflight_per_replica: float | None
    tokens_per_s_per_replica: float | None
    ttft_p95_s: float | None
    slo_ttft_p95_s: float | None = None


class AutoscalePublic(BaseModel):
    min_replicas: int
    max_replicas: int
    target: TargetPublic
    scale_up_cooldown_s: float
    scale_down_cooldown_s: float
    idle_to_zero_s: float
    tolerance: float


class DeploymentPublic(BaseModel):
    id: str
    model: str
    tenant: str | None = Field(description="owner; null for a public deployment")
    public: bool
    cluster: str
    engine: str
    chip: str
    simulated: bool
    replicas: int = Field(description="wanted replicas")
    ready: int
    state: str
    created_at: float
    updated_at: float
    replica_list: list[ReplicaPublic]
    autoscale: AutoscalePublic | None = Field(
        None, description="null: a fixed replica count; else the autoscaler sets replicas"
    )


def autoscale_public(spec: AutoscaleSpec | None) -> AutoscalePublic | None:
    if spec is None:
        return None
    t = spec.target
    return AutoscalePublic(
        min_replicas=spec.min_replicas,
        max_replicas=spec.max_replicas,
        target=TargetPublic(
            inflight_per_replica=t.inflight_per_replica,
            tokens_per_s_per_replica=t.tokens_per_s_per_replica,
            ttft_p95_s=t.ttft_p95_s,
            slo_ttft_p95_s=t.slo_ttft_p95_s,
        ),
        scale_up_cooldown_s=spec.scale_up_cooldown_s,
        scale_down_cooldown_s=spec.scale_down_cooldown_s,
        idle_to_zero_s=spec.idle_to_zero_s,
        tolerance=spec.tolerance,
    )


def model_public(m: ModelSpec) -> ModelPublic:
    return ModelPublic(
        name=m.name,
        family=m.family,
        params_b=m.params_b,
        context_length=m.context_length,
        kind=m.kind.value,
        engines=list(m.engines),
        chips=list(m.chips),
        cards=m.cards,
        prices={
            tier: PricePublic(
                input_per_million=p.input_per_million, output_per_million=p.output_per_million
            )
            for tier, p in m.prices.items()
        },
        local_weights=m.artifact is not None,
        description=m.description,
    )


def deployment_public(detail: DeploymentDetail) -> DeploymentPublic:
    d = detail.deployment
    replicas = [
        ReplicaPublic(
            id=r.id,
            number=r.number,
            state=r.state.value,
            reason=r.reason,
            job=r.job,
            base_url=r.base_url,
            simulated=r.simulated,
            chip=r.chip,
            restarts=r.restarts,
            failures=r.failures,
            ready_at=r.ready_at,
            last_health_at=r.last_health_at,
        )
        for r in detail.replicas
    ]
    return DeploymentPublic(
        id=d.id,
        model=d.model,
        tenant=d.tenant,
        public=d.tenant is None,
        cluster=d.cluster,
        engine=d.engine,
        chip=d.chip,
        simulated=d.simulated,
        replicas=d.replicas,
        ready=sum(r.state == "ready" for r in replicas),
        state=d.state.value,
        created_at=d.created_at,
        updated_at=d.updated_at,
        replica_list=replicas,
        autoscale=autoscale_public(d.autoscale),
    )


@models_router.get("", response_model=list[ModelPublic], summary="The model catalogue")
def list_models(platform: PlatformDep) -> list[ModelPublic]:
    return [model_public(m) for m in platform.deployments.models()]


@models_router.get("/{name}", response_model=ModelPublic, summary="One catalogue entry")
def show_model(name: str, platform: PlatformDep) -> ModelPublic:
    return model_public(platform.deployments.model(name))


@router.post(
    "",
    status_code=201,
    response_model=DeploymentPublic,
    summary="Deploy a model",
    responses=errors((404, "No such model, cluster or tenant")),
)
def deploy(
    body: DeployIn,
    principal: PrincipalDep,
    platform: PlatformDep,
    idempotency_key: Annotated[str | None, Header(max_length=200)] = None,
) -> DeploymentPublic:
    """Queue the replicas of a model on a cluster; each is a job the scheduler places.

    Retrying with the same ``Idempotency-Key`` returns the same deployment."""
    detail = platform.deployments.deploy(
        principal,
        body.model,
        body.cluster,
        body.replicas,
        body.engine,
        body.tenant,
        idempotency_key=idempotency_key,
        autoscale=None if body.autoscale is None else body.autoscale.spec(),
    )
    return deployment_public(detail)


@router.get("", response_model=list[DeploymentPublic], summary="List deployments")
def list_deployments(principal: PrincipalDep, platform: PlatformDep) -> list[DeploymentPublic]:
    return [deployment_public(d) for d in platform.deployments.list(principal)]


@router.get("/{deployment_id}", response_model=DeploymentPublic, summary="Show a deployment")
def show_deployment(
    deployment_id: DeploymentId, principal: PrincipalDep, platform: PlatformDep
) -> DeploymentPublic:
    return deployment_public(platform.deployments.get(principal, deployment_id))


@router.put(
    "/{deployment_id}/replicas",
    response_model=DeploymentPublic,
    summary="Scale a deployment",
    responses=errors((409, "The deployment was deleted")),
)
def scale(
    deployment_id: DeploymentId, body: ScaleIn, principal: PrincipalDep, platform: PlatformDep
) -> DeploymentPublic:
    return deployment_public(platform.deployments.scale(principal, deployment_id, body.replicas))


@router.put(
    "/{deployment_id}/autoscale",
    response_model=DeploymentPublic,
    summary="Autoscale a deployment",
    responses=errors((409, "The deployment was deleted")),
)
def autoscale(
    deployment_id: DeploymentId, body: AutoscaleIn, principal: PrincipalDep, platform: PlatformDep
) -> DeploymentPublic:
    """Turn autoscaling on (or change its settings): the count moves into [min, max] now."""
    detail = platform.deployments.set_autoscale(principal, deployment_id, body.spec())
    return deployment_public(detail)


@router.delete(
    "/{deployment_id}/autoscale",
    response_model=DeploymentPublic,
    summary="Stop autoscaling a deployment",
    responses=errors((409, "The deployment was deleted")),
)
def fixed(
    deployment_id: DeploymentId, principal: PrincipalDep, platform: PlatformDep
) -> DeploymentPublic:
    """Back to a fixed replica count: the count it has now."""
    return deployment_public(platform.deployments.set_autoscale(principal, deployment_id, None))


@router.delete(
    "/{deployment_id}",
    response_model=DeploymentPublic,
    summary="Delete a deployment",
    responses=errors((409, "The deployment was deleted")),
)
def delete(
    deployment_id: DeploymentId, principal: PrincipalDep, platform: PlatformDep
) -> DeploymentPublic:
    return deployment_public(platform.deployments.delete(principal, deployment_id))
