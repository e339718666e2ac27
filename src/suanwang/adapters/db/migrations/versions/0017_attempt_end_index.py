"""attempts.ended_at index: the utilisation view reads only attempts overlapping a window

Revision ID: 0017
Revises: 0016
Create Date: 2026-12-08 00:50:00.000000
"""

from __future__ import annotations

from alembic import op

revision = "0017"
down_revision = "0016"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_attempts_ended_at", "attempts", ["ended_at"])


def downgrade() -> None:
    op.drop_index("ix_attempts_ended_at", table_name="attempts")
