"""Object handlers: Put, Copy, Get, Head, Delete, DeleteObjects, GetObjectTagging."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from collections.abc import AsyncIterator, Callable
from functools import partial
from urllib.parse import unquote

from eucalypt.walrus import errors, xml
from eucalypt.walrus.api.common import (
    apply_overrides,
    check_conditions,
    int_param,
    metadata_from,
    object_headers,
    parse_range,
    quoted_etag,
    reject_unsupported,
    requester,
    storage_class_from,
)
from eucalypt.walrus.body import BodyPlan, expects_continue, read_small_body
from eucalypt.walrus.http import MAX_KEY_BYTES, Response, S3Request, empty_response, xml_response
from eucalypt.walrus.security import acl_from_request, require
from eucalypt.walrus.services import Context
from eucalypt.walrus.services import buckets as bsvc
from eucalypt.walrus.services import objects as osvc
from eucalypt.walrus.services.buckets import BucketView
from eucalypt.walrus.upload import (
    MAX_PUT_SIZE,
    StoredBlob,
    inline_plan,
    receive_blob,
    receive_inline,
)

# Bigger reads cost less CPU per byte; small objects keep small buffers.
SMALL_CHUNK, LARGE_CHUNK = 1 << 20, 4 << 20
CHECKSUM_HEADERS = ("x-amz-checksum-crc32", "x-amz-checksum-sha1", "x-amz-checksum-sha256")


async def _admit_put(ctx: Context, req: S3Request) -> tuple[BucketView, osvc.NewObject]:
    """Everything a PUT is checked for before its body: bucket, ACL, headers.

    Returns the bucket and the new object's metadata (its blob still to come).
    """
    principal = requester(req)
    bucket = await bsvc.get_bucket(ctx, req.require_bucket())
    require(bucket.acl, principal, "WRITE")
    reject_unsupported(req)
    meta = metadata_from(req)
    storage_class = storage_class_from(req)
    canned, grants = acl_from_request(req.headers)
    return bucket, osvc.NewObject(segments=[], size=0, etag="", owner=principal, headers=meta,
                                  storage_class=storage_class, acl=canned, grants=grants)


async def _put_inline(ctx: Context, req: S3Request, plan: BodyPlan) -> StoredBlob | None:
    """PutObject of a small body in one thread trip: the body is read and checked on the
    event loop, then the bucket lookup, the ACL check and the commit of bytes and metadata
    run in one write transaction. Errors come in the same order as on the general path.

    Returns None (nothing done) when the request's headers are invalid: the general path
    then reports them in its own order.
    """
    principal = requester(req)
    try:
        reject_unsupported(req)
        meta = metadata_from(req)
        storage_class = storage_class_from(req)
        canned, grants = acl_from_request(req.headers)
    except errors.S3Error:
        return None
    bucket_name = req.require_bucket()
    if expects_continue(req):  # refused before the client is told to send its body
        require((await bsvc.get_bucket(ctx, bucket_name)).acl, principal, "WRITE")
    try:
        blob = await receive_inline(req, plan, ctx.executor)
    except errors.S3Error:
        # The bucket's errors (NoSuchBucket, AccessDenied) come before the body's.
        bucket = await bsvc.get_bucket(ctx, bucket_name)
        require(bucket.acl, principal, "WRITE")
        raise
    new = osvc.NewObject(segments=[[blob.blob_id, blob.size]], size=blob.size, etag=blob.etag,
                         owner=principal, headers=meta, storage_class=storage_class,
                         acl=canned, grants=grants, inline=blob.data)
    await osvc.commit_inline(ctx, bucket_name, req.require_key(), new,
                             lambda bucket: require(bucket.acl, principal, "WRITE"),
                             write_precondition(req))
    return blob


async def put_object(ctx: Context, req: S3Request) -> Response:
    if "x-amz-copy-source" in req.headers:
        return await copy_object(ctx, req)
    try:
        plan = inline_plan(req)
    except errors.S3Error:
        plan = None  # the general path reports it, after the bucket's own errors
    blob = await _put_inline(ctx, req, plan) if plan is not None else None
    if blob is None:
        blob = await _put_general(ctx, req)
    resp = empty_response().header("etag", quoted_etag(blob.etag))
    for name in CHECKSUM_HEADERS:
        if name in req.headers:
            resp.header(name, req.headers[name])
    return resp


def write_precondition(req: S3Request) -> Callable[[str | None], None] | None:
    """If-Match / If-None-Match on a write, checked against the version being replaced:
    412 PreconditionFailed when it fails; If-Match on a missing key is NoSuchKey (as S3)."""
    if_match, if_none = req.headers.get("if-match"), req.headers.get("if-none-match")
    if if_match is None and if_none is None:
        return None

    def tags(value: str) -> list[str]:
        return [t.strip().removeprefix("W/").strip('"') for t in value.split(",") if t.strip()]

    def check(current: str | None) -> None:
        if if_match is not None:
            if current is None:
                raise errors.NoSuchKey(Key=req.require_key())
            if not any(t in ("*", current) for t in tags(if_match)):
                raise errors.PreconditionFailed(Condition="If-Match")
        if if_none is not None and current is not None \
                and any(t in ("*", current) for t in tags(if_none)):
            raise errors.PreconditionFailed(Condition="If-None-Match")

    return check


async def _put_general(ctx: Context, req: S3Request) -> StoredBlob:
    """PutObject of any body: streamed into a blob (a file, or inline if small)."""
    # A small body may arrive while the bucket is looked up (receive_blob
    # stores nothing before this admission passed); its errors come first.
    admission = asyncio.ensure_future(_admit_put(ctx, req))
    try:
        blob = await receive_blob(req, ctx.store, ctx.executor, admission=admission)
    except errors.S3Error:
        refused = (await asyncio.gather(admission, return_exceptions=True))[0]
        if isinstance(refused, errors.S3Error):
            raise refused from None
        raise
    except BaseException:
        admission.cancel()
        await asyncio.gather(admission, return_exceptions=True)
        raise
    bucket, meta = admission.result()
    new = dataclasses.replace(meta, segments=[[blob.blob_id, blob.size]], size=blob.size,
                              etag=blob.etag, inline=blob.data)
    await osvc.commit_object(ctx, bucket, req.require_key(), new, write_precondition(req))
    return blob


async def _open_readable(ctx: Context, req: S3Request, *, fetch: bool = True
                         ) -> osvc.OpenObject:
    """Open the object for reading, or raise NoSuchKey/AccessDenied as S3 would."""
    principal = requester(req)
    bucket, opened = await osvc.open_by_name(ctx, req.require_bucket(), req.require_key(),
                                             fetch=fetch)
    if opened is None:
        # Without the right to list the bucket, absence is not disclosed.
        require(bucket.acl, principal, "READ")
        raise errors.NoSuchKey(Key=req.require_key())
    try:
        require(opened.view.acl, principal, "READ")
    except BaseException:
        opened.close()
        raise
    return opened


async def _stream(ctx: Context, opened: osvc.OpenObject, start: int, length: int
                  ) -> AsyncIterator[bytes]:
    """Read-ahead by one chunk: the next read runs in a thread while this one is sent.

    Used when the server cannot send files itself (``Response.files``, zero-copy):
    at most two chunks (8 MiB) per response are in memory.
    """
    loop = asyncio.get_running_loop()
    pos, end = start, start + length
    chunk = LARGE_CHUNK if length >= 4 * LARGE_CHUNK else SMALL_CHUNK
    fut: asyncio.Future[bytes] | None = None
    if pos < end:
        fut = loop.run_in_executor(ctx.executor, opened.read, pos, min(chunk, end - pos))
    try:
        while fut is not None:
            data = await fut
            fut = None
            pos += len(data)
            if pos < end:
                fut = loop.run_in_executor(ctx.executor, opened.read, pos, min(chunk, end - pos))
            yield data
    finally:
        if fut is not None:
            with contextlib.suppress(Exception):
                await fut


async def get_object(ctx: Context, req: S3Request, *, head: bool = False) -> Response:
    if req.query.get("versionId", "null") != "null":
        raise errors.InvalidArgument("Invalid version id specified")
    opened = await _open_readable(ctx, req, fetch=not head)
    try:
        view = opened.view
        check_conditions(req.headers, view)
        headers = apply_overrides(req, object_headers(view))
        status, start, length = 200, 0, view.size
        if "partNumber" in req.query:
            number = int_param(req, "partNumber", 1, lo=1, hi=10000)
            if number > len(view.segments):
                raise errors.PartNumberNotSatisfiable()
            start = sum(int(s[1]) for s in view.segments[: number - 1])
            length = int(view.segments[number - 1][1])
            status = 206
            headers.append(("x-amz-mp-parts-count", str(len(view.segments))))
            headers.append(("content-range",
                            f"bytes {start}-{start + length - 1}/{view.size}"))
        else:
            rng = parse_range(req.headers.get("range"), view.size)
            if rng is not None:
                start, length, status = rng[0], rng[1] - rng[0] + 1, 206
                headers.append(("content-range", f"bytes {rng[0]}-{rng[1]}/{view.size}"))
    except BaseException:
        opened.close()
        raise

    async def cleanup() -> None:
        opened.close()

    if head or length == 0:
        opened.close()
        return Response(status=status, headers=headers, length=length)
    body = opened.inline_bytes(start, length)
    if body is not None:  # a small object: already in memory, no file to stream from
        opened.close()
        return Response(status=status, headers=headers, body=body)
    return Response(status=status, headers=headers, stream=_stream(ctx, opened, start, length),
                    length=length, cleanup=cleanup, files=opened.file_ranges(start, length))


async def head_object(ctx: Context, req: S3Request) -> Response:
    return await get_object(ctx, req, head=True)


async def delete_object(ctx: Context, req: S3Request) -> Response:
    bucket = await bsvc.get_bucket(ctx, req.require_bucket())
    require(bucket.acl, requester(req), "WRITE")
    await osvc.delete_object(ctx, bucket, req.require_key())
    return empty_response(204)


async def delete_objects(ctx: Context, req: S3Request) -> Response:
    bucket = await bsvc.get_bucket(ctx, req.require_bucket())
    require(bucket.acl, requester(req), "WRITE")
    root = xml.parse(await read_small_body(req), "Delete")
    quiet = (xml.child_text(root, "Quiet") or "").strip().lower() == "true"
    items = root.findall("Object")
    if not items or len(items) > 1000:
        raise errors.MalformedXML()
    keys: list[str] = []
    failed: list[tuple[str, str, str]] = []
    for item in items:
        key = xml.child_text(item, "Key")
        if key is None:
            raise errors.MalformedXML()
        if len(key.encode("utf-8")) > MAX_KEY_BYTES:
            failed.append((key, "KeyTooLongError", "Your key is too long"))
        else:
            keys.append(key)
    await osvc.delete_objects(ctx, bucket, keys)
    nodes: list[xml.Node] = []
    if not quiet:
        nodes += [("Deleted", [("Key", k)]) for k in keys]
    nodes += [("Error", [("Key", k), ("Code", c), ("Message", m)]) for k, c, m in failed]
    return xml_response(xml.render("DeleteResult", nodes))


def parse_copy_source(header: str) -> tuple[str, str]:
    source = unquote(header.strip())
    source, _, version = source.partition("?versionId=")
    if version and version != "null":
        raise errors.S3NotImplemented("Versioned copy sources are not supported")
    source = source.lstrip("/")
    bucket, _, key = source.partition("/")
    if not bucket or not key:
        raise errors.InvalidArgument("Copy Source must mention the source bucket and key: "
                                     "sourcebucket/sourcekey", ArgumentName="x-amz-copy-source")
    return bucket, key


async def open_copy_source(ctx: Context, req: S3Request) -> osvc.OpenObject:
    src_bucket_name, src_key = parse_copy_source(req.headers["x-amz-copy-source"])
    principal = requester(req)
    src_bucket = await bsvc.get_bucket(ctx, src_bucket_name)
    try:
        opened = await osvc.open_object(ctx, src_bucket, src_key)
    except errors.NoSuchKey:
        require(src_bucket.acl, principal, "READ")
        raise
    try:
        require(opened.view.acl, principal, "READ")
        check_conditions(req.headers, opened.view, prefix="x-amz-copy-source-", copy=True)
    except BaseException:
        opened.close()
        raise
    return opened


async def copy_object(ctx: Context, req: S3Request) -> Response:
    principal = requester(req)
    bucket = await bsvc.get_bucket(ctx, req.require_bucket())
    require(bucket.acl, principal, "WRITE")
    reject_unsupported(req)
    directive = req.headers.get("x-amz-metadata-directive", "COPY").upper()
    if directive not in ("COPY", "REPLACE"):
        raise errors.InvalidArgument("Unknown metadata directive.",
                                     ArgumentName="x-amz-metadata-directive")
    canned, grants = acl_from_request(req.headers)
    opened = await open_copy_source(ctx, req)
    try:
        blob, meta, storage_class = await _copy_bytes(ctx, req, bucket, opened, directive)
    finally:
        opened.close()
    new = osvc.NewObject.from_blob(blob, principal, headers=meta, storage_class=storage_class,
                                   acl=canned, grants=grants)
    await osvc.commit_object(ctx, bucket, req.require_key(), new)
    view = await osvc.get_object(ctx, bucket, req.require_key())
    body = xml.render("CopyObjectResult", [("LastModified", view.last_modified),
                                           ("ETag", quoted_etag(blob.etag))])
    return xml_response(body)


async def _copy_bytes(ctx: Context, req: S3Request, bucket: BucketView,
                      opened: osvc.OpenObject, directive: str
                      ) -> tuple[StoredBlob, dict[str, str], str]:
    view = opened.view
    src_bucket, src_key = parse_copy_source(req.headers["x-amz-copy-source"])
    storage_class = storage_class_from(req) if "x-amz-storage-class" in req.headers \
        else view.storage_class
    same = src_bucket == bucket.name and src_key == req.require_key()
    if same and directive == "COPY" and storage_class == view.storage_class:
        raise errors.InvalidRequest(
            "This copy request is illegal because it is trying to copy an object to itself "
            "without changing the object's metadata, storage class, website redirect location "
            "or encryption attributes.")
    if view.size > MAX_PUT_SIZE:
        raise errors.InvalidRequest("The specified copy source is larger than the maximum "
                                    "allowable size for a copy source: 5368709120")
    meta = dict(view.headers) if directive == "COPY" else metadata_from(req)
    known = None if "-" in view.etag else bytes.fromhex(view.etag)
    blob = await ctx.io(partial(osvc.copy_range, inline_ok=True), ctx.store, opened, 0,
                        view.size, known)
    return blob, meta, storage_class


async def get_object_tagging(ctx: Context, req: S3Request) -> Response:
    opened = await _open_readable(ctx, req, fetch=False)
    opened.close()
    return xml_response(xml.render("Tagging", [("TagSet", [])]))
