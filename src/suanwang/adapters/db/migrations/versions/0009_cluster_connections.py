"""cluster engine connections (Ray, Slurm, Kubernetes) and the last health check

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-07 06:40:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # existing (local and simulated) clusters get no connection and "never checked"
    with op.batch_alter_table("clusters", schema=None) as batch_op:
        batch_op.add_column(sa.Column("connection", sa.JSON(), nullable=True))
        batch_op.add_column(sa.Column("health_ok", sa.Boolean(), nullable=True))
        batch_op.add_column(
            sa.Column("health_reason", sa.Text(), server_default="", nullable=False)
        )
        batch_op.add_column(sa.Column("health_checked_at", sa.Float(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("clusters", schema=None) as batch_op:
        batch_op.drop_column("health_checked_at")
        batch_op.drop_column("health_reason")
        batch_op.drop_column("health_ok")
        batch_op.drop_column("connection")
