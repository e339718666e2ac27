"""external OpenAI-compatible endpoints as deployments

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-07 04:00:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # one row per external deployment; credential holds Fernet ciphertext (adapters/crypto.py)
    op.create_table(
        "external_endpoints",
        sa.Column("deployment", sa.String(length=32), nullable=False),
        sa.Column("base_url", sa.String(length=256), nullable=False),
        sa.Column("upstream_model", sa.String(length=128), nullable=True),
        sa.Column("health", sa.String(length=16), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("input_per_million", sa.BigInteger(), nullable=False),
        sa.Column("output_per_million", sa.BigInteger(), nullable=False),
        sa.Column("allow_private_network", sa.Boolean(), nullable=False),
        sa.Column("credential", sa.Text(), nullable=True),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.Column("updated_at", sa.Float(), nullable=False),
        sa.ForeignKeyConstraint(["deployment"], ["deployments.id"]),
        sa.PrimaryKeyConstraint("deployment"),
    )


def downgrade() -> None:
    op.drop_table("external_endpoints")
