"""Objects: commit new versions without locks, look up, open for reading, delete, copy.

Concurrency: a writer streams its bytes into its own blob, then swaps the
object's row with compare-and-set on ``generation`` (insert when absent),
retrying if another writer committed in between. The last commit wins; each
writer's answer is the MD5 of what *it* stored. The blob files of the
replaced version are released (``Context.delete_blobs``) only after the swap
committed, and a reader that opened them first still reads them whole (open
files survive unlink and rename). Inline blobs (``inline.py``) are written
and deleted inside the swap's own transaction; a reader fetches them with
the row and keeps them in memory.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, TypeVar, cast

from sqlalchemy import Connection, Table, bindparam, delete, insert, select, update
from sqlalchemy.exc import IntegrityError, SQLAlchemyError

from eucalypt.walrus import errors, inline
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

# The hot statements, built once: building (and cache-keying) a statement per
# call costs several times what SQLite takes to run it.
_OBJECTS = cast(Table, Object.__table__)
_BY_KEY = (_OBJECTS.c.bucket_id == bindparam("b_id"), _OBJECTS.c.key == bindparam("k"))
_LOOKUP = select(*_OBJECTS.c).where(*_BY_KEY)
_CURRENT = select(_OBJECTS.c.id, _OBJECTS.c.generation, _OBJECTS.c.segments,
                  _OBJECTS.c.acl, _OBJECTS.c.etag).where(*_BY_KEY)
_INSERT = insert(_OBJECTS)
_SWAP = update(_OBJECTS).where(_OBJECTS.c.id == bindparam("o_id"),
                               _OBJECTS.c.generation == bindparam("o_gen"))
_DELETE = delete(_OBJECTS).where(_OBJECTS.c.id == bindparam("o_id"),
                                 _OBJECTS.c.generation == bindparam("o_gen"))


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
    # The bytes of an inline blob (the only segment), written with the row.
    inline: bytes | None = None

    @classmethod
    def from_blob(cls, blob: StoredBlob, owner: Principal, **kw: Any) -> NewObject:
        return cls(segments=[[blob.blob_id, blob.size]], size=blob.size, etag=blob.etag,
                   owner=owner, inline=blob.data, **kw)


def _view(conn: Connection, row: Any, bucket: BucketView) -> ObjectView:
    grants = load_grants(conn, bucket.id, row.id) if row.acl == "custom" else ()
    acl = Acl(row.owner_id, row.owner_name, row.acl, grants, bucket.owner_id)
    return ObjectView(row.id, row.key, row.generation, row.segments, row.size, row.etag,
                      row.last_modified, row.owner_id, row.owner_name, dict(row.headers or {}),
                      row.storage_class, acl)


def lookup_sync(conn: Connection, bucket: BucketView, key: str) -> ObjectView | None:
    # Core rows, not ORM instances: this is on every GET and HEAD.
    row = conn.execute(_LOOKUP, {"b_id": bucket.id, "k": key}).one_or_none()
    return None if row is None else _view(conn, row, bucket)


async def get_object(ctx: Context, bucket: BucketView, key: str) -> ObjectView:
    view = await ctx.read(lambda s: lookup_sync(s, bucket, key))
    if view is None:
        raise errors.NoSuchKey(Key=key)
    return view


def _swap(conn: Connection, bucket: BucketView, key: str, new: NewObject,
          precondition: Callable[[str | None], None] | None = None) -> list[str]:
    """Make ``new`` the row of ``key``; returns the replaced version's blob files."""
    row = conn.execute(_CURRENT, {"b_id": bucket.id, "k": key}).one_or_none()
    if precondition is not None:  # conditional write: sees the version it replaces
        precondition(row.etag if row is not None else None)
    values: dict[str, Any] = {
        "generation": uuid.uuid4().hex, "segments": new.segments, "size": new.size,
        "etag": new.etag, "last_modified": utcnow(), "owner_id": new.owner.account_id,
        "owner_name": new.owner.display_name, "headers": new.headers,
        "storage_class": new.storage_class, "acl": new.acl,
    }
    if row is None:
        inserted = conn.execute(_INSERT, {"bucket_id": bucket.id, "key": key, **values})
        object_id, old = new_id(inserted.inserted_primary_key), []
    else:
        result = conn.execute(_SWAP, {"o_id": row.id, "o_gen": row.generation, **values})
        if result.rowcount != 1:
            raise _Conflict()
        object_id, old = row.id, inline.release(conn, [seg[0] for seg in row.segments])
    if new.inline is not None:
        inline.store(conn, new.segments[0][0], new.inline)
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
    await ctx.delete_blobs(old)


async def commit_inline(ctx: Context, bucket_name: str, key: str, new: NewObject,
                        admit: Callable[[BucketView], None],
                        precondition: Callable[[str | None], None] | None = None) -> None:
    """Look up the bucket, ``admit(bucket)`` (raise to refuse) and make ``new`` (an inline
    object) the current version of ``key``: all in one write transaction, one thread trip.
    ``precondition`` as for :func:`commit_object`.

    An inline object has no file to clean up if this fails.
    """
    assert new.inline is not None

    def work(conn: Connection) -> list[str]:
        bucket = get_bucket_sync(conn, bucket_name)
        admit(bucket)
        return _swap(conn, bucket, key, new, precondition)

    for _ in range(ATTEMPTS):
        try:
            old = await ctx.write(work)
        except (_Conflict, IntegrityError):
            continue  # lost a race; a bucket deleted meanwhile is NoSuchBucket next time
        await ctx.delete_blobs(old)
        return
    raise errors.OperationAborted()


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
                ctx.buckets.invalidate()  # the cache may still hold it
                raise errors.NoSuchBucket(BucketName=bucket.name) from None
    raise errors.OperationAborted()


def _delete_sync(conn: Connection, bucket_id: int, key: str) -> list[str]:
    for _ in range(ATTEMPTS):
        row = conn.execute(_CURRENT, {"b_id": bucket_id, "k": key}).one_or_none()
        if row is None:
            return []
        result = conn.execute(_DELETE, {"o_id": row.id, "o_gen": row.generation})
        if result.rowcount == 1:
            return inline.release(conn, [seg[0] for seg in row.segments])
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

    def file_ranges(self, pos: int, size: int) -> list[tuple[int, int, int]] | None:
        """``size`` bytes at ``pos`` as (file descriptor, offset, count) ranges, segment by
        segment; None unless every blob involved is an open file."""
        ranges: list[tuple[int, int, int]] = []
        end = pos + size
        for start, seg, reader in zip(self.offsets, self.view.segments, self.readers,
                                      strict=True):
            seg_end = start + int(seg[1])
            if seg_end <= pos or start >= end:
                continue
            fd = getattr(reader, "fd", None)
            if not isinstance(fd, int) or fd < 0:
                return None
            lo, hi = max(pos, start), min(end, seg_end)
            ranges.append((fd, lo - start, hi - lo))
        return ranges

    def inline_bytes(self, pos: int, size: int) -> bytes | None:
        """``size`` bytes at ``pos`` when the object is one inline blob (else None)."""
        if len(self.readers) == 1 and isinstance(self.readers[0], inline.BytesReader):
            return self.readers[0].read_at(pos, size)
        return None

    def close(self) -> None:
        for reader in self.readers:
            reader.close()
        self.readers = []


def _open_all(store: BlobStore, segments: list[list[Any]],
              inline_data: dict[str, bytes] | None) -> list[BlobReader]:
    """Readers for the segments; ``inline_data`` None: inline blobs were not fetched."""
    readers: list[BlobReader] = []
    try:
        for seg in segments:
            if not inline.is_inline(seg[0]):
                readers.append(store.open(seg[0]))
            elif inline_data is None:
                readers.append(inline.NOT_FETCHED)
            elif seg[0] in inline_data:
                readers.append(inline.BytesReader(inline_data[seg[0]]))
            else:  # replaced since the row was read
                raise FileNotFoundError(seg[0])
    except BaseException:
        for r in readers:
            r.close()
        raise
    return readers


def _lookup_and_open(ctx: Context, bucket_name: str, bucket: BucketView | None,
                     key: str, fetch: bool = True) -> tuple[BucketView, OpenObject | None]:
    """One worker-thread trip: the rows, then the blobs (retried if an overwrite removed them).

    Without ``fetch`` (HEAD) inline blobs are not read: their readers must not be used.
    """
    for _ in range(ATTEMPTS):
        def work(conn: Connection
                 ) -> tuple[BucketView, ObjectView | None, dict[str, bytes] | None]:
            b = bucket or get_bucket_sync(conn, bucket_name)
            view = lookup_sync(conn, b, key)
            if view is None or not fetch:
                return b, view, None
            return b, view, inline.fetch(conn, [seg[0] for seg in view.segments])

        found, view, data = ctx.run(work)
        if view is None:
            return found, None
        try:
            return found, OpenObject(view, _open_all(ctx.store, view.segments, data))
        except FileNotFoundError:
            continue
    raise errors.InternalError("The object kept changing while being opened")


async def open_object(ctx: Context, bucket: BucketView, key: str) -> OpenObject:
    """Look the key up and open its blobs (NoSuchKey when absent)."""
    _, opened = await ctx.io(_lookup_and_open, ctx, bucket.name, bucket, key)
    if opened is None:
        raise errors.NoSuchKey(Key=key)
    return opened


async def open_by_name(ctx: Context, bucket_name: str, key: str, *, fetch: bool = True
                       ) -> tuple[BucketView, OpenObject | None]:
    """Bucket and object in one trip (GET/HEAD): NoSuchBucket, or the object if it exists.

    ``fetch=False`` (HEAD): the object is not going to be read; inline bytes stay unread.
    """
    return await ctx.io(_lookup_and_open, ctx, bucket_name, None, key, fetch)


def copy_range(store: BlobStore, src: OpenObject, start: int, length: int,
               known_md5: bytes | None, *, inline_ok: bool = False) -> StoredBlob:
    """Copy ``length`` bytes of ``src`` from ``start`` into a new committed blob (in a thread).

    With ``inline_ok`` a copy of at most ``inline.INLINE_MAX`` bytes becomes an inline blob.
    """
    if inline_ok and length <= inline.INLINE_MAX:
        data = b"".join(_read_range(src, start, length))
        return StoredBlob(inline.new_id(), length, known_md5 or hashlib.md5(data).digest(), data)
    writer = store.create()
    try:
        md5 = hashlib.md5()
        if known_md5 is not None and len(src.readers) == 1:
            writer.copy_from(src.readers[0], start, length)
        else:
            for data in _read_range(src, start, length):
                md5.update(data)
                writer.write(data)
        writer.commit()
    except BaseException:
        writer.abort()
        raise
    return StoredBlob(writer.blob_id, length, known_md5 or md5.digest())


def _read_range(src: OpenObject, start: int, length: int) -> Iterator[bytes]:
    pos, end = start, start + length
    while pos < end:
        data = src.read(pos, min(1 << 20, end - pos))
        pos += len(data)
        yield data
