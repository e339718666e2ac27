"""model_demand: arrival rate, service time and no-wait first token per gateway report

What the ``slo_ttft_p95_s`` autoscaling target sizes replicas with (domain/queueing.py).
model_demand holds only the last second's reports, so existing rows get the defaults.

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-07 19:00:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None

COLUMNS = ("requests_per_s", "service_s", "first_token_s")


def upgrade() -> None:
    with op.batch_alter_table("model_demand", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("requests_per_s", sa.Float(), nullable=False, server_default="0")
        )
        batch_op.add_column(sa.Column("service_s", sa.Float(), nullable=True))
        batch_op.add_column(sa.Column("first_token_s", sa.Float(), nullable=True))


def downgrade() -> None:
    # model_demand has no foreign keys: batch mode (a table copy on SQLite) is safe here.
    with op.batch_alter_table("model_demand", schema=None) as batch_op:
        for name in reversed(COLUMNS):
            batch_op.drop_column(name)
