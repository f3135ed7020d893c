"""Walrus initial schema: buckets, objects, grants, multipart uploads and parts.

Revision ID: 0001
Revises:
Create Date: 2026-11-30
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def _key() -> sa.types.TypeEngine[str]:
    # Object keys sort by UTF-8 bytes: "C" collation on PostgreSQL.
    return sa.String(length=1024).with_variant(sa.String(length=1024, collation="C"), "postgresql")


def _ts() -> sa.DateTime:
    return sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "walrus_buckets",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("name", sa.String(length=63), nullable=False),
        sa.Column("owner_id", sa.String(length=64), nullable=False),
        sa.Column("owner_name", sa.String(length=256), nullable=False),
        sa.Column("location", sa.String(length=64), nullable=False),
        sa.Column("created_at", _ts(), nullable=False),
        sa.Column("acl", sa.String(length=32), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("name"),
    )
    op.create_table(
        "walrus_objects",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("bucket_id", sa.Integer(), nullable=False),
        sa.Column("key", _key(), nullable=False),
        sa.Column("generation", sa.String(length=32), nullable=False),
        sa.Column("segments", sa.JSON(), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("etag", sa.String(length=64), nullable=False),
        sa.Column("last_modified", _ts(), nullable=False),
        sa.Column("owner_id", sa.String(length=64), nullable=False),
        sa.Column("owner_name", sa.String(length=256), nullable=False),
        sa.Column("headers", sa.JSON(), nullable=False),
        sa.Column("storage_class", sa.String(length=32), nullable=False),
        sa.Column("acl", sa.String(length=32), nullable=False),
        sa.ForeignKeyConstraint(["bucket_id"], ["walrus_buckets.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("bucket_id", "key", name="uq_walrus_objects_bucket_key"),
    )
    op.create_table(
        "walrus_uploads",
        sa.Column("upload_id", sa.String(length=64), nullable=False),
        sa.Column("bucket_id", sa.Integer(), nullable=False),
        sa.Column("key", _key(), nullable=False),
        sa.Column("initiated", _ts(), nullable=False),
        sa.Column("owner_id", sa.String(length=64), nullable=False),
        sa.Column("owner_name", sa.String(length=256), nullable=False),
        sa.Column("headers", sa.JSON(), nullable=False),
        sa.Column("storage_class", sa.String(length=32), nullable=False),
        sa.Column("acl", sa.String(length=32), nullable=False),
        sa.Column("grants", sa.JSON(), nullable=False),
        sa.ForeignKeyConstraint(["bucket_id"], ["walrus_buckets.id"]),
        sa.PrimaryKeyConstraint("upload_id"),
    )
    op.create_index(
        "ix_walrus_uploads_bucket_key", "walrus_uploads", ["bucket_id", "key", "upload_id"]
    )
    op.create_table(
        "walrus_grants",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("bucket_id", sa.Integer(), nullable=False),
        sa.Column("object_id", sa.Integer(), nullable=True),
        sa.Column("grantee_type", sa.String(length=32), nullable=False),
        sa.Column("grantee", sa.String(length=256), nullable=False),
        sa.Column("display_name", sa.String(length=256), nullable=False),
        sa.Column("permission", sa.String(length=16), nullable=False),
        sa.ForeignKeyConstraint(["bucket_id"], ["walrus_buckets.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["object_id"], ["walrus_objects.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_walrus_grants_resource", "walrus_grants", ["bucket_id", "object_id"])
    op.create_table(
        "walrus_parts",
        sa.Column("upload_id", sa.String(length=64), nullable=False),
        sa.Column("part_number", sa.Integer(), nullable=False),
        sa.Column("blob_id", sa.String(length=32), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("etag", sa.String(length=64), nullable=False),
        sa.Column("last_modified", _ts(), nullable=False),
        sa.ForeignKeyConstraint(
            ["upload_id"], ["walrus_uploads.upload_id"], ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("upload_id", "part_number"),
    )


def downgrade() -> None:
    op.drop_table("walrus_parts")
    op.drop_index("ix_walrus_grants_resource", table_name="walrus_grants")
    op.drop_table("walrus_grants")
    op.drop_index("ix_walrus_uploads_bucket_key", table_name="walrus_uploads")
    op.drop_table("walrus_uploads")
    op.drop_table("walrus_objects")
    op.drop_table("walrus_buckets")
