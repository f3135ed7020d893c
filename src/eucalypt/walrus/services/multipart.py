"""Multipart uploads: parts are blobs; completing an upload keeps them as the object's segments.

Completion is metadata only (no byte copying): the chosen parts' blobs become
the new object's segments in the same transaction that removes the upload,
and the blobs of parts left out are deleted afterwards. Part uploads and
completion touch the upload row first (``UPDATE ... WHERE upload_id``), which
serializes them per upload on every backend, so a part replaced while the
upload completes can never be deleted from under the new object.
"""

from __future__ import annotations

import hashlib
import itertools
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, delete, insert, select, update
from sqlalchemy.exc import SQLAlchemyError

from eucalypt.walrus import errors
from eucalypt.walrus.models import MultipartUpload, Part, utcnow
from eucalypt.walrus.security import GrantSpec, Principal
from eucalypt.walrus.services import Context
from eucalypt.walrus.services.buckets import BucketView
from eucalypt.walrus.services.objects import NewObject, _retry, _swap
from eucalypt.walrus.upload import StoredBlob

MIN_PART_SIZE = 5 * (1 << 20)
MAX_PART_NUMBER = 10000


@dataclass(frozen=True)
class UploadView:
    upload_id: str
    key: str
    initiated: datetime
    owner_id: str
    owner_name: str
    headers: dict[str, str]
    storage_class: str
    acl: str
    grants: list[Any]


@dataclass(frozen=True)
class PartView:
    part_number: int
    size: int
    etag: str
    last_modified: datetime


def _upload_row(conn: Connection, upload_id: str) -> Any:
    return conn.execute(select(*MultipartUpload.__table__.c)
                        .where(MultipartUpload.upload_id == upload_id)).one_or_none()


def _upload_view(row: Any) -> UploadView:
    return UploadView(row.upload_id, row.key, row.initiated, row.owner_id, row.owner_name,
                      dict(row.headers or {}), row.storage_class, row.acl, list(row.grants or []))


async def create_upload(ctx: Context, bucket: BucketView, key: str, owner: Principal,
                        new: NewObject) -> str:
    upload_id = uuid.uuid4().hex + uuid.uuid4().hex[:8]

    def work(conn: Connection) -> None:
        conn.execute(insert(MultipartUpload).values(
            upload_id=upload_id, bucket_id=bucket.id, key=key, owner_id=owner.account_id,
            owner_name=owner.display_name, headers=new.headers, storage_class=new.storage_class,
            acl=new.acl, grants=[[g.grantee_type, g.grantee, g.permission, g.display_name]
                                 for g in new.grants],
            initiated=utcnow(),
        ))

    await ctx.write(work)
    return upload_id


def _touch(conn: Connection, bucket: BucketView, key: str, upload_id: str) -> Any:
    """Write-lock the upload row and return it (or fail with NoSuchUpload)."""
    result = conn.execute(
        update(MultipartUpload)
        .where(MultipartUpload.upload_id == upload_id, MultipartUpload.bucket_id == bucket.id,
               MultipartUpload.key == key)
        .values(storage_class=MultipartUpload.storage_class)
    )
    if result.rowcount != 1:
        raise errors.NoSuchUpload(UploadId=upload_id)
    return _upload_row(conn, upload_id)


async def get_upload(ctx: Context, bucket: BucketView, key: str, upload_id: str) -> UploadView:
    def work(conn: Connection) -> UploadView:
        row = _upload_row(conn, upload_id)
        if row is None or row.bucket_id != bucket.id or row.key != key:
            raise errors.NoSuchUpload(UploadId=upload_id)
        return _upload_view(row)

    return await ctx.read(work)


async def put_part(ctx: Context, bucket: BucketView, key: str, upload_id: str,
                   part_number: int, blob: StoredBlob) -> None:
    """Record a part (replacing any earlier one with that number)."""

    def work(conn: Connection) -> str | None:
        _touch(conn, bucket, key, upload_id)
        where = (Part.upload_id == upload_id, Part.part_number == part_number)
        old: str | None = conn.scalar(select(Part.blob_id).where(*where))
        values = {"blob_id": blob.blob_id, "size": blob.size, "etag": blob.etag,
                  "last_modified": utcnow()}
        if old is None:
            conn.execute(insert(Part).values(upload_id=upload_id, part_number=part_number,
                                             **values))
        else:
            conn.execute(update(Part).where(*where).values(**values))
        return old

    try:
        old = await ctx.write(work)
    except (errors.S3Error, SQLAlchemyError):  # certainly not committed
        await ctx.delete_blobs([blob.blob_id])
        raise
    if old:
        await ctx.delete_blobs([old])


async def list_parts(ctx: Context, bucket: BucketView, key: str, upload_id: str,
                     after: int, max_parts: int) -> tuple[UploadView, list[PartView], bool]:
    def work(conn: Connection) -> tuple[UploadView, list[PartView], bool]:
        row = _upload_row(conn, upload_id)
        if row is None or row.bucket_id != bucket.id or row.key != key:
            raise errors.NoSuchUpload(UploadId=upload_id)
        parts = conn.execute(
            select(Part.part_number, Part.size, Part.etag, Part.last_modified)
            .where(Part.upload_id == upload_id, Part.part_number > after)
            .order_by(Part.part_number).limit(max_parts + 1)
        ).all()
        views = [PartView(p.part_number, p.size, p.etag, p.last_modified) for p in parts]
        return _upload_view(row), views[:max_parts], len(views) > max_parts

    return await ctx.read(work)


def _norm_etag(etag: str) -> str:
    return etag.strip().strip('"').lower()


async def complete_upload(ctx: Context, bucket: BucketView, key: str, upload_id: str,
                          requested: list[tuple[int, str]]) -> str:
    """Validate the part list, swap in the new object, drop the upload; returns the ETag."""
    if not requested:
        raise errors.MalformedXML("You must specify at least one part")
    numbers = [n for n, _ in requested]
    if any(b <= a for a, b in itertools.pairwise(numbers)):
        raise errors.InvalidPartOrder(UploadId=upload_id)

    def work(conn: Connection) -> tuple[str, list[str], list[str]]:
        upload = _touch(conn, bucket, key, upload_id)
        parts = {p.part_number: p for p in conn.execute(
            select(Part.part_number, Part.blob_id, Part.size, Part.etag)
            .where(Part.upload_id == upload_id))}
        chosen: list[Any] = []
        for i, (number, etag) in enumerate(requested):
            part = parts.get(number)
            if part is None or _norm_etag(etag) != part.etag:
                raise errors.InvalidPart(UploadId=upload_id, PartNumber=str(number),
                                         ETag=etag)
            if part.size < MIN_PART_SIZE and i != len(requested) - 1:
                raise errors.EntityTooSmall(
                    ProposedSize=str(part.size), MinSizeAllowed=str(MIN_PART_SIZE),
                    PartNumber=str(number), ETag=etag)
            chosen.append(part)
        digest = hashlib.md5(b"".join(bytes.fromhex(p.etag) for p in chosen)).hexdigest()
        etag = f"{digest}-{len(chosen)}"
        grants = [GrantSpec(*g) for g in upload.grants or []]
        owner = Principal(upload.owner_id, upload.owner_name)
        new = NewObject(segments=[[p.blob_id, p.size] for p in chosen],
                        size=sum(p.size for p in chosen), etag=etag, owner=owner,
                        headers=dict(upload.headers or {}), storage_class=upload.storage_class,
                        acl=upload.acl, grants=grants)
        old = _swap(conn, bucket, key, new)
        used = {p.blob_id for p in chosen}
        unused = [p.blob_id for p in parts.values() if p.blob_id not in used]
        conn.execute(delete(Part).where(Part.upload_id == upload_id))
        conn.execute(delete(MultipartUpload).where(MultipartUpload.upload_id == upload_id))
        return etag, unused, old

    etag, unused, old = await _retry(ctx, bucket, work)
    await ctx.delete_blobs(unused + old)
    return etag


async def abort_upload(ctx: Context, bucket: BucketView, key: str, upload_id: str) -> None:
    def work(conn: Connection) -> list[str]:
        _touch(conn, bucket, key, upload_id)
        blobs = list(conn.scalars(select(Part.blob_id).where(Part.upload_id == upload_id)))
        conn.execute(delete(Part).where(Part.upload_id == upload_id))
        conn.execute(delete(MultipartUpload).where(MultipartUpload.upload_id == upload_id))
        return blobs

    await ctx.delete_blobs(await ctx.write(work))


@dataclass(frozen=True)
class UploadsQuery:
    prefix: str = ""
    delimiter: str = ""
    key_marker: str = ""
    upload_id_marker: str = ""
    max_uploads: int = 1000


async def list_uploads(ctx: Context, bucket: BucketView, q: UploadsQuery
                       ) -> tuple[list[UploadView], list[str], bool]:
    """In-progress uploads ordered by (key, upload id), with common prefixes."""

    def work(conn: Connection) -> tuple[list[UploadView], list[str], bool]:
        stmt = select(*MultipartUpload.__table__.c).where(
            MultipartUpload.bucket_id == bucket.id)
        if q.prefix:
            stmt = stmt.where(MultipartUpload.key >= q.prefix)
        if q.key_marker:
            if q.upload_id_marker:
                stmt = stmt.where(
                    (MultipartUpload.key > q.key_marker)
                    | ((MultipartUpload.key == q.key_marker)
                       & (MultipartUpload.upload_id > q.upload_id_marker)))
            else:
                stmt = stmt.where(MultipartUpload.key > q.key_marker)
        stmt = stmt.order_by(MultipartUpload.key, MultipartUpload.upload_id)
        uploads: list[UploadView] = []
        prefixes: list[str] = []
        for row in conn.execute(stmt.execution_options(yield_per=500)):
            if not row.key.startswith(q.prefix):
                break
            if q.delimiter:
                cut = row.key.find(q.delimiter, len(q.prefix))
                if cut >= 0:
                    cp = row.key[: cut + len(q.delimiter)]
                    if not prefixes or prefixes[-1] != cp:
                        if len(uploads) + len(prefixes) >= q.max_uploads:
                            return uploads, prefixes, True
                        prefixes.append(cp)
                    continue
            if len(uploads) + len(prefixes) >= q.max_uploads:
                return uploads, prefixes, True
            uploads.append(_upload_view(row))
        return uploads, prefixes, False

    return await ctx.read(work)
