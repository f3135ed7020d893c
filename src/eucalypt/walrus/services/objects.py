"""Objects: commit new versions without locks, look up, open for reading, delete, copy.

Concurrency: a writer streams its bytes into its own blob, then swaps the
object's row with compare-and-set on ``generation`` (insert when absent),
retrying if another writer committed in between. The last commit wins; each
writer's answer is the MD5 of what *it* stored. The blobs of the replaced
version are deleted only after the swap committed, and a reader that opened
them first still reads them whole (open files survive unlink).
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, TypeVar

from sqlalchemy import Connection, delete, insert, select, update
from sqlalchemy.exc import IntegrityError, SQLAlchemyError

from eucalypt.walrus import errors
from eucalypt.walrus.models import Bucket, Object, utcnow
from eucalypt.walrus.security import Acl, GrantSpec, Principal
from eucalypt.walrus.services import Context, new_id
from eucalypt.walrus.services.buckets import (
    BucketView,
    get_bucket_sync,
    load_grants,
    store_grants,
)
from eucalypt.walrus.storage import BlobReader, BlobStore
from eucalypt.walrus.upload import StoredBlob

ATTEMPTS = 20
T = TypeVar("T")


class _Conflict(Exception):
    """Another writer changed the row between our read and our write."""


@dataclass(frozen=True)
class ObjectView:
    id: int
    key: str
    generation: str
    segments: list[list[Any]]
    size: int
    etag: str
    last_modified: datetime
    owner_id: str
    owner_name: str
    headers: dict[str, str]
    storage_class: str
    acl: Acl


@dataclass
class NewObject:
    """What a writer commits: the bytes (as blob segments) and their metadata."""

    segments: list[list[Any]]
    size: int
    etag: str
    owner: Principal
    headers: dict[str, str] = field(default_factory=dict)
    storage_class: str = "STANDARD"
    acl: str = "private"
    grants: list[GrantSpec] = field(default_factory=list)

    @classmethod
    def from_blob(cls, blob: StoredBlob, owner: Principal, **kw: Any) -> NewObject:
        return cls(segments=[[blob.blob_id, blob.size]], size=blob.size, etag=blob.etag,
                   owner=owner, **kw)


def _view(conn: Connection, row: Any, bucket: BucketView) -> ObjectView:
    grants = load_grants(conn, bucket.id, row.id) if row.acl == "custom" else ()
    acl = Acl(row.owner_id, row.owner_name, row.acl, grants, bucket.owner_id)
    return ObjectView(row.id, row.key, row.generation, row.segments, row.size, row.etag,
                      row.last_modified, row.owner_id, row.owner_name, dict(row.headers or {}),
                      row.storage_class, acl)


def lookup_sync(conn: Connection, bucket: BucketView, key: str) -> ObjectView | None:
    # Core rows, not ORM instances: this is on every GET and HEAD.
    row = conn.execute(
        select(*Object.__table__.c).where(Object.bucket_id == bucket.id, Object.key == key)
    ).one_or_none()
    return None if row is None else _view(conn, row, bucket)


async def get_object(ctx: Context, bucket: BucketView, key: str) -> ObjectView:
    view = await ctx.read(lambda s: lookup_sync(s, bucket, key))
    if view is None:
        raise errors.NoSuchKey(Key=key)
    return view


def _swap(conn: Connection, bucket: BucketView, key: str, new: NewObject,
          precondition: Callable[[str | None], None] | None = None) -> list[list[Any]]:
    row = conn.execute(
        select(Object.id, Object.generation, Object.segments, Object.acl, Object.etag)
        .where(Object.bucket_id == bucket.id, Object.key == key)
    ).one_or_none()
    if precondition is not None:  # conditional write: sees the version it replaces
        precondition(row.etag if row is not None else None)
    values: dict[str, Any] = {
        "generation": uuid.uuid4().hex, "segments": new.segments, "size": new.size,
        "etag": new.etag, "last_modified": utcnow(), "owner_id": new.owner.account_id,
        "owner_name": new.owner.display_name, "headers": new.headers,
        "storage_class": new.storage_class, "acl": new.acl,
    }
    if row is None:
        inserted = conn.execute(insert(Object).values(bucket_id=bucket.id, key=key, **values))
        object_id, old = new_id(inserted.inserted_primary_key), []
    else:
        result = conn.execute(
            update(Object)
            .where(Object.id == row.id, Object.generation == row.generation)
            .values(**values)
        )
        if result.rowcount != 1:
            raise _Conflict()
        object_id, old = row.id, list(row.segments)
    if new.acl == "custom" or (row is not None and row.acl == "custom"):
        store_grants(conn, bucket.id, object_id, new.grants if new.acl == "custom" else [])
    return old


async def commit_object(ctx: Context, bucket: BucketView, key: str, new: NewObject,
                        precondition: Callable[[str | None], None] | None = None) -> None:
    """Make ``new`` the current version of ``key``; delete the replaced blobs afterwards.

    ``precondition(current etag or None)`` runs in the commit's transaction and may raise
    (If-Match / If-None-Match on PUT).

    When the commit certainly failed, the new blobs are deleted too. (On anything
    else, e.g. cancellation, they stay: the commit may still have happened, and
    an unreferenced blob is reclaimed by the startup sweep.)
    """
    try:
        old = await _retry(ctx, bucket, lambda s: _swap(s, bucket, key, new, precondition))
    except (errors.S3Error, SQLAlchemyError):
        await ctx.delete_blobs([seg[0] for seg in new.segments])
        raise
    await ctx.delete_blobs([seg[0] for seg in old])


async def _retry(ctx: Context, bucket: BucketView, fn: Callable[[Connection], T]) -> T:
    """Run a write transaction, again if it lost a race (compare-and-set or unique key)."""
    for _ in range(ATTEMPTS):
        try:
            return await ctx.write(fn)
        except _Conflict:
            continue
        except IntegrityError:
            # Either a concurrent insert of the same key (retry) or the bucket is gone.
            alive = await ctx.read(lambda c: c.scalar(
                select(Bucket.id).where(Bucket.id == bucket.id)) is not None)
            if not alive:
                raise errors.NoSuchBucket(BucketName=bucket.name) from None
    raise errors.OperationAborted()


def _delete_sync(conn: Connection, bucket_id: int, key: str) -> list[str]:
    for _ in range(ATTEMPTS):
        row = conn.execute(
            select(Object.id, Object.generation, Object.segments)
            .where(Object.bucket_id == bucket_id, Object.key == key)
        ).one_or_none()
        if row is None:
            return []
        result = conn.execute(
            delete(Object).where(Object.id == row.id, Object.generation == row.generation)
        )
        if result.rowcount == 1:
            return [seg[0] for seg in row.segments]
    raise errors.OperationAborted()


async def delete_object(ctx: Context, bucket: BucketView, key: str) -> None:
    blobs = await ctx.write(lambda s: _delete_sync(s, bucket.id, key))
    await ctx.delete_blobs(blobs)


async def delete_objects(ctx: Context, bucket: BucketView, keys: list[str]) -> None:
    def work(conn: Connection) -> list[str]:
        blobs: list[str] = []
        for key in keys:
            blobs += _delete_sync(conn, bucket.id, key)
        return blobs

    await ctx.delete_blobs(await ctx.write(work))


# -- reading -------------------------------------------------------------------


class OpenObject:
    """An object's blobs, all opened up front so a concurrent overwrite cannot tear a read."""

    def __init__(self, view: ObjectView, readers: list[BlobReader]) -> None:
        self.view = view
        self.readers = readers
        self.offsets: list[int] = []
        pos = 0
        for seg in view.segments:
            self.offsets.append(pos)
            pos += int(seg[1])

    def read(self, pos: int, size: int) -> bytes:
        """Read up to ``size`` bytes at ``pos``, never crossing a segment boundary."""
        lo, hi = 0, len(self.offsets) - 1
        while lo < hi:  # last segment starting at or before pos
            mid = (lo + hi + 1) // 2
            if self.offsets[mid] <= pos:
                lo = mid
            else:
                hi = mid - 1
        seg_size = int(self.view.segments[lo][1])
        inner = pos - self.offsets[lo]
        n = min(size, seg_size - inner)
        data = self.readers[lo].read_at(inner, n)
        if len(data) != n:
            raise OSError(f"blob {self.view.segments[lo][0]} is shorter than recorded")
        return data

    def close(self) -> None:
        for reader in self.readers:
            reader.close()
        self.readers = []


def _open_all(store: BlobStore, segments: list[list[Any]]) -> list[BlobReader]:
    readers: list[BlobReader] = []
    try:
        for seg in segments:
            readers.append(store.open(seg[0]))
    except BaseException:
        for r in readers:
            r.close()
        raise
    return readers


def _lookup_and_open(ctx: Context, bucket_name: str, bucket: BucketView | None,
                     key: str) -> tuple[BucketView, OpenObject | None]:
    """One worker-thread trip: the rows, then the blobs (retried if an overwrite removed them)."""
    for _ in range(ATTEMPTS):
        def work(conn: Connection) -> tuple[BucketView, ObjectView | None]:
            b = bucket or get_bucket_sync(conn, bucket_name)
            return b, lookup_sync(conn, b, key)

        found, view = ctx.run(work)
        if view is None:
            return found, None
        try:
            return found, OpenObject(view, _open_all(ctx.store, view.segments))
        except FileNotFoundError:
            continue
    raise errors.InternalError("The object kept changing while being opened")


async def open_object(ctx: Context, bucket: BucketView, key: str) -> OpenObject:
    """Look the key up and open its blobs (NoSuchKey when absent)."""
    _, opened = await ctx.io(_lookup_and_open, ctx, bucket.name, bucket, key)
    if opened is None:
        raise errors.NoSuchKey(Key=key)
    return opened


async def open_by_name(ctx: Context, bucket_name: str, key: str
                       ) -> tuple[BucketView, OpenObject | None]:
    """Bucket and object in one trip (GET/HEAD): NoSuchBucket, or the object if it exists."""
    return await ctx.io(_lookup_and_open, ctx, bucket_name, None, key)


def copy_range(store: BlobStore, src: OpenObject, start: int, length: int,
               known_md5: bytes | None) -> StoredBlob:
    """Copy ``length`` bytes of ``src`` from ``start`` into a new committed blob (in a thread)."""
    writer = store.create()
    try:
        md5 = hashlib.md5()
        pos, end = start, start + length
        if known_md5 is not None and len(src.readers) == 1:
            writer.copy_from(src.readers[0], start, length)
        else:
            while pos < end:
                data = src.read(pos, min(1 << 20, end - pos))
                md5.update(data)
                writer.write(data)
                pos += len(data)
        writer.commit()
    except BaseException:
        writer.abort()
        raise
    return StoredBlob(writer.blob_id, length, known_md5 or md5.digest())
