"""``/api/v1/external-endpoints``: OpenAI-compatible servers suanwang does not run (operator only).

Each is a deployment the gateway routes to (``/api/v1/deployments`` lists it too, with its
address shown to the operator only). The credential is write-only: bodies accept it, no
answer carries it (``has_credential`` says whether one is set).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path
from pydantic import BaseModel, ConfigDict, Field

from suanwang.adapters.http.responses import errors
from suanwang.adapters.http.schemas import checked_pattern
from suanwang.adapters.http.security import AuthorizedRoute, current_platform, current_principal
from suanwang.domain.changes import UNCHANGED
from suanwang.domain.deployments import DEPLOYMENT_ID
from suanwang.domain.external import MAX_CREDENTIAL, MAX_URL, MODEL_NAME, HealthCheck
from suanwang.domain.serving import ModelKind, TokenPrice
from suanwang.domain.tenancy import Principal
from suanwang.services.external import ExternalDetail, ExternalSpec, ExternalUpdate
from suanwang.services.platform import Platform

router = APIRouter(
    prefix="/api/v1/external-endpoints", tags=["models"], route_class=AuthorizedRoute
)
PrincipalDep = Annotated[Principal, Depends(current_principal)]
PlatformDep = Annotated[Platform, Depends(current_platform)]
ModelName = Annotated[
    str, Field(min_length=1, max_length=128, json_schema_extra=checked_pattern(MODEL_NAME.pattern))
]
BaseUrl = Annotated[str, Field(min_length=1, max_length=MAX_URL)]
Credential = Annotated[str, Field(min_length=1, max_length=MAX_CREDENTIAL)]
Price = Annotated[int, Field(ge=0, le=10**15)]
DeploymentId = Annotated[
    str,
    Path(max_length=36, json_schema_extra=checked_pattern(DEPLOYMENT_ID.pattern)),
]
PRIVATE_HINT = (
    "operator's exemption from the SSRF rules: allow a loopback, private or link-local "
    "address (e.g. an endpoint on 127.0.0.1); recorded in the audit log"
)


class ExternalIn(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    model: ModelName = Field(description="the model name clients call")
    base_url: BaseUrl = Field(description="http(s) URL of the OpenAI-compatible API")
    credential: Credential | None = Field(
        None, description="sent upstream as 'Authorization: Bearer'; stored encrypted"
    )
    upstream_model: ModelName | None = Field(None, description="model name sent upstream")
    health_check: HealthCheck = Field(
        HealthCheck.MODELS, strict=False, description="models: GET /v1/models; health: GET /health"
    )
    kind: ModelKind = Field(ModelKind.CHAT, strict=False)
    input_per_million: Price | None = Field(
        None, description="micro-units per million prompt tokens (models outside the catalogue)"
    )
    output_per_million: Price | None = Field(None, description="per million completion tokens")
    tenant: Annotated[str, Field(min_length=1, max_length=64)] | None = Field(
        None, description="private to this tenant (default: public)"
    )
    allow_private_network: bool = Field(False, description=PRIVATE_HINT)


class ExternalPatch(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    base_url: BaseUrl | None = None
    credential: Credential | None = Field(None, description="null removes the credential")
    upstream_model: ModelName | None = None
    health_check: HealthCheck | None = Field(None, strict=False)
    allow_private_network: bool | None = None


class ExternalPublic(BaseModel):
    id: str
    model: str
    upstream_model: str | None
    tenant: str | None
    public: bool
    base_url: str
    kind: str
    health_check: str
    has_credential: bool = Field(description="the credential itself is never returned")
    allow_private_network: bool
    input_per_million: int
    output_per_million: int
    state: str = Field(description="active or deleted")
    replica_state: str
    reason: str
    last_health_at: float | None
    created_at: float
    updated_at: float


def external_public(detail: ExternalDetail) -> ExternalPublic:
    d, e, r = detail.deployment, detail.endpoint, detail.replica
    return ExternalPublic(
        id=d.id,
        model=d.model,
        upstream_model=e.upstream_model,
        tenant=d.tenant,
        public=d.tenant is None,
        base_url=e.base_url,
        kind=e.kind.value,
        health_check=e.health.value,
        has_credential=e.has_credential,
        allow_private_network=e.allow_private_network,
        input_per_million=e.price.input_per_million,
        output_per_million=e.price.output_per_million,
        state=d.state.value,
        replica_state=r.state.value if r else "stopped",
        reason=r.reason if r else "",
        last_health_at=r.last_health_at if r else None,
        created_at=d.created_at,
        updated_at=e.updated_at,
    )


@router.post(
    "",
    status_code=201,
    response_model=ExternalPublic,
    summary="Register an external OpenAI-compatible endpoint",
    responses=errors((404, "No such tenant"), (409, "The model has another price")),
)
def register(body: ExternalIn, principal: PrincipalDep, platform: PlatformDep) -> ExternalPublic:
    """Route a model name to a server suanwang does not run (operator only).

    The base URL must not point at a loopback, private or link-local address unless
    ``allow_private_network`` is true."""
    price = None
    if body.input_per_million is not None or body.output_per_million is not None:
        price = TokenPrice(body.input_per_million or 0, body.output_per_million or 0)
    spec = ExternalSpec(
        model=body.model,
        base_url=body.base_url,
        credential=body.credential,
        upstream_model=body.upstream_model,
        health=body.health_check,
        kind=body.kind,
        price=price,
        tenant=body.tenant,
        allow_private_network=body.allow_private_network,
    )
    return external_public(platform.externals.register(principal, spec))


@router.get("", response_model=list[ExternalPublic], summary="List external endpoints")
def list_external(principal: PrincipalDep, platform: PlatformDep) -> list[ExternalPublic]:
    return [external_public(d) for d in platform.externals.registered(principal)]


@router.get(
    "/{deployment_id}",
    response_model=ExternalPublic,
    summary="Show an external endpoint",
    responses=errors((404, "No such external endpoint")),
)
def show_external(
    deployment_id: DeploymentId, principal: PrincipalDep, platform: PlatformDep
) -> ExternalPublic:
    return external_public(platform.externals.get(principal, deployment_id))


@router.patch(
    "/{deployment_id}",
    response_model=ExternalPublic,
    summary="Change an external endpoint (URL, credential, upstream model, health check)",
    responses=errors((404, "No such external endpoint"), (409, "It was removed")),
)
def update_external(
    deployment_id: DeploymentId, body: ExternalPatch, principal: PrincipalDep, platform: PlatformDep
) -> ExternalPublic:
    """Fields left out keep their values; ``credential: null`` removes the credential."""
    given = body.model_fields_set
    update = ExternalUpdate(
        base_url=body.base_url if body.base_url is not None else UNCHANGED,
        credential=body.credential if "credential" in given else UNCHANGED,
        upstream_model=body.upstream_model if "upstream_model" in given else UNCHANGED,
        health=body.health_check if body.health_check is not None else UNCHANGED,
        allow_private_network=(
            body.allow_private_network if body.allow_private_network is not None else UNCHANGED
        ),
    )
    return external_public(platform.externals.update(principal, deployment_id, update))


@router.delete(
    "/{deployment_id}",
    response_model=ExternalPublic,
    summary="Remove an external endpoint (its credential is erased)",
    responses=errors((404, "No such external endpoint")),
)
def remove_external(
    deployment_id: DeploymentId, principal: PrincipalDep, platform: PlatformDep
) -> ExternalPublic:
    return external_public(platform.externals.remove(principal, deployment_id))
