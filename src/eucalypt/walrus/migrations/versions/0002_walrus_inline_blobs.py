"""Small objects' bytes in the database: walrus_inline_blobs.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-30
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "walrus_inline_blobs",
        sa.Column("blob_id", sa.String(length=40), nullable=False),
        sa.Column("data", sa.LargeBinary(), nullable=False),
        sa.PrimaryKeyConstraint("blob_id"),
    )


def downgrade() -> None:
    op.drop_table("walrus_inline_blobs")
