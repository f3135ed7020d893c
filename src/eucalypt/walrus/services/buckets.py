"""Buckets: naming rules, create/delete/list, and the bucket's ACL."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, bindparam, delete, exists, insert, select, update
from sqlalchemy.exc import IntegrityError

from eucalypt.walrus import errors
from eucalypt.walrus.models import Bucket, Grant, MultipartUpload, Object, Part, utcnow
from eucalypt.walrus.security import Acl, GrantSpec, Principal
from eucalypt.walrus.services import Context, new_id

_NAME = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
_IP = re.compile(r"^\d{1,3}\.\d{1,3}\.\d{1,3}\.\d{1,3}$")


def validate_bucket_name(name: str) -> None:
    """S3's rules for new buckets (the DNS-compatible ones)."""
    if (
        not _NAME.match(name)
        or ".." in name
        or ".-" in name
        or "-." in name
        or _IP.match(name)
        or name.startswith(("xn--", "sthree-"))
        or name.endswith(("-s3alias", "--ol-s3"))
    ):
        raise errors.InvalidBucketName(BucketName=name)


@dataclass(frozen=True)
class BucketView:
    id: int
    name: str
    owner_id: str
    owner_name: str
    location: str
    created_at: datetime
    acl: Acl


def load_grants(conn: Connection, bucket_id: int, object_id: int | None
                ) -> tuple[GrantSpec, ...]:
    cond = Grant.object_id.is_(None) if object_id is None else Grant.object_id == object_id
    rows = conn.execute(
        select(Grant.grantee_type, Grant.grantee, Grant.permission, Grant.display_name)
        .where(Grant.bucket_id == bucket_id, cond).order_by(Grant.id)
    )
    return tuple(GrantSpec(*row) for row in rows)


def store_grants(conn: Connection, bucket_id: int, object_id: int | None,
                 grants: list[GrantSpec]) -> None:
    """Replace the explicit grants of a bucket (``object_id`` None) or an object."""
    cond = Grant.object_id.is_(None) if object_id is None else Grant.object_id == object_id
    conn.execute(delete(Grant).where(Grant.bucket_id == bucket_id, cond))
    if grants:
        conn.execute(insert(Grant), [
            {"bucket_id": bucket_id, "object_id": object_id, "grantee_type": g.grantee_type,
             "grantee": g.grantee, "display_name": g.display_name, "permission": g.permission}
            for g in grants])


def _view(conn: Connection, row: Any) -> BucketView:
    grants = load_grants(conn, row.id, None) if row.acl == "custom" else ()
    acl = Acl(row.owner_id, row.owner_name, row.acl, grants, row.owner_id)
    return BucketView(row.id, row.name, row.owner_id, row.owner_name, row.location,
                      row.created_at, acl)


# Built once: on every object request.
_BY_NAME = select(*Bucket.__table__.c).where(Bucket.__table__.c.name == bindparam("name"))


def get_bucket_sync(conn: Connection, name: str) -> BucketView:
    row = conn.execute(_BY_NAME, {"name": name}).one_or_none()
    if row is None:
        raise errors.NoSuchBucket(BucketName=name)
    return _view(conn, row)


async def get_bucket(ctx: Context, name: str) -> BucketView:
    """The bucket ``name`` (from ``ctx.buckets`` if read recently), or NoSuchBucket."""
    view: BucketView | None = ctx.buckets.get(name)
    if view is None:
        generation = ctx.buckets.generation
        view = await ctx.read(lambda s: get_bucket_sync(s, name))
        ctx.buckets.put(name, view, generation)
    return view


async def create_bucket(ctx: Context, name: str, principal: Principal, location: str,
                        acl: tuple[str, list[GrantSpec]]) -> None:
    validate_bucket_name(name)
    canned, grants = acl

    def work(conn: Connection) -> None:
        owner = conn.execute(select(Bucket.owner_id).where(Bucket.name == name)).one_or_none()
        if owner is not None:
            if owner[0] == principal.account_id:
                raise errors.BucketAlreadyOwnedByYou(BucketName=name)
            raise errors.BucketAlreadyExists(BucketName=name)
        inserted = conn.execute(insert(Bucket).values(
            name=name, owner_id=principal.account_id, owner_name=principal.display_name,
            location=location, acl=canned, created_at=utcnow()))
        if canned == "custom":
            store_grants(conn, new_id(inserted.inserted_primary_key), None, grants)

    try:
        await ctx.write(work)
    except IntegrityError as exc:  # a concurrent create of the same name won
        other = await ctx.read(lambda s: get_bucket_sync(s, name))
        if other.owner_id == principal.account_id:
            raise errors.BucketAlreadyOwnedByYou(BucketName=name) from exc
        raise errors.BucketAlreadyExists(BucketName=name) from exc


async def delete_bucket(ctx: Context, bucket: BucketView) -> None:
    """Delete an empty bucket; its unfinished multipart uploads go with it."""

    def work(conn: Connection) -> list[str]:
        if conn.scalar(select(exists().where(Object.bucket_id == bucket.id))):
            raise errors.BucketNotEmpty(BucketName=bucket.name)
        uploads = select(MultipartUpload.upload_id).where(MultipartUpload.bucket_id == bucket.id)
        blobs = list(conn.scalars(select(Part.blob_id).where(Part.upload_id.in_(uploads))))
        conn.execute(delete(Part).where(Part.upload_id.in_(uploads)))
        conn.execute(delete(MultipartUpload).where(MultipartUpload.bucket_id == bucket.id))
        conn.execute(delete(Grant).where(Grant.bucket_id == bucket.id))
        conn.execute(delete(Bucket).where(Bucket.id == bucket.id))
        return blobs

    try:
        blobs = await ctx.write(work)
    except IntegrityError as exc:  # an object arrived meanwhile
        raise errors.BucketNotEmpty(BucketName=bucket.name) from exc
    finally:
        ctx.buckets.invalidate()
    await ctx.delete_blobs(blobs)


async def list_buckets(ctx: Context, principal: Principal) -> list[BucketView]:
    def work(conn: Connection) -> list[BucketView]:
        rows = conn.execute(
            select(*Bucket.__table__.c).where(Bucket.owner_id == principal.account_id)
            .order_by(Bucket.name)
        ).all()
        return [_view(conn, r) for r in rows]

    return await ctx.read(work)


async def set_bucket_acl(ctx: Context, bucket: BucketView, canned: str,
                         grants: list[GrantSpec]) -> None:
    def work(conn: Connection) -> None:
        result = conn.execute(update(Bucket).where(Bucket.id == bucket.id).values(acl=canned))
        if result.rowcount != 1:
            raise errors.NoSuchBucket(BucketName=bucket.name)
        store_grants(conn, bucket.id, None, grants if canned == "custom" else [])

    try:
        await ctx.write(work)
    finally:
        ctx.buckets.invalidate()
