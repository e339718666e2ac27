"""autoscaling settings and memory on deployments, replica drains, gateway demand reports

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-07 15:00:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # existing deployments keep a fixed replica count (no autoscale settings)
    with op.batch_alter_table("deployments", schema=None) as batch_op:
        batch_op.add_column(sa.Column("autoscale", sa.JSON(), nullable=True))
        batch_op.add_column(sa.Column("scale_memory", sa.JSON(), nullable=True))
    with op.batch_alter_table("replicas", schema=None) as batch_op:
        batch_op.add_column(sa.Column("drain_started_at", sa.Float(), nullable=True))
    op.create_table(
        "model_demand",
        sa.Column("gateway", sa.String(length=64), nullable=False),
        sa.Column("deployment", sa.String(length=32), nullable=False),
        sa.Column("at", sa.Float(), nullable=False),
        sa.Column("inflight", sa.Integer(), nullable=False),
        sa.Column("queued", sa.Integer(), nullable=False),
        sa.Column("tokens_per_s", sa.Float(), nullable=False),
        sa.Column("ttft_p95_s", sa.Float(), nullable=True),
        sa.Column("last_request_at", sa.Float(), nullable=True),
        sa.Column("routed_at", sa.Float(), nullable=False),
        sa.Column("replica_inflight", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("gateway", "deployment"),
    )
    op.create_index("ix_model_demand_at", "model_demand", ["at"])


def downgrade() -> None:
    op.drop_index("ix_model_demand_at", table_name="model_demand")
    op.drop_table("model_demand")
    with op.batch_alter_table("replicas", schema=None) as batch_op:
        batch_op.drop_column("drain_started_at")
    with op.batch_alter_table("deployments", schema=None) as batch_op:
        batch_op.drop_column("scale_memory")
        batch_op.drop_column("autoscale")
