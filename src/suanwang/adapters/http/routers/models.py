"""``/api/v1/models`` (the catalogue) and ``/api/v1/deployments`` (deploy, scale, delete).

The operator deploys public models; a tenant admin deploys private ones in its own tenant.
Replicas on simulated clusters say ``simulated: true``.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Header, Path
from pydantic import BaseModel, ConfigDict, Field

from suanwang.adapters.http.responses import errors
from suanwang.adapters.http.schemas import checked_pattern
from suanwang.adapters.http.security import AuthorizedRoute, current_platform, current_principal
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


class DeployIn(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    model: Short
    cluster: Short
    replicas: Replicas = Field(1, description="replicas to run (0 keeps the deployment idle)")
    engine: Short | None = Field(None, description="default: the model's first engine for the chip")
    tenant: Short | None = Field(
        None, description="operator only: deploy privately for this tenant (default: public)"
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
