"""External endpoint rows (the deployment row of each lives in ``deployments``)."""

from __future__ import annotations

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from suanwang.adapters.db.tables import ExternalEndpointRow
from suanwang.domain.changes import changed_fields
from suanwang.domain.external import ExternalChange, ExternalEndpoint, HealthCheck
from suanwang.domain.serving import ModelKind, TokenPrice


class ExternalRepository:
    """:class:`~suanwang.ports.ExternalStore` inside one unit of work."""

    def __init__(self, session: Session) -> None:
        self._s = session

    def add(self, endpoint: ExternalEndpoint) -> None:
        e = endpoint
        self._s.add(
            ExternalEndpointRow(
                deployment=e.deployment,
                base_url=e.base_url,
                upstream_model=e.upstream_model,
                health=e.health.value,
                kind=e.kind.value,
                input_per_million=e.price.input_per_million,
                output_per_million=e.price.output_per_million,
                allow_private_network=e.allow_private_network,
                credential=e.sealed_credential,
                created_at=e.created_at,
                updated_at=e.updated_at,
            )
        )
        self._s.flush()

    def get(self, deployment_id: str) -> ExternalEndpoint | None:
        row = self._s.get(ExternalEndpointRow, deployment_id)
        return None if row is None else _endpoint(row)

    def all(self) -> list[ExternalEndpoint]:
        rows = self._s.scalars(select(ExternalEndpointRow).order_by(ExternalEndpointRow.deployment))
        return [_endpoint(r) for r in rows]

    def update(self, deployment_id: str, now: float, change: ExternalChange) -> None:
        values: dict[str, object] = {}
        for name, value in changed_fields(change).items():
            if name == "price":
                assert isinstance(value, TokenPrice)
                values["input_per_million"] = value.input_per_million
                values["output_per_million"] = value.output_per_million
            elif name == "sealed_credential":
                values["credential"] = value
            elif isinstance(value, HealthCheck):
                values[name] = value.value
            else:
                values[name] = value
        query = update(ExternalEndpointRow).where(ExternalEndpointRow.deployment == deployment_id)
        self._s.execute(query.values(updated_at=now, **values))


def _endpoint(row: ExternalEndpointRow) -> ExternalEndpoint:
    return ExternalEndpoint(
        deployment=row.deployment,
        base_url=row.base_url,
        upstream_model=row.upstream_model,
        health=HealthCheck(row.health),
        kind=ModelKind(row.kind),
        price=TokenPrice(row.input_per_million, row.output_per_million),
        allow_private_network=row.allow_private_network,
        sealed_credential=row.credential,
        created_at=row.created_at,
        updated_at=row.updated_at,
    )
