"""Ports: the Protocols that services depend on and adapters implement.

- :class:`Backend` runs workloads (local processes, the simulated clock, Ray, Slurm,
  Kubernetes). Every verb is idempotent, keyed by ``(job_id, attempt)``; ``capacity`` and
  ``runs`` let services check a cluster's health, discover its nodes and find orphans.
- :class:`Clock` tells time; tests and the simulator pass a fake one.
- :class:`TenantUids` gives each tenant its own numeric uid on hosts that sandbox runs.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Collection, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Protocol, Self

from suanwang.domain.app_chat import AnswerEvent
from suanwang.domain.apps import App, AppVersion
from suanwang.domain.audit import AuditEntry, AuditQuery
from suanwang.domain.billing import UsageTotal
from suanwang.domain.connections import Connection
from suanwang.domain.console_sessions import SessionRecord
from suanwang.domain.datasets import DatasetRecord, DatasetReplica, ManifestEntry
from suanwang.domain.demand import DemandReport
from suanwang.domain.deployments import (
    DeploymentChange,
    DeploymentRecord,
    ReplicaChange,
    ReplicaRecord,
)
from suanwang.domain.external import ExternalChange, ExternalEndpoint
from suanwang.domain.fleet import ClusterSpec, NodeSpec, RegionSpec, WanLinkSpec
from suanwang.domain.jobs import AttemptState, JobState
from suanwang.domain.knowledge import (
    ChunkDraft,
    DocumentRecord,
    Hit,
    KnowledgeBase,
    MediaType,
)
from suanwang.domain.limits import KeyLimits, Limits, Reservation, TenantLimits
from suanwang.domain.metering import AttemptSpan
from suanwang.domain.oversight import QueueGroup, TransferListing
from suanwang.domain.records import (
    AttemptChange,
    AttemptRecord,
    ClusterHealth,
    ClusterRecord,
    JobChange,
    JobEvent,
    JobRecord,
    KeyRecord,
    NodeCards,
    NodeRecord,
    NodeShape,
    TenantRecord,
)
from suanwang.domain.serving import DeploymentView, ModelSpec, ReplicaView
from suanwang.domain.tenancy import Principal, QuotaSpec
from suanwang.domain.transfers import (
    AgentRecord,
    AgentRenewal,
    IssuedCert,
    LinkCaps,
    TransferProgress,
    TransferRecord,
    TransferState,
)
from suanwang.domain.usage import ComputeUsage, StorageUsage, TokenUsage
from suanwang.domain.utilisation import BusySpan, GroupCapacity, UtilBy
from suanwang.domain.workloads import GangStrategy, JobNetwork, Workload
from suanwang.scheduler.learning import RunObservation

Handle = Mapping[str, Any]
"""Backend-specific, JSON-serialisable facts about a run (pid, start time, …)."""


class Clock(Protocol):
    def now(self) -> float:
        """Seconds since the epoch."""
        ...


class AppChat(Protocol):
    """Asks an app a question as a principal, through the gateway's app pipeline (retrieval,
    prompt, model call, citations, limits and metering): the console's chat playground."""

    def answer(
        self, principal: Principal, app: str, question: str
    ) -> AsyncGenerator[AnswerEvent, None]:
        """The answer's events: pieces of text, then one done or failed event. Closing the
        iterator early is a client that left (the call is cancelled and billed as such)."""
        ...

    async def post_as(self, principal: Principal, path: str, body: bytes) -> tuple[int, bytes]:
        """A whole POST to the gateway's ``path`` as ``principal`` (status, body): the
        console's embeddings, metered and billed as a gateway call of the session's key."""
        ...

    async def aclose(self) -> None: ...


@dataclass(frozen=True, slots=True)
class NodeSlice:
    """Cards of one node given to one run."""

    node: str
    cards: int


@dataclass(frozen=True, slots=True)
class LaunchRequest:
    """Everything a backend needs to start attempt ``attempt`` of ``job_id``."""

    job_id: str
    attempt: int
    tenant: str
    cluster: str
    command: tuple[str, ...]
    placements: tuple[NodeSlice, ...]
    env: tuple[tuple[str, str], ...] = ()
    working_dir: str | None = None
    max_runtime_s: int | None = None
    simulate_duration_s: float | None = None
    admitted_at: float | None = None
    """When the attempt was admitted; lets a stateless backend answer a retried submit alike."""
    workload: Workload = Workload.TENANT_JOB
    """Tenant code or a platform engine (set by the service layer from the stored job)."""
    network: JobNetwork = JobNetwork.NONE
    """What a tenant job may reach: nothing, or the gateway through a relay."""
    chip: str = ""
    """The chip type the attempt was admitted on (engine backends name their resources
    after it: a Ray custom resource, a Slurm GRES, a Kubernetes device-plugin resource)."""
    family: str = ""
    """The chip family of :attr:`chip` (``nvidia``, ``ascend``, ...)."""
    preemptible: bool = True
    """Whether the job may be stopped and requeued (Slurm: ``--requeue``)."""
    gang: GangStrategy = GangStrategy.SPREAD
    """How a multi-node run's nodes are laid out (Ray: STRICT_SPREAD or PACK)."""
    connection: Connection | None = None
    """How to reach the cluster's engine (from the cluster record; None for local and
    simulated). Poll, cancel and logs get only the handle: an engine backend copies what
    they need (address, engine job id) into the handle it returns."""
    engine: str = ""
    """Platform engines: the deployment's engine (``llama.cpp``, ``vllm``, ...); Kubernetes
    picks the container image by it."""
    port: int | None = None
    """Platform engines: the replica's port (Kubernetes exposes it through a Service)."""
    grace_s: float | None = None
    """Seconds between SIGTERM and SIGKILL when the run is stopped (the job's
    ``preemption_grace_s``); None: the backend's default."""
    resume_count: int = 0
    """Earlier attempts of the job stopped and requeued without a retry (preemptions,
    moves, exit 75): ``SUANWANG_RESUME_COUNT``."""
    dataset_dir: str | None = None
    """Host directory of the job's dataset replica in the attempt's region: mounted
    read-only at ``/data/input`` in a sandbox (``SUANWANG_DATASET_DIR``); None: no dataset."""


@dataclass(frozen=True, slots=True)
class RunStatus:
    """What a backend knows about one run.

    ``state`` is ``starting``/``running`` while alive, else how it ended. ``lost`` means the
    run vanished without a recorded exit (its host or supervisor died).
    """

    state: AttemptState
    handle: Handle = field(default_factory=dict)
    exit_code: int | None = None
    reason: str = ""
    started_at: float | None = None
    ended_at: float | None = None
    checkpoint_at: float | None = None
    """When the run last reported a checkpoint, if the backend knows."""


class EngineUnreachable(Exception):
    """An engine backend could not reach its engine (network, credentials, engine down).

    Raised by ``submit``/``poll``/``cancel``/``logs`` when the outcome is unknown rather
    than a failure of the run: the control loop keeps the attempt as it is and asks again
    on a later tick (``submit`` is idempotent), so the job is neither failed nor run twice.
    Any other exception from ``submit``/``poll`` fails that job alone.
    """


RUN_NAME_PREFIX = "suanwang-"
"""Engines name (or label) each run ``suanwang-<job_id>-<attempt>`` so :meth:`Backend.runs`
can list back the runs suanwang started."""


def run_name(job_id: str, attempt: int) -> str:
    """The engine-side name of attempt ``attempt`` of ``job_id``."""
    return f"{RUN_NAME_PREFIX}{job_id}-{attempt}"


def parse_run_name(name: str) -> tuple[str, int] | None:
    """``(job_id, attempt)`` from a :func:`run_name`; None if ``name`` is not one."""
    if not name.startswith(RUN_NAME_PREFIX):
        return None
    job_id, _, number = name[len(RUN_NAME_PREFIX) :].rpartition("-")
    if not job_id or not number.isdigit() or number.startswith("0"):
        return None
    return job_id, int(number)


@dataclass(frozen=True, slots=True)
class ClusterCapacity:
    """What an engine reports about a cluster: reachable or not, and its nodes.

    An unreachable engine, wrong credentials or a missing partition give
    ``healthy=False`` with the reason; :meth:`Backend.capacity` never raises for them.
    """

    healthy: bool
    reason: str = ""
    nodes: tuple[NodeSpec, ...] = ()
    complete: bool = True
    """``nodes`` is every node the cluster has (a fleet node missing from it is drained in
    suanwang's view); False when the backend only knows what this host offers (local) or
    nothing at all (simulated)."""


@dataclass(frozen=True, slots=True)
class RunRef:
    """One run an engine holds that suanwang started (named by :func:`run_name`)."""

    job_id: str
    attempt: int
    handle: Handle
    """Enough for :meth:`Backend.poll` / :meth:`Backend.cancel` to reach the run."""
    alive: bool


class Backend(Protocol):
    """Runs workloads on one kind of execution engine."""

    name: str

    def submit(self, request: LaunchRequest) -> RunStatus:
        """Start the run, or report the one already started for the same attempt."""
        ...

    def poll(self, job_id: str, attempt: int, handle: Handle) -> RunStatus:
        """Current status of a run started by :meth:`submit`."""
        ...

    def cancel(self, job_id: str, attempt: int, handle: Handle) -> None:
        """Ask the run to stop (graceful, then forced); a no-op if it already ended."""
        ...

    def logs(self, job_id: str, attempt: int, handle: Handle, offset: int, limit: int) -> bytes:
        """Up to ``limit`` bytes of the run's combined output starting at ``offset``."""
        ...

    def refusal(self, workload: Workload) -> str | None:
        """Why this backend cannot run ``workload`` on this host at all (None if it can)."""
        ...

    def capacity(self, cluster: str, connection: Connection | None) -> ClusterCapacity:
        """Whether the engine of ``cluster`` answers, and its nodes (never raises for an
        unreachable or misconfigured engine: ``healthy=False`` with the reason)."""
        ...

    def runs(self, cluster: str, connection: Connection | None) -> list[RunRef]:
        """Runs the engine of ``cluster`` holds that suanwang started, alive or not
        (raises if the engine cannot be asked; the caller then skips orphan handling)."""
        ...


class TenantUids(Protocol):
    """The numeric uid each tenant's local runs use (allocated once, never reused)."""

    def uid_for(self, tenant: str) -> int:
        """The tenant's uid, allocating one from the configured range on first use."""
        ...


# --- storage ports: implemented by suanwang.adapters.db -------------------------------------
class FleetStore(Protocol):
    """Reads and writes the fleet inside one unit of work."""

    def regions(self) -> list[RegionSpec]: ...

    def clusters(self) -> list[ClusterRecord]: ...

    def wan_links(self) -> list[WanLinkSpec]: ...

    def nodes(
        self, cluster: str | None = None, *, offset: int = 0, limit: int | None = None
    ) -> list[NodeRecord]:
        """Nodes (in id order; ``offset``/``limit`` for a page) with the cards held by active
        allocations."""
        ...

    def node_shapes(self) -> list[NodeShape]:
        """Nodes counted by cluster, chip and card count (what a job could ever fit on)."""
        ...

    def put_region(self, spec: RegionSpec, now: float) -> None: ...

    def put_cluster(self, spec: ClusterSpec, now: float) -> None: ...

    def set_health(self, cluster: str, health: ClusterHealth) -> None:
        """Record the last health check of ``cluster``."""
        ...

    def set_node_states(self, cluster: str, names: list[str], state: str) -> None:
        """Set the state (``ready``, ``drained``) of the named nodes of ``cluster``."""
        ...

    def put_node(self, cluster: str, spec: NodeSpec) -> None: ...

    def add_nodes(self, cluster: str, specs: list[NodeSpec]) -> None:
        """Bulk insert of new nodes (fast path for 1,000+ node clusters)."""
        ...

    def delete_nodes(self, cluster: str, names: list[str]) -> None: ...

    def put_wan_link(self, spec: WanLinkSpec) -> None: ...


class TenancyStore(Protocol):
    """Reads and writes tenants and keys inside one unit of work."""

    def add_tenant(self, tenant_id: str, display_name: str, now: float) -> None: ...

    def tenant(self, tenant_id: str) -> TenantRecord | None: ...

    def tenants(self) -> list[TenantRecord]: ...

    def quotas(self) -> dict[str, dict[str, QuotaSpec]]:
        """Every tenant's quota map (tenants without quota rows are absent)."""
        ...

    def set_quota(self, tenant_id: str, quota: dict[str, QuotaSpec]) -> None: ...

    def set_queue(self, tenant_id: str, cohort: str | None, weight: float) -> None: ...

    def add_key(self, key: KeyRecord) -> None: ...

    def key_by_prefix(self, prefix: str) -> KeyRecord | None: ...

    def key(self, key_id: str) -> KeyRecord | None: ...

    def keys(self, tenant_id: str | None, *, operator_keys: bool) -> list[KeyRecord]:
        """Keys of one tenant, or (``operator_keys``) the operator's own keys, or all."""
        ...

    def revoke_key(self, key_id: str, now: float) -> None: ...

    def local_uid(self, tenant_id: str) -> int | None:
        """The uid the tenant's local runs use, if one was allocated."""
        ...

    def highest_local_uid(self, first: int, last: int) -> int | None: ...

    def add_local_uid(self, tenant_id: str, uid: int, now: float) -> None: ...


class JobStore(Protocol):
    """Reads and writes jobs and their attempts inside one unit of work."""

    def add_job(self, job: JobRecord) -> None: ...

    def job(self, job_id: str) -> JobRecord | None: ...

    def jobs_by_id(self, job_ids: Collection[str]) -> dict[str, JobRecord]:
        """The jobs of ``job_ids`` that exist, by id, in one round of queries."""
        ...

    def job_by_idempotency(self, tenant: str, key: str) -> JobRecord | None: ...

    def jobs(
        self,
        tenant: str | None,
        states: Iterable[JobState] | None = None,
        limit: int = 100,
        offset: int = 0,
        chip: str | None = None,
    ) -> list[JobRecord]:
        """Newest first; ``offset`` skips that many (a page of a listing); ``chip``: only
        jobs whose spec asks for that chip selector."""
        ...

    def queued(self) -> list[JobRecord]: ...

    def with_states(self, states: Iterable[JobState]) -> list[JobRecord]: ...

    def count_by_state(self) -> dict[str, int]: ...

    def update_job(self, job: JobRecord, now: float, change: JobChange) -> bool:
        """Compare-and-set: apply ``change`` only if the row still has ``job.version``.

        Only persists: a caller changing the state checks the move with
        :func:`~suanwang.domain.jobs.check_transition` first.
        """
        ...

    def add_event(self, job_id: str, at: float, state: str, reason: str) -> None: ...

    def events(self, job_id: str) -> list[JobEvent]: ...

    def add_attempt(self, attempt: AttemptRecord) -> int: ...

    def attempts(self, job_id: str) -> list[AttemptRecord]: ...

    def live_attempts(self, tenant: str | None = None) -> list[AttemptRecord]:
        """Attempts that have not ended (starting or running), of ``tenant``'s jobs if given."""
        ...

    def finished_runs(
        self, pairs: Collection[tuple[str, str]], per_pair: int
    ) -> list[RunObservation]:
        """The latest ``per_pair`` successful real runs of each (tenant, kind) (to learn
        chip speeds)."""
        ...

    def update_attempt(self, attempt_id: int, change: AttemptChange) -> None: ...

    def add_allocations(
        self, attempt_id: int, tenant: str, family: str, placements: Sequence[NodeCards]
    ) -> None: ...

    def release_allocations(self, attempt_id: int) -> None: ...

    def usage(self) -> dict[str, dict[str, int]]:
        """Cards held now, by tenant and chip family."""
        ...


class DeploymentStore(Protocol):
    """Reads and writes deployments and their replicas inside one unit of work."""

    def add_deployment(self, deployment: DeploymentRecord) -> None: ...

    def deployment(self, deployment_id: str) -> DeploymentRecord | None: ...

    def deployments(self, tenant: str | None, *, all_tenants: bool) -> list[DeploymentRecord]:
        """Active deployments: every one (``all_tenants``), else ``tenant``'s and public ones."""
        ...

    def update_deployment(
        self, deployment_id: str, now: float, change: DeploymentChange
    ) -> None: ...

    def add_replica(self, replica: ReplicaRecord) -> None: ...

    def replicas(self, deployment_id: str | None = None) -> list[ReplicaRecord]:
        """Replicas of one deployment (or all), by deployment and number."""
        ...

    def update_replica(self, replica_id: str, change: ReplicaChange) -> None: ...

    def ports_in_use(self) -> set[int]:
        """Ports recorded on replicas that are not stopped."""
        ...

    def ready_views(self) -> list[ReplicaView]:
        """Ready replicas of active deployments, as the gateway routes to them."""
        ...

    def autoscaled_views(self) -> list[DeploymentView]:
        """Active deployments with autoscaling, whether or not any replica runs."""
        ...


class DemandStore(Protocol):
    """The demand gateways report per deployment (``model_demand``), one row per
    (gateway process, deployment), replaced at each report."""

    def replace(self, gateway: str, reports: Sequence[DemandReport]) -> None:
        """Make ``reports`` the rows of ``gateway`` (its older rows go)."""
        ...

    def reports(self, since: float) -> list[DemandReport]:
        """Rows reported at or after ``since``."""
        ...

    def prune(self, before: float) -> int:
        """Delete rows reported before ``before`` (dead gateways'); how many."""
        ...


class ExternalStore(Protocol):
    """External endpoints (their deployment rows live in :class:`DeploymentStore`)."""

    def add(self, endpoint: ExternalEndpoint) -> None: ...

    def get(self, deployment_id: str) -> ExternalEndpoint | None: ...

    def all(self) -> list[ExternalEndpoint]:
        """Every stored endpoint, deleted deployments' included."""
        ...

    def update(self, deployment_id: str, now: float, change: ExternalChange) -> None: ...


class LimitsStore(Protocol):
    """Reads and writes gateway limits inside one unit of work."""

    def tenant_limits(self, tenant: str) -> TenantLimits | None: ...

    def set_tenant_limits(self, tenant: str, limits: TenantLimits, now: float) -> None: ...

    def key_limits(self, key_id: str) -> KeyLimits | None: ...

    def set_key_limits(self, key_id: str, limits: KeyLimits, now: float) -> None: ...


class UsageStore(Protocol):
    """The metering ledger and compute-metering watermarks inside one unit of work."""

    def append(
        self, entries: Iterable[TokenUsage | ComputeUsage | StorageUsage], recorded_at: float
    ) -> int:
        """Append ledger rows (known entry ids are skipped); returns how many were new."""
        ...

    def totals(self, tenant: str | None, start: float, end: float) -> list[UsageTotal]:
        """Ledger sums by tenant and model or chip for rows with ``start <= ended_at < end``."""
        ...

    def tier(self, tenant: str) -> str | None: ...

    def set_tier(self, tenant: str, tier: str) -> bool: ...

    def unmetered_attempts(self, boundary: float) -> list[AttemptSpan]: ...

    def set_metered_to(self, attempt_id: int, metered_to: float) -> None: ...


class AuditStore(Protocol):
    """The append-only audit log inside one unit of work (no update, no delete)."""

    def append(self, entry: AuditEntry) -> int:
        """Add ``entry``; returns its id (larger than every earlier entry's)."""
        ...

    def entries(self, query: AuditQuery) -> list[AuditEntry]:
        """Entries matching ``query``, newest first."""
        ...


class DatasetStore(Protocol):
    """Datasets, their manifests, replicas and the tenants' storage quotas. Deleted datasets
    keep their rows (for billing) and are left out of every lookup but :meth:`get`."""

    def add(self, dataset: DatasetRecord) -> None:
        """Conflict if the tenant has a live dataset of that name."""
        ...

    def get(self, dataset_id: str) -> DatasetRecord | None: ...

    def by_name(self, tenant: str, name: str) -> DatasetRecord | None: ...

    def live(
        self, tenant: str | None, name: str | None = None, offset: int = 0, limit: int | None = None
    ) -> list[DatasetRecord]:
        """Live datasets, newest first; of every tenant when ``tenant`` is None."""
        ...

    def used_bytes(self, tenant: str) -> int:
        """Bytes of the tenant's live datasets (uploading ones included)."""
        ...

    def put_file(self, dataset_id: str, entry: ManifestEntry) -> None:
        """Add ``entry`` to the manifest (replacing a file of that path) and resize."""
        ...

    def seal(self, dataset_id: str, now: float) -> None: ...

    def mark_deleted(self, dataset_id: str, now: float) -> None: ...

    def put_replica(self, replica: DatasetReplica) -> None: ...

    def storage_quota(self, tenant: str) -> int | None:
        """The operator's quota for the tenant; None: the platform default."""
        ...

    def set_storage_quota(self, tenant: str, quota_bytes: int | None) -> None: ...

    def unmetered(self, boundary: float) -> list[DatasetRecord]:
        """Datasets with storage not metered up to ``boundary`` (or their deletion)."""
        ...

    def set_metered_to(self, dataset_id: str, metered_to: float) -> None: ...

    def add_transfer(self, transfer: TransferRecord) -> None: ...

    def transfer(self, transfer_id: str) -> TransferRecord | None: ...

    def transfers(
        self, *, dataset: str | None = None, active_only: bool = False
    ) -> list[TransferRecord]:
        """Newest first."""
        ...

    def update_transfer(self, transfer_id: str, progress: TransferProgress) -> None: ...

    def put_agent(self, agent: AgentRecord) -> None: ...

    def agents(self) -> list[AgentRecord]: ...


class AppStore(Protocol):
    """Apps and their immutable versions inside one unit of work."""

    def add(self, app: App, version: AppVersion) -> None: ...

    def get(self, app_id: str) -> App | None: ...

    def named(self, tenant: str, name: str) -> App | None: ...

    def all(self, tenant: str | None) -> list[App]:
        """The tenant's apps (None: every tenant's), by tenant and name."""
        ...

    def add_version(self, version: AppVersion, now: float, *, publish: bool) -> None:
        """Store the next version (and publish it if asked)."""
        ...

    def versions(self, app_id: str) -> list[AppVersion]: ...

    def version(self, app_id: str, version: int) -> AppVersion | None: ...

    def publish(self, app_id: str, version: int, now: float) -> None: ...

    def share(self, app_id: str, key_ids: tuple[str, ...], now: float) -> None: ...

    def delete(self, app_id: str) -> None:
        """The app and all its versions."""
        ...


class ReportStore(Protocol):
    """Read-only aggregates for the operator's views, computed in the database."""

    def busy_spans(self, start: float, end: float) -> list[BusySpan]:
        """Attempts holding cards at some time in ``[start, end)`` (ended or not)."""
        ...

    def capacity(self, by: UtilBy) -> list[GroupCapacity]:
        """Cards (and simulated cards) per region or chip, in name order."""
        ...

    def queue_groups(self, by_reason: bool, limit: int, offset: int) -> list[QueueGroup]:
        """Queued jobs grouped by tenant and chip (and reason), most jobs first."""
        ...

    def transfers(
        self, state: TransferState | None, limit: int, offset: int
    ) -> list[TransferListing]:
        """Transfers with their dataset's tenant and name, newest first."""
        ...

    def tiers(self) -> dict[str, str]:
        """Every tenant's price tier."""
        ...


class SessionStore(Protocol):
    """Web-console sessions, by the hash of their id (the id itself is never stored)."""

    def add(self, record: SessionRecord) -> None: ...

    def get(self, id_hash: str) -> SessionRecord | None: ...

    def delete(self, id_hash: str) -> bool: ...

    def delete_for_key(self, key_id: str) -> int:
        """End every session opened with the key (it was revoked); how many."""
        ...

    def delete_expired(self, now: float) -> int: ...


class UnitOfWork(Protocol):
    """One transaction; rolled back on exit unless :meth:`commit` was called."""

    @property
    def fleet(self) -> FleetStore: ...

    @property
    def tenancy(self) -> TenancyStore: ...

    @property
    def jobs(self) -> JobStore: ...

    @property
    def usage(self) -> UsageStore: ...

    @property
    def deployments(self) -> DeploymentStore: ...

    @property
    def limits(self) -> LimitsStore: ...

    @property
    def externals(self) -> ExternalStore: ...

    @property
    def audit(self) -> AuditStore: ...

    @property
    def demand(self) -> DemandStore: ...

    @property
    def datasets(self) -> DatasetStore: ...

    @property
    def apps(self) -> AppStore: ...

    @property
    def sessions(self) -> SessionStore: ...

    @property
    def reports(self) -> ReportStore: ...

    def __enter__(self) -> Self: ...

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None: ...

    def commit(self) -> None: ...

    def lock_scheduler(self) -> None:
        """Serialise scheduling cycles across control planes for this transaction."""
        ...


class UnitOfWorkFactory(Protocol):
    def __call__(self) -> UnitOfWork: ...


# --- models as a service: the seams between deployments, the gateway and metering -----------
class ReplicaDirectory(Protocol):
    """Where the gateway learns which replicas may serve (implemented over the database)."""

    def ready_replicas(self) -> list[ReplicaView]:
        """Every live replica of an active deployment, all models; ``ready`` tells which
        passed their last health check (only those are routed to)."""
        ...

    def autoscaled_deployments(self) -> list[DeploymentView]:
        """Active autoscaled deployments (a request may wait for one to cold start)."""
        ...


class DemandSink(Protocol):
    """Where a gateway process reports its demand (blocking; called off the event loop)."""

    def record(self, gateway: str, reports: Sequence[DemandReport]) -> None: ...


class UsageSink(Protocol):
    """The metering ledger as the gateway sees it."""

    async def record(self, usage: TokenUsage) -> None:
        """Append ``usage``; returns only once it is durable. Idempotent on ``entry_id``."""
        ...

    def tokens_used(self, tenant: str, since: float) -> int:
        """Prompt + completion tokens the ledger holds for ``tenant`` since ``since``."""
        ...


class Limiter(Protocol):
    """Rate limits and token-quota reservations shared by every gateway process."""

    async def reserve(
        self, request_id: str, tenant: str, key_id: str, tokens: int, limits: Limits
    ) -> Reservation:
        """Count one request and hold ``tokens`` atomically, or raise RateLimited/QuotaExhausted."""
        ...

    async def settle(self, reservation: Reservation, tokens: int) -> bool:
        """Turn the hold into ``tokens`` used (0 releases it). False if nothing was held (no
        token limit applies), or it was already settled or swept."""
        ...

    async def sweep(self) -> int:
        """Release reservations past their expiry (left by killed processes); how many."""
        ...


# --- engines: how replicas are launched and health-checked (implemented in suanwang.engines) --
@dataclass(frozen=True, slots=True)
class ReplicaLaunch:
    """What an engine needs to serve one replica of a model on one chip."""

    replica_id: str
    model: ModelSpec
    engine: str
    chip: str
    family: str
    cards: int
    backend: str
    """The cluster's backend: ``local`` (this machine), ``simulated``, or a real GPU/NPU one."""
    port: int | None = None


@dataclass(frozen=True, slots=True)
class EnginePlan:
    """The rendered launch: command, environment, container image and where it will answer."""

    command: tuple[str, ...]
    env: tuple[tuple[str, str], ...]
    base_url: str
    image: str = ""


class EngineLauncher(Protocol):
    def plan(self, launch: ReplicaLaunch) -> EnginePlan:
        """Render the launch of ``launch`` (raises ValidationError if it cannot run here)."""
        ...

    def free_port(self, taken: set[int]) -> int:
        """A port on 127.0.0.1 that is free now and not in ``taken``."""
        ...


class SecretBox(Protocol):
    """Encrypts credentials at rest (implemented by :mod:`suanwang.adapters.crypto`)."""

    def seal(self, plaintext: str) -> str:
        """The ciphertext of ``plaintext`` under the newest key (ASCII, safe to store)."""
        ...

    def open(self, sealed: str) -> str:
        """The plaintext of ``sealed`` (raises ``ValueError`` when no key opens it)."""
        ...

    def reseal(self, sealed: str) -> str:
        """``sealed`` re-encrypted under the newest key (after a key rotation)."""
        ...


@dataclass(frozen=True, slots=True)
class ProbeTarget:
    """One health check: ``GET url`` with ``headers`` (which may hold a credential)."""

    key: str
    url: str
    headers: tuple[tuple[str, str], ...] = field(default=(), repr=False)


class EndpointProbe(Protocol):
    def reachable(self, targets: list[ProbeTarget]) -> dict[str, bool]:
        """``GET`` every target at once with a bounded timeout; 200 is healthy (by ``key``)."""
        ...


class EngineProbe(Protocol):
    def healthy(self, base_urls: list[str]) -> dict[str, bool]:
        """Health-check every engine at once, each with a bounded timeout."""
        ...


# --- datasets: where their bytes live -------------------------------------------------------
class FileSink(Protocol):
    """One file being written into a dataset; invisible until :meth:`finish`."""

    @property
    def written(self) -> int: ...

    def write(self, chunk: bytes) -> None: ...

    def sha256(self) -> str:
        """The SHA-256 (hex) of what was written so far."""
        ...

    def finish(self) -> ManifestEntry:
        """Move the file into place; its size and SHA-256 as computed while writing."""
        ...

    def abort(self) -> None: ...


class DatasetFiles(Protocol):
    """The storage roots: one directory per region, the platform's choice of every path."""

    def replica_dir(self, region: str, tenant: str, dataset_id: str) -> str:
        """``<root>/<region>/tenants/<tenant>/datasets/<id>``, absolute."""
        ...

    def create(self, region: str, tenant: str, dataset_id: str) -> str:
        """Make the replica directory (and its private parents); returns it."""
        ...

    def open_file(
        self, region: str, tenant: str, dataset_id: str, parts: tuple[str, ...]
    ) -> FileSink:
        """Start writing the file ``parts`` (checked by the domain) of a replica."""
        ...

    def remove(self, region: str, tenant: str, dataset_id: str) -> None:
        """Delete the replica's files (no error if already gone)."""
        ...

    def finalise(self, region: str, tenant: str, dataset_id: str) -> None:
        """Give a replica another writer made (an agent) the dataset layout's owner and
        modes (root's, directories 0755, files 0644; no link followed)."""
        ...


class JobOutputFiles(Protocol):
    """A finished job's own directory, read to register its output as a dataset."""

    def files(self, backend: str, job_id: str, parts: tuple[str, ...]) -> list[tuple[str, int]]:
        """(relative path, size) of every regular file below ``parts`` of the job's directory;
        ValidationError for a missing directory, a link or special file in it, or a backend
        that keeps no job directory on this host."""
        ...

    def read(self, backend: str, job_id: str, parts: tuple[str, ...], path: str) -> Iterator[bytes]:
        """One of those files in chunks (no link followed)."""
        ...


# --- the transfer plane: agents that move dataset bytes between regions ----------------------
class AgentUnreachable(Exception):
    """An agent did not answer or refused the request (retried on a later tick)."""


class TransferAgents(Protocol):
    """The control API of the agents (addresses are ``HOST:PORT``)."""

    def start_push(
        self,
        source: str,
        transfer_id: str,
        src: str,
        target: str,
        dst: str,
        link: LinkCaps | None = None,
    ) -> TransferProgress:
        """Ask the agent at ``source`` to push ``src`` to ``dst`` at ``target`` (again:
        resume). Paths are relative to the agents' storage roots; ``link`` carries the WAN
        link's rate from the fleet (the agent sizes its streams from it) and the caps."""
        ...

    def status(self, source: str, transfer_id: str) -> TransferProgress: ...

    def manifest(self, address: str, path: str) -> list[ManifestEntry]:
        """What the agent at ``address`` holds under ``path``: every file's size and SHA-256."""
        ...


class AgentAuthority(Protocol):
    """The CA the control plane keeps for the transfer plane."""

    def issue_agent(
        self, name: str, host: str, valid_s: float, public_key_pem: str | None = None
    ) -> IssuedCert:
        """A fresh certificate and key for agent ``name`` reached at ``host``, valid
        ``valid_s``; or, given the agent's own ``public_key_pem``, a certificate for that key
        (and an empty ``key_pem``)."""
        ...

    def verify_renewal(self, renewal: AgentRenewal) -> str:
        """The serial of the certificate the renewal proves (issued by this CA, unexpired,
        agent ``renewal.name``'s, signature by its key); Forbidden otherwise."""
        ...


class KnowledgeIndex(Protocol):
    """Knowledge bases, their documents and the chunk index (vector and keyword).

    Tenancy is the service's business: the index stores the tenant and filters by it
    only where asked. ``put_document`` replaces a document and all its chunks in one
    transaction: a reader sees the old chunks or the new ones, never half of either."""

    def create_base(self, kb: KnowledgeBase) -> None: ...

    def bases(self, tenant: str | None) -> list[KnowledgeBase]:
        """The tenant's knowledge bases (None: every tenant's), by name."""
        ...

    def base(self, kb_id: str) -> KnowledgeBase | None: ...

    def base_named(self, tenant: str, name: str) -> KnowledgeBase | None: ...

    def delete_base(self, kb_id: str) -> None: ...

    def documents(self, kb_id: str) -> list[DocumentRecord]: ...

    def document(self, kb_id: str, doc_id: str) -> DocumentRecord | None: ...

    def document_named(self, kb_id: str, name: str) -> DocumentRecord | None: ...

    def put_document(self, doc: DocumentRecord, chunks: Sequence[ChunkDraft]) -> None: ...

    def delete_document(self, kb_id: str, doc_id: str) -> None: ...

    def search_vector(
        self, kb_ids: Sequence[str], vector: Sequence[float], limit: int
    ) -> list[Hit]:
        """The ``limit`` chunks nearest by cosine similarity (score = 1 - cosine distance)."""
        ...

    def search_keyword(self, kb_ids: Sequence[str], query: str, limit: int) -> list[Hit]:
        """The ``limit`` best chunks by BM25 over Chinese-segmented text (score = -bm25)."""
        ...


@dataclass(frozen=True, slots=True)
class Embedded:
    vectors: list[list[float]]
    prompt_tokens: int


class Embedder(Protocol):
    def embed(self, model: str, texts: Sequence[str], credential: str | None) -> Embedded:
        """One vector per text from the platform's embedding deployment of ``model``,
        called with the tenant's ``credential`` so the tokens are metered to that key.
        Raises ``Unavailable`` when the model cannot answer."""
        ...


class DocumentParser(Protocol):
    def parse(self, data: bytes, media_type: MediaType) -> str:
        """The plain text of an untrusted file, parsed under time and memory limits.
        Raises ``ValidationError`` (422) for a corrupt, hostile or empty file."""
        ...
