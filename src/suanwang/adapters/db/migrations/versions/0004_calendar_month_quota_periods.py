"""calendar-month quota periods

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-25 22:30:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # existing limits keep their fixed windows of period_s
    with op.batch_alter_table("tenant_limits", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("period", sa.String(length=16), server_default="seconds", nullable=False)
        )


def downgrade() -> None:
    with op.batch_alter_table("tenant_limits", schema=None) as batch_op:
        batch_op.drop_column("period")
