"""placement hints left by reallocation moves

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-07 05:00:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # the pool (cluster, chip) a moved job is to be admitted on, for hint_cycles more cycles
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.add_column(sa.Column("hint_cluster", sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column("hint_chip", sa.String(length=64), nullable=True))
        batch_op.add_column(
            sa.Column("hint_cycles", sa.Integer(), server_default="0", nullable=False)
        )


def downgrade() -> None:
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.drop_column("hint_cycles")
        batch_op.drop_column("hint_chip")
        batch_op.drop_column("hint_cluster")
