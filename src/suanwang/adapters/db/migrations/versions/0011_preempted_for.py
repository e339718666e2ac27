"""jobs.preempted_for: the job a stopping job stops for, as a column

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-07 16:00:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # A job stopping when this runs keeps preempted_for NULL: the snapshot then treats it
    # as stopping for itself (its cards go to whoever comes first once it has stopped).
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.add_column(sa.Column("preempted_for", sa.String(length=32), nullable=True))


def downgrade() -> None:
    # A plain DROP COLUMN (SQLite >= 3.35 has it): batch mode would copy the jobs table
    # and drop the old one, which foreign keys from attempts and events refuse.
    op.execute("ALTER TABLE jobs DROP COLUMN preempted_for")
