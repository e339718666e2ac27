"""Request and response bodies of the REST API (the only place Pydantic meets jobs and keys).

Input models are strict (a string is not a number, ``"true"`` is not a boolean) and state
every range and pattern the domain checks, so the OpenAPI document says what is accepted;
the domain checks again for callers that do not come through HTTP. Patterns are only
documented here (:func:`checked_pattern`) and left to the domain, whose errors say in words
what a name may contain.
"""

from __future__ import annotations

from typing import Annotated, Any, Final, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator
from pydantic.config import JsonDict

from suanwang.domain.chips import MAX_ACCEPTED_CHIPS
from suanwang.domain.fleet import MAX_CARDS_PER_NODE
from suanwang.domain.jobs import (
    MAX_COMMAND_ARGS,
    MAX_ENV_VARS,
    MAX_KIND_LEN,
    MAX_NODES,
    MAX_PRIORITY,
    MAX_RETRIES,
    MAX_RUNTIME_S,
    MAX_SPEED,
    JobSpec,
    Resources,
    resources_accepting,
)
from suanwang.domain.tenancy import (
    COHORT_NAME,
    MAX_QUOTA_CARDS,
    MAX_WEIGHT,
    TENANT_NAME,
    QuotaSpec,
    Scope,
)
from suanwang.domain.workloads import GangStrategy, JobNetwork
from suanwang.services.tenancy import MAX_KEY_LIFETIME_S


def checked_pattern(pattern: str) -> JsonDict:
    """``json_schema_extra`` documenting a pattern the domain checks (with a readable error)."""
    return {"pattern": pattern}


Name = Annotated[str, Field(min_length=1, max_length=200)]
NO_NUL = r"^[^\x00]*$"
NO_CONTROL = r"^[^\x00-\x1f\x7f]*$"
Argument = Annotated[str, Field(max_length=32_768, json_schema_extra=checked_pattern(NO_NUL))]
EnvValue = Annotated[str, Field(max_length=32_768, json_schema_extra=checked_pattern(NO_NUL))]
ENV_NAME: Final[JsonDict] = {"minLength": 1, "maxLength": 256, "pattern": r"^[^=\x00-\x1f\x7f]+$"}
Seconds = Annotated[float, Field(gt=0, le=MAX_RUNTIME_S)]
Cards = Annotated[int, Field(ge=0, le=MAX_QUOTA_CARDS)]
Cohort = Annotated[
    str,
    Field(json_schema_extra=checked_pattern(COHORT_NAME.pattern), description="cohort name"),
]
Weight = Annotated[
    float, Field(gt=0, le=MAX_WEIGHT, description="fair-share weight within the cohort")
]


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


MAX_SELECTOR_LEN = 64


class ResourcesIn(_In):
    chip: str | list[str] = Field(
        "any",
        description="chip name, chip family, or 'any'; or a list of them: the job accepts "
        "any listed chip (each at its speed) and its quota is charged to the family of the "
        "chip it is admitted on",
    )
    cards_per_node: int = Field(
        1, ge=0, le=MAX_CARDS_PER_NODE, description="cards (or cpu slots) on each node"
    )
    nodes: int = Field(1, ge=1, le=MAX_NODES, description="nodes, all in one cluster (gang)")
    cluster: str | None = Field(None, max_length=64)
    region: str | None = Field(None, max_length=64)

    @field_validator("chip")
    @classmethod
    def _selectors(cls, value: str | list[str]) -> str | list[str]:
        """One selector, or 1 to MAX_ACCEPTED_CHIPS of them, each at most 64 characters."""
        listed = [value] if isinstance(value, str) else value
        if not 1 <= len(listed) <= MAX_ACCEPTED_CHIPS:
            raise ValueError(f"give 1 to {MAX_ACCEPTED_CHIPS} accepted chips")
        if any(len(s) > MAX_SELECTOR_LEN for s in listed):
            raise ValueError(f"a chip selector has at most {MAX_SELECTOR_LEN} characters")
        return value

    def to_resources(self) -> Resources:
        selectors = [self.chip] if isinstance(self.chip, str) else self.chip
        return resources_accepting(
            selectors, self.cards_per_node, self.nodes, self.cluster, self.region
        )


class SimulateIn(_In):
    duration_s: Seconds = Field(description="run time on the simulated clock")


class JobCreate(_In):
    name: Name = "job"
    command: list[Argument] = Field(
        default_factory=list,
        max_length=MAX_COMMAND_ARGS,
        description="the program and its arguments; required unless `simulate` is set",
    )
    env: dict[Annotated[str, Field(max_length=256)], EnvValue] = Field(
        default_factory=dict,
        max_length=MAX_ENV_VARS,
        json_schema_extra={"propertyNames": ENV_NAME},
    )
    working_dir: str | None = Field(
        None,
        max_length=4096,
        json_schema_extra=checked_pattern(NO_CONTROL),
        description="where the command starts, inside the job's own directory: relative to "
        "it, or absolute under /job (default: /job itself)",
    )
    resources: ResourcesIn = Field(default_factory=ResourcesIn)
    priority: int = Field(0, ge=-MAX_PRIORITY, le=MAX_PRIORITY)
    priority_class: str | None = Field(
        None, max_length=63, description="a named class (GET /api/v1/priority-classes)"
    )
    max_runtime_s: int | None = Field(None, ge=1, le=MAX_RUNTIME_S)
    retries: int = Field(0, ge=0, le=MAX_RETRIES)
    simulate: SimulateIn | None = None
    expected_duration_s: Seconds | None = Field(
        None, description="your run-time estimate; lets the job backfill ahead of larger ones"
    )
    checkpoint_interval_s: Seconds | None = Field(
        None, description="how often the job checkpoints (preemption prefers losing little work)"
    )
    preemptible: bool = True
    preemption_grace_s: float | None = Field(
        None,
        ge=0,
        le=MAX_RUNTIME_S,
        description="seconds between SIGTERM and SIGKILL when the job is preempted, moved or "
        "cancelled (time to write a checkpoint); at most the operator's maximum "
        "(SUANWANG_MAX_PREEMPTION_GRACE_S, default 300); default: the cluster's",
    )
    kind: str | None = Field(
        None,
        min_length=1,
        max_length=MAX_KIND_LEN,
        description="workload kind; jobs of one kind share learned speeds",
    )
    speed: dict[
        Annotated[str, Field(max_length=64)], Annotated[float, Field(ge=0, le=MAX_SPEED)]
    ] = Field(
        default_factory=dict,
        description="relative speed per chip name (1.0 = reference chip, 0 = cannot run there)",
    )
    network: Literal["none", "gateway"] = Field(
        "none",
        description="none: no network at all; gateway: the platform's gateway only, at "
        "$SUANWANG_GATEWAY_URL (the job still needs an API key)",
    )
    gang: Literal["spread", "pack"] = Field(
        "spread",
        description="multi-node jobs: spread: each node on its own machine (Ray "
        "STRICT_SPREAD); pack: nodes may share a machine where they fit (Ray PACK)",
    )
    dataset: str | None = Field(
        None,
        min_length=1,
        max_length=63,
        description="one of your ready datasets, by name: the job sees it read-only at "
        "/data/input ($SUANWANG_DATASET_DIR) and runs in a region holding a replica",
    )
    output_dataset: str | None = Field(
        None,
        min_length=1,
        max_length=63,
        description="on success, output_path of the job's directory becomes this new dataset "
        "of yours, in the region the job ran (counted against your storage quota)",
    )
    output_path: str | None = Field(
        None,
        min_length=1,
        max_length=1024,
        description="the directory below /job to register (default output)",
    )

    def to_spec(self) -> JobSpec:
        return JobSpec(
            name=self.name,
            command=tuple(self.command),
            resources=self.resources.to_resources(),
            env=tuple(sorted(self.env.items())),
            working_dir=self.working_dir,
            priority=self.priority,
            max_runtime_s=self.max_runtime_s,
            retries=self.retries,
            simulate_duration_s=self.simulate.duration_s if self.simulate else None,
            expected_duration_s=self.expected_duration_s,
            checkpoint_interval_s=self.checkpoint_interval_s,
            preemptible=self.preemptible,
            preemption_grace_s=self.preemption_grace_s,
            kind=self.kind,
            priority_class=self.priority_class,
            speed=tuple(sorted(self.speed.items())),
            network=JobNetwork(self.network),
            gang=GangStrategy(self.gang),
            dataset=self.dataset,
            output_dataset=self.output_dataset,
            output_path=self.output_path,
        )


class PriorityClassPublic(BaseModel):
    name: str
    value: int
    preemptible: bool
    description: str


class AttemptPublic(BaseModel):
    number: int
    state: str
    cluster: str
    simulated: bool
    chip: str
    cards: int
    nodes: list[str]
    exit_code: int | None
    reason: str
    admitted_at: float
    started_at: float | None
    ended_at: float | None
    last_checkpoint_at: float | None = Field(
        None, description="when the run last touched $SUANWANG_CHECKPOINT_FILE"
    )
    lost_work_s: float = Field(
        0.0, description="preempted attempts: seconds of work after its last checkpoint"
    )


class EventPublic(BaseModel):
    at: float
    state: str
    reason: str


class JobPublic(BaseModel):
    id: str
    tenant: str
    name: str
    state: str
    reason: str
    priority: int
    attempts: int
    cancel_requested: bool
    created_at: float
    updated_at: float
    network: str = Field(description="what the job reaches: none, or gateway")
    placement_hint: str | None = Field(
        None,
        description="where a reallocation move sends the job next: cluster/chip "
        "(honoured for a few admission cycles, then dropped)",
    )
    spec: dict[str, Any]
    resumes: int | None = Field(
        None,
        description="attempts stopped and requeued without a retry (preemptions, moves, "
        "exit 75); shown with the job's detail",
    )
    lost_work_s: float | None = Field(
        None, description="seconds of work those stops threw away (after each last checkpoint)"
    )
    lost_card_s: float | None = Field(None, description="the same in card-seconds")
    attempt_history: list[AttemptPublic] | None = None
    events: list[EventPublic] | None = None


class FlavorQuotaIn(_In):
    nominal: Cards = Field(description="cards of this chip family that are the tenant's own")
    borrowing_limit: Cards | None = Field(
        0, description="cards it may borrow from its cohort beyond nominal (null = no limit)"
    )
    lending_limit: Cards | None = Field(
        None, description="most of its unused nominal others may borrow (null = all; <= nominal)"
    )

    def to_spec(self) -> QuotaSpec:
        return QuotaSpec(self.nominal, self.borrowing_limit, self.lending_limit)


QuotaMap = dict[Annotated[str, Field(max_length=32)], Cards | FlavorQuotaIn]


def quota_specs(quota: QuotaMap) -> dict[str, int | QuotaSpec]:
    """Plain numbers stay caps; objects become Kueue-style flavor quotas."""
    return {f: q.to_spec() if isinstance(q, FlavorQuotaIn) else q for f, q in quota.items()}


class TenantCreate(_In):
    name: str = Field(
        json_schema_extra=checked_pattern(TENANT_NAME.pattern),
        description="3-40 lowercase letters, digits and '-', starting with a letter",
    )
    display_name: str = Field("", max_length=200)
    quota: QuotaMap = Field(
        default_factory=dict,
        description="chip family (or 'units') -> cards, or {nominal, borrowing_limit, "
        "lending_limit}; a family absent from a tenant outside a cohort is unlimited",
    )
    cohort: Cohort | None = None
    weight: Weight = 1.0


class QuotaUpdate(_In):
    quota: QuotaMap
    cohort: Cohort | None = None
    weight: Weight = 1.0


class LimitsPublic(BaseModel):
    borrowing_limit: int | None
    lending_limit: int | None


class TenantPublic(BaseModel):
    name: str
    display_name: str
    created_at: float
    quota: dict[str, int] = Field(description="nominal cards per chip family")
    limits: dict[str, LimitsPublic] = Field(default_factory=dict)
    cohort: str | None = None
    weight: float = 1.0


class KeyCreate(_In):
    tenant: str | None = Field(None, max_length=64)
    scope: Scope = Field(Scope.TENANT_MEMBER, strict=False)  # its value, as JSON sends it
    name: str = Field("", max_length=200)
    expires_in_s: int | None = Field(None, ge=1, le=MAX_KEY_LIFETIME_S)


class KeyPublic(BaseModel):
    id: str
    prefix: str
    tenant: str | None
    scope: str
    name: str
    created_at: float
    expires_at: float | None
    revoked_at: float | None


class KeyCreated(KeyPublic):
    key: str = Field(description="the secret; shown once, never stored")


class ApplyResultPublic(BaseModel):
    created: list[str]
    updated: list[str]
    deleted: list[str]
    unchanged: int
    changed: bool


class TotalsPublic(BaseModel):
    scope: str
    cards_by_chip: dict[str, int]
    cards: int
    pflops_fp16: float
    simulated_cards: int
    real_cards: int


class FleetTotalsPublic(BaseModel):
    overall: TotalsPublic
    regions: list[TotalsPublic]


class ClusterHealthPublic(BaseModel):
    status: Literal["healthy", "unhealthy", "unchecked"]
    reason: str = ""
    checked_at: float | None = None


class ClusterPublic(BaseModel):
    name: str
    region: str
    kind: str
    simulated: bool
    backend: str
    description: str
    nodes: int
    cards_by_chip: dict[str, int]
    cards_used: int
    connection: dict[str, dict[str, Any]] | None = Field(
        None,
        description="the fleet file's engine block, e.g. {'ray': {'address': ...}} (no secrets:"
        " a kubeconfig is a path)",
    )
    health: ClusterHealthPublic
    nodes_drained: int = 0


class RegionPublic(BaseModel):
    name: str
    display_name: str


class WanLinkPublic(BaseModel):
    between: list[str]
    bandwidth_gbps: float
    rtt_ms: float
    distance_km: float


class FleetPublic(BaseModel):
    regions: list[RegionPublic]
    clusters: list[ClusterPublic]
    wan_links: list[WanLinkPublic]


class NodePublic(BaseModel):
    id: int
    name: str
    cluster: str
    region: str
    simulated: bool
    chip: str
    cards: int
    cards_used: int
    network_group: str
    state: str


class ChipPublic(BaseModel):
    name: str
    vendor: str
    family: str
    memory_gb: int
    fp16_tflops: float
    bf16_tflops: float
    stack: str
    k8s_resource: str
    hami_resource: str
    figures_uncertain: bool


class Health(BaseModel):
    status: str
    version: str


class WhoAmI(BaseModel):
    key_id: str
    scope: str
    tenant: str | None
