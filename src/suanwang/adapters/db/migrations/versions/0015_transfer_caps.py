"""Bandwidth caps: a tenant's cap per transfer, the operator's cap per WAN link

``transfers.max_bytes_per_s`` (``data copy --max-rate``) and
``wan_links.transfer_cap_bytes_per_s`` (the fleet file's ``transfer_cap``); both nullable,
null meaning uncapped, so existing rows need no default.

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-07 21:30:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("transfers", schema=None) as batch_op:
        batch_op.add_column(sa.Column("max_bytes_per_s", sa.Float(), nullable=True))
    with op.batch_alter_table("wan_links", schema=None) as batch_op:
        batch_op.add_column(sa.Column("transfer_cap_bytes_per_s", sa.Float(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("wan_links", schema=None) as batch_op:
        batch_op.drop_column("transfer_cap_bytes_per_s")
    with op.batch_alter_table("transfers", schema=None) as batch_op:
        batch_op.drop_column("max_bytes_per_s")
