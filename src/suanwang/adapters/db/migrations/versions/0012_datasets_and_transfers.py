"""datasets with replicas per region, transfers, transfer agents, storage quota and metering

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-07 18:30:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "datasets",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("tenant", sa.String(length=64), nullable=False),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("format", sa.String(length=16), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("size_bytes", sa.BigInteger(), nullable=False),
        sa.Column("manifest", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.Column("sealed_at", sa.Float(), nullable=True),
        sa.Column("deleted_at", sa.Float(), nullable=True),
        sa.Column("metered_to", sa.Float(), nullable=True),
        sa.ForeignKeyConstraint(["tenant"], ["tenants.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_datasets_tenant", "datasets", ["tenant"])
    op.create_index(
        "uq_datasets_tenant_name_live",
        "datasets",
        ["tenant", "name"],
        unique=True,
        sqlite_where=sa.text("deleted_at IS NULL"),
        postgresql_where=sa.text("deleted_at IS NULL"),
    )
    op.create_table(
        "dataset_replicas",
        sa.Column("dataset", sa.String(length=32), nullable=False),
        sa.Column("region", sa.String(length=64), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("path", sa.Text(), nullable=False),
        sa.Column("updated_at", sa.Float(), nullable=False),
        sa.ForeignKeyConstraint(["dataset"], ["datasets.id"]),
        sa.PrimaryKeyConstraint("dataset", "region"),
    )
    op.create_table(
        "transfers",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("dataset", sa.String(length=32), nullable=False),
        sa.Column("source_region", sa.String(length=64), nullable=False),
        sa.Column("target_region", sa.String(length=64), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("bytes_total", sa.BigInteger(), nullable=False),
        sa.Column("bytes_done", sa.BigInteger(), nullable=False),
        sa.Column("rate_bytes_per_s", sa.Float(), nullable=False),
        sa.Column("eta_s", sa.Float(), nullable=True),
        sa.Column("error", sa.Text(), nullable=False),
        sa.Column("chunks_resent", sa.Integer(), nullable=False),
        sa.Column("started_at", sa.Float(), nullable=False),
        sa.Column("ended_at", sa.Float(), nullable=True),
        sa.ForeignKeyConstraint(["dataset"], ["datasets.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_transfers_dataset", "transfers", ["dataset"])
    op.create_index("ix_transfers_state", "transfers", ["state"])
    op.create_table(
        "agents",
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("region", sa.String(length=64), nullable=False),
        sa.Column("address", sa.String(length=256), nullable=False),
        sa.Column("cert_serial", sa.String(length=64), nullable=False),
        sa.Column("cert_not_after", sa.Float(), nullable=False),
        sa.Column("registered_at", sa.Float(), nullable=False),
        sa.Column("rotated_at", sa.Float(), nullable=True),
        sa.PrimaryKeyConstraint("name"),
    )
    op.create_index("ix_agents_region", "agents", ["region"])
    # plain ADD COLUMN (no batch copy: foreign keys of other tables point at tenants)
    op.add_column("tenants", sa.Column("storage_quota_bytes", sa.BigInteger(), nullable=True))
    op.add_column(
        "usage_ledger",
        sa.Column("byte_s", sa.BigInteger(), nullable=False, server_default="0"),
    )


def downgrade() -> None:
    # plain DROP COLUMN, as 0011's downgrade: a batch table copy is refused by foreign keys
    op.execute("ALTER TABLE usage_ledger DROP COLUMN byte_s")
    op.execute("ALTER TABLE tenants DROP COLUMN storage_quota_bytes")
    op.drop_index("ix_agents_region", table_name="agents")
    op.drop_table("agents")
    op.drop_index("ix_transfers_state", table_name="transfers")
    op.drop_index("ix_transfers_dataset", table_name="transfers")
    op.drop_table("transfers")
    op.drop_table("dataset_replicas")
    op.drop_index("uq_datasets_tenant_name_live", table_name="datasets")
    op.drop_index("ix_datasets_tenant", table_name="datasets")
    op.drop_table("datasets")
