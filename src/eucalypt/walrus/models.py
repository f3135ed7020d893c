"""Walrus metadata (SQLAlchemy 2 models). Bytes live in the blob store, except
small objects' (``walrus_inline_blobs``, see ``inline.py``).

Tables are prefixed ``walrus_`` so Walrus may share a database with the CLC.
Schema changes go through ``eucalypt/walrus/migrations`` (Alembic, version
table ``alembic_version_walrus``).

Keys sort by UTF-8 bytes (S3's order): SQLite's default BINARY collation does
that for TEXT; on PostgreSQL the key columns use the ``"C"`` collation.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    TypeDecorator,
    UniqueConstraint,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


def utcnow() -> datetime:
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """A timezone-aware UTC datetime on every backend (SQLite stores it naive)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is not None and value.tzinfo is not None:
            value = value.astimezone(UTC)
            if dialect.name == "sqlite":
                value = value.replace(tzinfo=None)
        return value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is not None and value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        return value


def key_type() -> Any:
    """An object key column: up to 1024 UTF-8 bytes, compared bytewise."""
    return String(1024).with_variant(String(1024, collation="C"), "postgresql")


class Base(DeclarativeBase):
    type_annotation_map = {dict[str, Any]: JSON, list[Any]: JSON}


class Bucket(Base):
    __tablename__ = "walrus_buckets"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(63), unique=True)
    owner_id: Mapped[str] = mapped_column(String(64))  # account id
    owner_name: Mapped[str] = mapped_column(String(256), default="")
    location: Mapped[str] = mapped_column(String(64), default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    # Canned ACL name, or "custom" when the grants live in walrus_grants.
    acl: Mapped[str] = mapped_column(String(32), default="private")


class Object(Base):
    """The current version of a key. ``segments`` lists the blobs holding its bytes.

    A simple PUT yields one segment; a completed multipart upload keeps its part
    blobs as segments (no copy). ``generation`` changes on every write: writers
    swap rows with compare-and-set on it instead of taking locks.
    """

    __tablename__ = "walrus_objects"
    __table_args__ = (UniqueConstraint("bucket_id", "key", name="uq_walrus_objects_bucket_key"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    bucket_id: Mapped[int] = mapped_column(ForeignKey("walrus_buckets.id"))
    key: Mapped[str] = mapped_column(key_type())
    generation: Mapped[str] = mapped_column(String(32))
    # [[blob_id, size], ...] in order; an "inline:..." id is in walrus_inline_blobs.
    segments: Mapped[list[Any]] = mapped_column(JSON)
    size: Mapped[int] = mapped_column(BigInteger)
    etag: Mapped[str] = mapped_column(String(64))
    last_modified: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    owner_id: Mapped[str] = mapped_column(String(64))
    owner_name: Mapped[str] = mapped_column(String(256), default="")
    # Content-Type, Content-Encoding, ..., and x-amz-meta-* as sent (lower-cased names).
    headers: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    storage_class: Mapped[str] = mapped_column(String(32), default="STANDARD")
    acl: Mapped[str] = mapped_column(String(32), default="private")


class InlineBlob(Base):
    """The bytes of a small object (an ``inline:`` segment), written with its row."""

    __tablename__ = "walrus_inline_blobs"

    blob_id: Mapped[str] = mapped_column(String(40), primary_key=True)
    data: Mapped[bytes] = mapped_column(LargeBinary)


class Grant(Base):
    """One explicit ACL grant; only for resources whose ``acl`` is ``"custom"``.

    ``object_id`` is NULL for a bucket's own grants. ``grantee_type`` is
    ``CanonicalUser`` (``grantee`` = canonical id) or ``Group`` (URI).
    """

    __tablename__ = "walrus_grants"
    __table_args__ = (Index("ix_walrus_grants_resource", "bucket_id", "object_id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    bucket_id: Mapped[int] = mapped_column(ForeignKey("walrus_buckets.id", ondelete="CASCADE"))
    object_id: Mapped[int | None] = mapped_column(
        ForeignKey("walrus_objects.id", ondelete="CASCADE"), nullable=True
    )
    grantee_type: Mapped[str] = mapped_column(String(32))
    grantee: Mapped[str] = mapped_column(String(256))
    display_name: Mapped[str] = mapped_column(String(256), default="")
    permission: Mapped[str] = mapped_column(String(16))


class MultipartUpload(Base):
    __tablename__ = "walrus_uploads"
    __table_args__ = (Index("ix_walrus_uploads_bucket_key", "bucket_id", "key", "upload_id"),)

    upload_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    bucket_id: Mapped[int] = mapped_column(ForeignKey("walrus_buckets.id"))
    key: Mapped[str] = mapped_column(key_type())
    initiated: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    owner_id: Mapped[str] = mapped_column(String(64))
    owner_name: Mapped[str] = mapped_column(String(256), default="")
    headers: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    storage_class: Mapped[str] = mapped_column(String(32), default="STANDARD")
    acl: Mapped[str] = mapped_column(String(32), default="private")
    # Explicit grants given at creation (x-amz-grant-*), applied on completion.
    grants: Mapped[list[Any]] = mapped_column(JSON, default=list)


class Part(Base):
    __tablename__ = "walrus_parts"

    upload_id: Mapped[str] = mapped_column(
        ForeignKey("walrus_uploads.upload_id", ondelete="CASCADE"), primary_key=True
    )
    part_number: Mapped[int] = mapped_column(Integer, primary_key=True)
    blob_id: Mapped[str] = mapped_column(String(32))
    size: Mapped[int] = mapped_column(BigInteger)
    etag: Mapped[str] = mapped_column(String(64))
    last_modified: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
