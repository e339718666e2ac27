"""The composition root: the one place that picks adapters and wires them together.

Nothing happens at import time; call :func:`build_platform` or :func:`build_app`.
"""

from __future__ import annotations

import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager

import httpx
import redis.asyncio as aioredis
import structlog
from fastapi import FastAPI

from suanwang.adapters.backends.clocks import SystemClock
from suanwang.adapters.backends.lazy import ENGINE_TARGETS, LazyBackend, load_target, module_present
from suanwang.adapters.backends.local import LocalBackend
from suanwang.adapters.backends.probe import local_nodes
from suanwang.adapters.backends.sandbox import Isolation, IsolationMode, JobLimits
from suanwang.adapters.backends.simulated import SimulatedBackend
from suanwang.adapters.crypto import box_for
from suanwang.adapters.data_dir import secure_data_dir
from suanwang.adapters.dataset_files import LocalDatasetFiles
from suanwang.adapters.db.demand_repo import SqlDemandSink
from suanwang.adapters.db.deployments_repo import SqlReplicaDirectory
from suanwang.adapters.db.engine import make_engine, migrate, sqlite_file
from suanwang.adapters.db.uow import SqlUnitOfWorkFactory
from suanwang.adapters.db.usage_ledger import SqlUsageLedger
from suanwang.adapters.http.app import create_app
from suanwang.adapters.http.follow import FollowSlots
from suanwang.adapters.job_outputs import LocalJobOutputs
from suanwang.adapters.journal import JournaledUsageSink
from suanwang.adapters.knowledge.embedder import GatewayEmbedder
from suanwang.adapters.knowledge.parse import SandboxedParser
from suanwang.adapters.knowledge.store import SqliteKnowledgeIndex
from suanwang.adapters.transfer_plane import AgentClients, TransferCA
from suanwang.config import Settings
from suanwang.domain.errors import ValidationError
from suanwang.domain.serving import ModelKind
from suanwang.engines import HttpProbe, LlamaServer, LocalEngines
from suanwang.engines.probe import resolve_host
from suanwang.engines.simulated import create_app as simulated_engine_app
from suanwang.gateway import (
    Gateway,
    GatewayApp,
    GatewayConfig,
    InProcessLimiter,
    KeyAuthenticator,
    RedisLimiter,
    Router,
    Timeouts,
    Upstreams,
)
from suanwang.gateway.metrics import GatewayMetrics
from suanwang.gateway.playground import GatewayAppChat
from suanwang.gateway.resp import lean_scripts_for
from suanwang.observability import Metrics
from suanwang.ports import Backend, Clock, Limiter, TenantUids
from suanwang.services.agents import Agents
from suanwang.services.apps import Apps
from suanwang.services.autoscaling import Autoscaler
from suanwang.services.billing import Billing
from suanwang.services.catalogue import default_catalogue, load_priority_classes
from suanwang.services.cluster_health import ClusterHealthCheck
from suanwang.services.control import ControlLoop
from suanwang.services.datasets import Datasets
from suanwang.services.deployments import Deployments
from suanwang.services.external import ExternalEndpoints
from suanwang.services.identities import TenantUidAllocator
from suanwang.services.job_outputs import JobOutputs
from suanwang.services.jobs import Jobs
from suanwang.services.knowledge import KnowledgeBases
from suanwang.services.limits import GatewayLimits
from suanwang.services.metering import ComputeMeter
from suanwang.services.models import default_models
from suanwang.services.orphans import OrphanSweep
from suanwang.services.platform import Fleet, Platform
from suanwang.services.prices import default_prices
from suanwang.services.tenancy import Tenancy
from suanwang.services.transfers import Transfers

log = structlog.get_logger("suanwang")


def build_platform(
    settings: Settings, clock: Clock | None = None, *, run_migrations: bool = True
) -> Platform:
    """Wire the platform for ``settings`` (migrating the database first by default)."""
    secure_data_dir(settings.data_dir, sqlite_file(settings.db_url))
    if run_migrations:
        migrate(settings.db_url)
    clock = clock or SystemClock()
    uows = SqlUnitOfWorkFactory(make_engine(settings.db_url))
    catalogue = default_catalogue()
    tenant_uids = TenantUidAllocator(uows, clock, settings.tenant_uids)
    backends: dict[str, Backend] = {
        "local": LocalBackend(
            settings.runs_dir,
            clock,
            isolation=local_isolation(settings, tenant_uids),
            grace_s=settings.cancel_grace_s,
        ),
        "simulated": SimulatedBackend(clock, speedup=settings.sim_speedup),
        **engine_backends(settings, clock, tenant_uids=tenant_uids),
    }
    deployments = Deployments(
        uows,
        clock,
        catalogue,
        default_models(),
        LocalEngines(llama=LlamaServer(settings.llama_threads, settings.llama_slots)),
        HttpProbe(timeout_s=1.0),
    )
    autoscaler = Autoscaler(uows, clock, slots=settings.llama_slots)
    files = LocalDatasetFiles(settings.storage_dir)
    transfer_ca = TransferCA(settings.data_dir, box_for(settings.data_dir), clock)
    transfers = Transfers(uows, clock, AgentClients(transfer_ca), files)
    agents = Agents(uows, clock, transfer_ca)
    knowledge = build_knowledge(settings, clock)
    datasets = Datasets(uows, clock, files, settings.storage_quota_bytes)
    outputs = JobOutputs(uows, clock, datasets, LocalJobOutputs(settings.runs_dir))
    externals = ExternalEndpoints(
        uows,
        clock,
        box_for(settings.data_dir),
        HttpProbe(timeout_s=settings.external_probe_timeout_s),
        resolve_host,
        default_models(),
        settings.external_probe_interval_s,
    )
    return Platform(
        fleet=Fleet(uows, clock, catalogue),
        tenancy=Tenancy(uows, clock, catalogue),
        jobs=Jobs(
            uows,
            clock,
            catalogue,
            backends,
            load_priority_classes(settings.priority_classes_file),
            settings.max_preemption_grace_s,
        ),
        control=ControlLoop(
            uows,
            backends,
            clock,
            catalogue,
            after_reconcile=(
                _each(autoscaler.tick),
                deployments.converge,
                ComputeMeter(uows, clock).tick,
                _each(agents.check),
            ),
            benchmark_tenant=settings.benchmark_tenant or None,
            realloc_interval_s=settings.realloc_interval_s,
            stager=transfers,
            on_success=outputs.register,
        ),
        deployments=deployments,
        catalogue=catalogue,
        clock=clock,
        backends=backends,
        uows=uows,
        billing=Billing(uows, clock, default_prices(), externals.token_prices),
        externals=externals,
        cluster_health=ClusterHealthCheck(
            uows, backends, clock, settings.cluster_health_interval_s
        ),
        orphans=OrphanSweep(
            uows, backends, clock, settings.orphan_grace_s, settings.orphan_interval_s
        ),
        datasets=datasets,
        transfers=transfers,
        agents=agents,
        knowledge=knowledge,
        apps=Apps(uows, clock, knowledge, _model_kinds()),
        local_nodes=tuple(local_nodes()),
    )


def build_knowledge(settings: Settings, clock: Clock) -> KnowledgeBases:
    """Knowledge bases on ``<data>/knowledge.db``, embedding through the platform's gateway
    (the API server and the gateway processes open the same file)."""
    return KnowledgeBases(
        SqliteKnowledgeIndex(settings.data_dir / "knowledge.db"),
        SandboxedParser(),
        GatewayEmbedder(f"http://127.0.0.1:{settings.gateway_port}"),
        clock,
        _model_kinds(),
    )


def _model_kinds() -> dict[str, ModelKind]:
    return {name: spec.kind for name, spec in default_models().items()}


def ensure_transfer_ca(settings: Settings) -> None:
    """Make the transfer plane's CA in the data directory if there is none (``init``)."""
    TransferCA(settings.data_dir, box_for(settings.data_dir), SystemClock()).ensure()


def engine_backends(
    settings: Settings,
    clock: Clock,
    targets: Mapping[str, str] = ENGINE_TARGETS,
    *,
    tenant_uids: TenantUids | None = None,
) -> dict[str, Backend]:
    """Ray, Slurm and Kubernetes backends whose adapter module is installed, each built as
    ``Name(clock, settings)`` on first use (their client libraries are imported then).
    Slurm and Kubernetes also get ``tenant_uids``: their jobs run as the tenant's uid, like
    local runs."""

    def builder(name: str, target: str) -> Callable[[], Backend]:
        own_uids = name in ("slurm", "kubernetes") and tenant_uids is not None
        extra = {"tenant_uids": tenant_uids} if own_uids else {}
        return lambda: load_target(target)(clock, settings, **extra)

    return {
        name: LazyBackend(name, builder(name, target))
        for name, target in targets.items()
        if module_present(target)
    }


def discovery_backend(settings: Settings, name: str, clock: Clock | None = None) -> Backend:
    """The backend ``fleet import --from NAME`` reads capacity from (no database needed)."""
    clock = clock or SystemClock()
    if name == "local":
        return LocalBackend(settings.runs_dir, clock, isolation=Isolation.development())
    found = engine_backends(settings, clock).get(name)
    if found is None:
        raise ValidationError(
            f"the {name} backend is not installed in this suanwang",
            field="--from",
            hint="install the engine's extra (see docs/backends.md)",
        )
    return found


def local_isolation(settings: Settings, tenant_uids: TenantUids) -> Isolation:
    """How the local backend confines runs, from ``SUANWANG_LOCAL_ISOLATION`` and limits."""
    mode = IsolationMode(settings.local_isolation)
    if mode is IsolationMode.SINGLE_USER_DEV:
        log.warning(
            "SUANWANG_LOCAL_ISOLATION=single-user-dev: local jobs run UNCONFINED as this "
            "process's user and can read and change all platform state; development only"
        )
    limits = JobLimits(
        processes=settings.job_max_processes,
        memory_bytes=settings.job_max_memory_bytes,
        disk_bytes=settings.job_max_disk_bytes,
    )
    return Isolation(mode, tenant_uids, settings.engine_uid, limits, settings.gateway_port)


def build_usage_sink(
    settings: Settings, clock: Clock | None = None, *, run_migrations: bool = True
) -> SqlUsageLedger:
    """The metering ledger (a :class:`~suanwang.ports.UsageSink`) on ``settings``' database.

    Call ``await sink.aclose()`` on shutdown: it flushes queued usage before returning.
    """
    secure_data_dir(settings.data_dir, sqlite_file(settings.db_url))
    if run_migrations:
        migrate(settings.db_url)
    return SqlUsageLedger(make_engine(settings.db_url), clock or SystemClock())


class Periodic:
    """Calls ``step`` every ``period_s`` in a daemon thread until stopped.

    A failing step is logged (with its traceback) and counted, never fatal: the next
    period tries again, after a short back-off.
    """

    def __init__(
        self, name: str, step: Callable[[], None], period_s: float, on_error: Callable[[], None]
    ) -> None:
        self._name, self._step, self._period_s, self._on_error = name, step, period_s, on_error
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=30)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self._step()
            except Exception:
                self._on_error()
                log.exception("periodic step failed; retrying", thread=self._name)
                self._stop.wait(min(5.0, self._period_s * 4))
                continue
            self._stop.wait(self._period_s)


def control_step(platform: Platform, metrics: Metrics) -> Callable[[], None]:
    """One control-loop tick with its metrics and a log line when something happened."""

    def step() -> None:
        report = platform.control.tick()
        metrics.ticks.inc()
        metrics.admitted.inc(len(report.admitted))
        if report.admitted or report.finished:
            log.info(
                "tick",
                admitted=report.admitted,
                dispatched=report.dispatched,
                finished=report.finished,
            )

    return step


def build_app(settings: Settings, *, control: bool = True, clock: Clock | None = None) -> FastAPI:
    """The API app; with ``control`` it also runs the control loop while serving."""
    platform = build_platform(settings, clock)
    metrics = Metrics()
    # the console's chat playground: the gateway's pipeline in this process, built on first use
    app_chat = GatewayAppChat(
        lambda: build_gateway_app(settings, clock=platform.clock, run_migrations=False)
    )
    metrics.add_gauges("suanwang_jobs", "jobs by state", "state", platform.job_counts)
    metrics.add_gauges(
        "suanwang_replicas", "model replicas by state", "state", platform.deployments.replica_counts
    )

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        threads = [
            Periodic(
                "control-loop",
                control_step(platform, metrics),
                settings.tick_s,
                metrics.tick_errors.inc,
            ),
            Periodic(
                "replica-health",
                platform.deployments.check_health,
                settings.tick_s,
                lambda: None,  # logged; the control loop's error counter stays about ticks
            ),
            Periodic("external-health", platform.externals.check_health, settings.tick_s, _noop),
            Periodic("cluster-health", _each(platform.cluster_health.tick), settings.tick_s, _noop),
            Periodic("orphan-sweep", _each(platform.orphans.tick), settings.tick_s, _noop),
            # its own thread: an agent that is slow to answer never holds up scheduling
            Periodic("transfers", platform.transfers.tick, settings.tick_s, _noop),
        ]
        for thread in threads if control else []:
            thread.start()
        try:
            yield
        finally:
            await app_chat.aclose()
            for thread in reversed(threads) if control else []:
                thread.stop()

    return create_app(
        platform,
        metrics,
        max_body_bytes=settings.max_body_bytes,
        lifespan=lifespan,
        follow_slots=FollowSlots(settings.log_follow_per_key, settings.log_follow_max),
        app_chat=app_chat,
    )


def _noop() -> None:
    """A periodic step's error counter where none is kept (the failure is logged)."""


def _each(step: Callable[[], object]) -> Callable[[], None]:
    """``step`` as a periodic step (its report is logged by the service itself)."""

    def run() -> None:
        step()

    return run


def app_from_env() -> FastAPI:
    """Uvicorn factory: ``uvicorn --factory suanwang.bootstrap:app_from_env``."""
    settings = Settings()
    from suanwang.observability import configure_logging

    configure_logging(settings.log_level, settings.log_json)
    return build_app(settings)


def build_gateway_app(
    settings: Settings,
    *,
    clock: Clock | None = None,
    transports: Mapping[str, httpx.AsyncBaseTransport] | None = None,
    config: GatewayConfig | None = None,
    run_migrations: bool = True,
) -> GatewayApp:
    """The OpenAI-compatible gateway on ``settings``' database (and Redis, if configured).

    ``sim://`` replicas are served by the simulated engine app unless ``transports`` says
    otherwise. Several gateway processes may share one database; with ``redis_url`` set
    they also share limits and quota reservations.
    """
    clock = clock or SystemClock()
    config = config or GatewayConfig(
        read_timeout_s=settings.gateway_read_timeout_s,
        cold_start_timeout_s=settings.gateway_cold_start_timeout_s,
    )
    sink = JournaledUsageSink(
        build_usage_sink(settings, clock, run_migrations=run_migrations),
        settings.usage_journal_dir,
        fsync=settings.usage_journal_fsync,
    )
    sink.recover()  # usage journaled by a gateway that was killed reaches the ledger first
    uows = SqlUnitOfWorkFactory(make_engine(settings.db_url))
    catalogue = default_catalogue()
    tenancy = Tenancy(uows, clock, catalogue)
    limiter: Limiter
    on_close: list[Callable[[], Awaitable[None]]] = [sink.aclose]
    if settings.redis_url:
        pool = aioredis.BlockingConnectionPool.from_url(
            settings.redis_url, max_connections=64, timeout=10
        )
        client = aioredis.Redis(connection_pool=pool)
        lean = lean_scripts_for(settings.redis_url)  # reserve and settle, the hot path
        limiter = RedisLimiter(
            client,
            clock,
            sink.tokens_used,
            config.reservation_ttl_s,
            settings.redis_prefix,
            scripts=lean,
        )
        if lean is not None:
            on_close.append(lean.aclose)
    else:
        limiter = InProcessLimiter(clock, sink.tokens_used, config.reservation_ttl_s)
    if transports is None:
        engine = simulated_engine_app(default_models(), catalogue)
        transports = {"sim": httpx.ASGITransport(app=engine)}
    gateway = Gateway(
        authenticator=KeyAuthenticator(tenancy.authenticate, clock, config.auth_cache_s),
        limits_for=GatewayLimits(uows, clock).limits_for,
        limiter=limiter,
        router=Router(
            SqlReplicaDirectory(uows, box_for(settings.data_dir)),
            clock,
            refresh_s=config.refresh_s,
            eject_s=config.eject_s,
        ),
        upstreams=Upstreams(Timeouts(config.connect_timeout_s, config.read_timeout_s), transports),
        sink=sink,
        models=default_models(),
        clock=clock,
        config=config,
        on_close=on_close,
        metrics=GatewayMetrics(default_models()),
        demand_sink=SqlDemandSink(uows),
        apps=Apps(uows, clock, build_knowledge(settings, clock), _model_kinds()),
    )
    return GatewayApp(gateway)


def gateway_app_from_env() -> GatewayApp:
    """Uvicorn factory: ``uvicorn --factory suanwang.bootstrap:gateway_app_from_env``."""
    settings = Settings()
    from suanwang.observability import configure_logging

    configure_logging(settings.log_level, settings.log_json)
    return build_gateway_app(settings)
