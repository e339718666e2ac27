"""Transfers between regions (``POST /api/v1/datasets/{dataset}/copy``,
``/api/v1/transfers/{id}``) and the transfer agents (``/api/v1/agents``, operator)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends
from pydantic import BaseModel, ConfigDict, Field

from suanwang.adapters.http.responses import errors
from suanwang.adapters.http.security import AuthorizedRoute, current_platform, current_principal
from suanwang.domain.rates import MAX_RATE_BYTES_PER_S
from suanwang.domain.tenancy import Principal
from suanwang.domain.transfers import AgentRecord, AgentRenewal, IssuedCert, TransferRecord
from suanwang.services.platform import Platform

router = APIRouter(prefix="/api/v1", route_class=AuthorizedRoute, tags=["transfers"])
PrincipalDep = Annotated[Principal, Depends(current_principal)]
PlatformDep = Annotated[Platform, Depends(current_platform)]


class CopyBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    region: str = Field(min_length=1, max_length=64, description="the region to copy it to")
    max_bytes_per_s: float | None = Field(
        default=None,
        gt=0,
        le=MAX_RATE_BYTES_PER_S,
        description="cap on this transfer's rate, bytes/s (the link's cap, if lower, wins)",
    )


class TransferPublic(BaseModel):
    id: str
    dataset: str
    source_region: str
    target_region: str
    state: str = Field(description="pending, running, verified or failed")
    bytes_total: int
    bytes_done: int
    rate_bytes_per_s: float
    eta_s: float | None
    error: str
    chunks_resent: int
    started_at: float
    ended_at: float | None
    max_bytes_per_s: float | None = Field(description="the tenant's cap on it (null: none)")


class AgentBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1, max_length=63)
    region: str = Field(min_length=1, max_length=64)
    address: str = Field(min_length=3, max_length=260, description="HOST:PORT it listens on")


class AgentPublic(BaseModel):
    name: str
    region: str
    address: str
    cert_serial: str
    cert_not_after: float
    registered_at: float
    rotated_at: float | None


class AgentIssued(BaseModel):
    agent: AgentPublic
    cert_pem: str = Field(description="the agent's certificate (role agent)")
    key_pem: str = Field(description="its private key: shown once, never stored")
    ca_pem: str = Field(description="the transfer CA's certificate")


PEM_MAX = 8192


class RenewBody(BaseModel):
    """An agent's signed renewal (``suanwang agent serve --control-url`` sends it)."""

    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1, max_length=63, description="the agent (its certificate's CN)")
    cert_pem: str = Field(min_length=1, max_length=PEM_MAX, description="its current certificate")
    public_key_pem: str = Field(
        min_length=1, max_length=PEM_MAX, description="its new P-256 public key"
    )
    at: float = Field(description="UNIX time of the request (within 5 minutes of the server's)")
    signature: str = Field(
        min_length=1, max_length=512, description="base64 ECDSA-SHA256 by the current key"
    )


class AgentRenewed(BaseModel):
    agent: AgentPublic
    cert_pem: str = Field(description="the new certificate, for the agent's new key")
    ca_pem: str = Field(description="the transfer CA's certificate")


def transfer_public(t: TransferRecord) -> TransferPublic:
    return TransferPublic(
        id=t.id,
        dataset=t.dataset,
        source_region=t.source_region,
        target_region=t.target_region,
        state=t.state.value,
        bytes_total=t.bytes_total,
        bytes_done=t.bytes_done,
        rate_bytes_per_s=t.rate_bytes_per_s,
        eta_s=t.eta_s,
        error=t.error,
        chunks_resent=t.chunks_resent,
        started_at=t.started_at,
        ended_at=t.ended_at,
        max_bytes_per_s=t.max_bytes_per_s,
    )


def _agent(a: AgentRecord) -> AgentPublic:
    return AgentPublic(
        name=a.name,
        region=a.region,
        address=a.address,
        cert_serial=a.cert_serial,
        cert_not_after=a.cert_not_after,
        registered_at=a.registered_at,
        rotated_at=a.rotated_at,
    )


def _issued(agent: AgentRecord, issued: IssuedCert) -> AgentIssued:
    return AgentIssued(
        agent=_agent(agent), cert_pem=issued.cert_pem, key_pem=issued.key_pem, ca_pem=issued.ca_pem
    )


@router.post(
    "/datasets/{dataset}/copy",
    status_code=201,
    response_model=TransferPublic,
    summary="Copy a dataset to another region (agent to agent)",
    responses=errors((409, "Not sealed, already there, or on its way")),
)
def copy_dataset(
    dataset: str, body: CopyBody, principal: PrincipalDep, platform: PlatformDep
) -> Any:
    copied = platform.transfers.copy(principal, dataset, body.region, body.max_bytes_per_s)
    return transfer_public(copied)


@router.get(
    "/datasets/{dataset}/transfers",
    response_model=list[TransferPublic],
    summary="A dataset's transfers, newest first",
)
def dataset_transfers(dataset: str, principal: PrincipalDep, platform: PlatformDep) -> Any:
    return [transfer_public(t) for t in platform.transfers.of_dataset(principal, dataset)]


@router.get(
    "/transfers/{transfer_id}",
    response_model=TransferPublic,
    summary="A transfer's state, progress, rate and ETA",
)
def show_transfer(transfer_id: str, principal: PrincipalDep, platform: PlatformDep) -> Any:
    return transfer_public(platform.transfers.get(principal, transfer_id))


@router.post(
    "/agents",
    status_code=201,
    response_model=AgentIssued,
    summary="Register a region's transfer agent and issue its certificate (operator)",
    responses=errors(409),
)
def register_agent(body: AgentBody, principal: PrincipalDep, platform: PlatformDep) -> Any:
    agent, issued = platform.agents.register(principal, body.name, body.region, body.address)
    return _issued(agent, issued)


@router.get("/agents", response_model=list[AgentPublic], summary="Registered agents (operator)")
def list_agents(principal: PrincipalDep, platform: PlatformDep) -> Any:
    return [_agent(a) for a in platform.agents.registered(principal)]


@router.post(
    "/agents/{name}/rotate",
    response_model=AgentIssued,
    summary="Issue an agent a new certificate before its old one expires (operator)",
)
def rotate_agent(name: str, principal: PrincipalDep, platform: PlatformDep) -> Any:
    agent, issued = platform.agents.rotate(principal, name)
    return _issued(agent, issued)


@router.post(
    "/agents/{name}/renew",
    response_model=AgentRenewed,
    summary="An agent renews its own certificate before expiry (signed by its current key)",
    responses=errors((403, "The request does not prove the agent's current certificate")),
)
def renew_agent(name: str, body: RenewBody, platform: PlatformDep) -> Any:
    renewal = AgentRenewal(body.name, body.cert_pem, body.public_key_pem, body.at, body.signature)
    agent, issued = platform.agents.renew(name, renewal)
    return AgentRenewed(agent=_agent(agent), cert_pem=issued.cert_pem, ca_pem=issued.ca_pem)
