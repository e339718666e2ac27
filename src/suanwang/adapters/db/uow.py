"""Unit of work: one transaction, rolled back unless :meth:`SqlUnitOfWork.commit` is called."""

from __future__ import annotations

from types import TracebackType
from typing import Self

from sqlalchemy import Engine, text
from sqlalchemy.orm import Session, sessionmaker

from suanwang.adapters.db.apps_repo import AppRepository
from suanwang.adapters.db.audit_repo import AuditRepository
from suanwang.adapters.db.datasets_repo import DatasetRepository
from suanwang.adapters.db.demand_repo import DemandRepository
from suanwang.adapters.db.deployments_repo import DeploymentRepository
from suanwang.adapters.db.externals_repo import ExternalRepository
from suanwang.adapters.db.fleet_repo import FleetRepository
from suanwang.adapters.db.jobs_repo import JobRepository
from suanwang.adapters.db.limits_repo import LimitsRepository
from suanwang.adapters.db.reports_repo import ReportRepository
from suanwang.adapters.db.sessions_repo import SessionRepository
from suanwang.adapters.db.tenancy_repo import TenancyRepository
from suanwang.adapters.db.usage_repo import UsageRepository

SCHEDULER_LOCK_ID = 0x5375616E  # "Suan"


class SqlUnitOfWork:
    """A transaction with every repository (fleet, tenancy, jobs, …, the audit log) bound to it."""

    fleet: FleetRepository
    tenancy: TenancyRepository
    jobs: JobRepository
    usage: UsageRepository
    deployments: DeploymentRepository
    limits: LimitsRepository
    audit: AuditRepository
    externals: ExternalRepository
    demand: DemandRepository
    datasets: DatasetRepository
    apps: AppRepository
    sessions: SessionRepository
    reports: ReportRepository

    def __init__(self, factory: sessionmaker[Session]) -> None:
        self._factory = factory
        self._session: Session | None = None

    def __enter__(self) -> Self:
        self._session = self._factory()
        self.fleet = FleetRepository(self._session)
        self.tenancy = TenancyRepository(self._session)
        self.jobs = JobRepository(self._session)
        self.usage = UsageRepository(self._session)
        self.deployments = DeploymentRepository(self._session)
        self.limits = LimitsRepository(self._session)
        self.audit = AuditRepository(self._session)
        self.externals = ExternalRepository(self._session)
        self.demand = DemandRepository(self._session)
        self.datasets = DatasetRepository(self._session)
        self.apps = AppRepository(self._session)
        self.sessions = SessionRepository(self._session)
        self.reports = ReportRepository(self._session)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        assert self._session is not None
        self._session.rollback()
        self._session.close()
        self._session = None

    def commit(self) -> None:
        assert self._session is not None
        self._session.commit()

    def lock_scheduler(self) -> None:
        """Serialise scheduling cycles across control planes for this transaction.

        SQLite's ``BEGIN IMMEDIATE`` already holds the write lock; PostgreSQL takes a
        transaction-scoped advisory lock.
        """
        assert self._session is not None
        if self._session.get_bind().dialect.name == "postgresql":
            self._session.execute(
                text("SELECT pg_advisory_xact_lock(:k)"), {"k": SCHEDULER_LOCK_ID}
            )


class SqlUnitOfWorkFactory:
    """Makes units of work over one engine."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._factory = sessionmaker(engine, expire_on_commit=False)

    def __call__(self) -> SqlUnitOfWork:
        return SqlUnitOfWork(self._factory)
