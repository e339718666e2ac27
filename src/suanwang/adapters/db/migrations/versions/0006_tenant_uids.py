"""tenant uids for sandboxed local runs

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-07 01:00:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # tenants get a uid on their first local run (services/identities.py); none exist yet
    op.create_table(
        "tenant_uids",
        sa.Column("tenant", sa.String(length=64), nullable=False),
        sa.Column("uid", sa.Integer(), nullable=False),
        sa.Column("allocated_at", sa.Float(), nullable=False),
        sa.ForeignKeyConstraint(["tenant"], ["tenants.id"]),
        sa.PrimaryKeyConstraint("tenant"),
        sa.UniqueConstraint("uid"),
    )


def downgrade() -> None:
    op.drop_table("tenant_uids")
