"""Multipart upload handlers."""

from __future__ import annotations

from eucalypt.walrus import errors, xml
from eucalypt.walrus.api.common import (
    int_param,
    metadata_from,
    owner_nodes,
    quoted_etag,
    reject_unsupported,
    requester,
    storage_class_from,
    url_encoder,
)
from eucalypt.walrus.api.objects import open_copy_source
from eucalypt.walrus.body import read_small_body
from eucalypt.walrus.http import Response, S3Request, empty_response, xml_response
from eucalypt.walrus.security import acl_from_request, require
from eucalypt.walrus.services import Context
from eucalypt.walrus.services import buckets as bsvc
from eucalypt.walrus.services import multipart as msvc
from eucalypt.walrus.services import objects as osvc
from eucalypt.walrus.services.buckets import BucketView
from eucalypt.walrus.upload import receive_blob

MAX_PART_SIZE = 5 * (1 << 30)


async def _writable_bucket(ctx: Context, req: S3Request) -> BucketView:
    bucket = await bsvc.get_bucket(ctx, req.require_bucket())
    require(bucket.acl, requester(req), "WRITE")
    return bucket


def _upload_id(req: S3Request) -> str:
    upload_id = req.query.get("uploadId", "")
    if not upload_id:
        raise errors.NoSuchUpload(UploadId=upload_id)
    return upload_id


def _part_number(req: S3Request) -> int:
    raw = req.query.get("partNumber", "")
    try:
        number = int(raw)
    except ValueError as exc:
        raise errors.InvalidPartNumber() from exc
    if not 1 <= number <= msvc.MAX_PART_NUMBER:
        raise errors.InvalidPartNumber()
    return number


async def create_upload(ctx: Context, req: S3Request) -> Response:
    bucket = await _writable_bucket(ctx, req)
    reject_unsupported(req)
    principal = requester(req)
    canned, grants = acl_from_request(req.headers)
    new = osvc.NewObject(segments=[], size=0, etag="", owner=principal,
                         headers=metadata_from(req), storage_class=storage_class_from(req),
                         acl=canned, grants=grants)
    upload_id = await msvc.create_upload(ctx, bucket, req.require_key(), principal, new)
    body = xml.render("InitiateMultipartUploadResult", [
        ("Bucket", bucket.name), ("Key", req.require_key()), ("UploadId", upload_id)])
    resp = xml_response(body)
    if "x-amz-checksum-algorithm" in req.headers:
        resp.header("x-amz-checksum-algorithm", req.headers["x-amz-checksum-algorithm"])
    return resp


async def upload_part(ctx: Context, req: S3Request) -> Response:
    if "x-amz-copy-source" in req.headers:
        return await upload_part_copy(ctx, req)
    bucket = await _writable_bucket(ctx, req)
    upload_id, number = _upload_id(req), _part_number(req)
    await msvc.get_upload(ctx, bucket, req.require_key(), upload_id)
    blob = await receive_blob(req, ctx.store, ctx.executor, max_size=MAX_PART_SIZE,
                              inline_ok=False)
    await msvc.put_part(ctx, bucket, req.require_key(), upload_id, number, blob)
    resp = empty_response().header("etag", quoted_etag(blob.etag))
    for name in ("x-amz-checksum-crc32", "x-amz-checksum-sha1", "x-amz-checksum-sha256"):
        if name in req.headers:
            resp.header(name, req.headers[name])
    return resp


def _copy_range(header: str | None, size: int) -> tuple[int, int]:
    if header is None:
        return 0, size
    unit, _, spec = header.partition("=")
    first, _, last = spec.partition("-")
    try:
        start, end = int(first), int(last)
    except ValueError as exc:
        raise errors.InvalidArgument("The x-amz-copy-source-range value must be of the form "
                                     "bytes=first-last where first and last are the "
                                     "zero-based offsets of the first and last bytes to copy",
                                     ArgumentName="x-amz-copy-source-range") from exc
    if unit.strip() != "bytes" or start < 0 or end < start or end >= size:
        raise errors.InvalidRange(RangeRequested=header, ActualObjectSize=str(size))
    return start, end - start + 1


async def upload_part_copy(ctx: Context, req: S3Request) -> Response:
    bucket = await _writable_bucket(ctx, req)
    upload_id, number = _upload_id(req), _part_number(req)
    await msvc.get_upload(ctx, bucket, req.require_key(), upload_id)
    opened = await open_copy_source(ctx, req)
    try:
        start, length = _copy_range(req.headers.get("x-amz-copy-source-range"),
                                    opened.view.size)
        if length > MAX_PART_SIZE:
            raise errors.EntityTooLarge()
        blob = await ctx.io(osvc.copy_range, ctx.store, opened, start, length, None)
    finally:
        opened.close()
    await msvc.put_part(ctx, bucket, req.require_key(), upload_id, number, blob)
    body = xml.render("CopyPartResult", [("LastModified", opened.view.last_modified),
                                         ("ETag", quoted_etag(blob.etag))])
    return xml_response(body)


async def complete_upload(ctx: Context, req: S3Request) -> Response:
    bucket = await _writable_bucket(ctx, req)
    upload_id = _upload_id(req)
    root = xml.parse(await read_small_body(req, limit=8 << 20), "CompleteMultipartUpload")
    requested: list[tuple[int, str]] = []
    for part in root.findall("Part"):
        number, etag = xml.child_text(part, "PartNumber"), xml.child_text(part, "ETag")
        if number is None or etag is None:
            raise errors.MalformedXML()
        try:
            requested.append((int(number), etag))
        except ValueError as exc:
            raise errors.MalformedXML() from exc
    key = req.require_key()
    etag = await msvc.complete_upload(ctx, bucket, key, upload_id, requested)
    location = f"/{bucket.name}/{key}"
    body = xml.render("CompleteMultipartUploadResult", [
        ("Location", location), ("Bucket", bucket.name), ("Key", key),
        ("ETag", quoted_etag(etag))])
    return xml_response(body)


async def abort_upload(ctx: Context, req: S3Request) -> Response:
    bucket = await _writable_bucket(ctx, req)
    await msvc.abort_upload(ctx, bucket, req.require_key(), _upload_id(req))
    return empty_response(204)


async def list_parts(ctx: Context, req: S3Request) -> Response:
    bucket = await _writable_bucket(ctx, req)
    upload_id = _upload_id(req)
    after = int_param(req, "part-number-marker", 0)
    max_parts = int_param(req, "max-parts", 1000, hi=1000)
    upload, parts, truncated = await msvc.list_parts(ctx, bucket, req.require_key(), upload_id,
                                                     after, max_parts)
    owner = owner_nodes(upload.owner_id, upload.owner_name)
    nodes: list[xml.Node] = [
        ("Bucket", bucket.name), ("Key", upload.key), ("UploadId", upload_id),
        ("Initiator", owner), ("Owner", owner), ("StorageClass", upload.storage_class),
        ("PartNumberMarker", after),
        ("NextPartNumberMarker", parts[-1].part_number if parts else after),
        ("MaxParts", max_parts), ("IsTruncated", truncated),
    ]
    nodes += [("Part", [("PartNumber", p.part_number), ("LastModified", p.last_modified),
                        ("ETag", quoted_etag(p.etag)), ("Size", p.size)]) for p in parts]
    return xml_response(xml.render("ListPartsResult", nodes))


async def list_uploads(ctx: Context, req: S3Request) -> Response:
    bucket = await bsvc.get_bucket(ctx, req.require_bucket())
    require(bucket.acl, requester(req), "READ")
    enc = url_encoder(req)
    q = msvc.UploadsQuery(
        prefix=req.query.get("prefix", ""), delimiter=req.query.get("delimiter", ""),
        key_marker=req.query.get("key-marker", ""),
        upload_id_marker=req.query.get("upload-id-marker", ""),
        max_uploads=int_param(req, "max-uploads", 1000, hi=1000),
    )
    uploads, prefixes, truncated = await msvc.list_uploads(ctx, bucket, q)
    nodes: list[xml.Node] = [
        ("Bucket", bucket.name), ("KeyMarker", enc(q.key_marker)),
        ("UploadIdMarker", q.upload_id_marker),
    ]
    if truncated and uploads:
        nodes += [("NextKeyMarker", enc(uploads[-1].key)),
                  ("NextUploadIdMarker", uploads[-1].upload_id)]
    if q.delimiter:
        nodes.append(("Delimiter", enc(q.delimiter)))
    nodes += [("Prefix", enc(q.prefix)), ("MaxUploads", q.max_uploads),
              ("IsTruncated", truncated)]
    if "encoding-type" in req.query:
        nodes.append(("EncodingType", "url"))
    for u in uploads:
        owner = owner_nodes(u.owner_id, u.owner_name)
        nodes.append(("Upload", [("Key", enc(u.key)), ("UploadId", u.upload_id),
                                 ("Initiator", owner), ("Owner", owner),
                                 ("StorageClass", u.storage_class), ("Initiated", u.initiated)]))
    nodes += [("CommonPrefixes", [("Prefix", enc(p))]) for p in prefixes]
    return xml_response(xml.render("ListMultipartUploadsResult", nodes))
