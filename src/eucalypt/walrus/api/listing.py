"""ListObjects (v1) and ListObjectsV2."""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable

from eucalypt.walrus import errors, xml
from eucalypt.walrus.api.common import int_param, owner_nodes, quoted_etag, requester, url_encoder
from eucalypt.walrus.http import Response, S3Request, xml_response
from eucalypt.walrus.security import require
from eucalypt.walrus.services import Context
from eucalypt.walrus.services import buckets as bsvc
from eucalypt.walrus.services import listing as lsvc
from eucalypt.walrus.services.listing import Entry, ListQuery, Page


def encode_token(last: str) -> str:
    return base64.urlsafe_b64encode(("1:" + last).encode("utf-8")).decode("ascii")


def decode_token(token: str) -> str:
    try:
        raw = base64.urlsafe_b64decode(token.encode("ascii")).decode("utf-8")
    except (binascii.Error, UnicodeError, ValueError) as exc:
        raise errors.InvalidArgument("The continuation token provided is incorrect",
                                     ArgumentName="continuation-token") from exc
    if not raw.startswith("1:"):
        raise errors.InvalidArgument("The continuation token provided is incorrect",
                                     ArgumentName="continuation-token")
    return raw[2:]


def _contents(entries: list[Entry], enc: Callable[[str], str], owner: bool) -> list[xml.Node]:
    out: list[xml.Node] = []
    for e in entries:
        nodes: list[xml.Node] = [
            ("Key", enc(e.key)), ("LastModified", e.last_modified),
            ("ETag", quoted_etag(e.etag)), ("Size", e.size),
        ]
        if owner:
            nodes.append(("Owner", owner_nodes(e.owner_id, e.owner_name)))
        nodes.append(("StorageClass", e.storage_class))
        out.append(("Contents", nodes))
    return out


def _prefixes(page: Page, enc: Callable[[str], str]) -> list[xml.Node]:
    return [("CommonPrefixes", [("Prefix", enc(p))]) for p in page.prefixes]


async def list_objects(ctx: Context, req: S3Request) -> Response:
    if req.query.get("list-type") == "2":
        return await list_objects_v2(ctx, req)
    bucket = await bsvc.get_bucket(ctx, req.require_bucket())
    require(bucket.acl, requester(req), "READ")
    enc = url_encoder(req)
    prefix = req.query.get("prefix", "")
    delimiter = req.query.get("delimiter", "")
    marker = req.query.get("marker", "")
    max_keys = int_param(req, "max-keys", 1000, hi=1000)
    page = await lsvc.list_objects(ctx, bucket.id, ListQuery(prefix, delimiter, marker or None,
                                                        max_keys))
    nodes: list[xml.Node] = [
        ("Name", bucket.name), ("Prefix", enc(prefix)), ("Marker", enc(marker)),
        ("MaxKeys", max_keys),
    ]
    if delimiter:
        nodes.append(("Delimiter", enc(delimiter)))
    nodes.append(("IsTruncated", page.truncated))
    if page.truncated and delimiter and page.last is not None:
        nodes.append(("NextMarker", enc(page.last)))
    if "encoding-type" in req.query:
        nodes.append(("EncodingType", "url"))
    nodes += _contents(page.contents, enc, owner=True)
    nodes += _prefixes(page, enc)
    return xml_response(xml.render("ListBucketResult", nodes))


async def list_objects_v2(ctx: Context, req: S3Request) -> Response:
    bucket = await bsvc.get_bucket(ctx, req.require_bucket())
    require(bucket.acl, requester(req), "READ")
    enc = url_encoder(req)
    prefix = req.query.get("prefix", "")
    delimiter = req.query.get("delimiter", "")
    token = req.query.get("continuation-token")
    start_after = req.query.get("start-after", "")
    max_keys = int_param(req, "max-keys", 1000, hi=1000)
    fetch_owner = req.query.get("fetch-owner", "").lower() == "true"
    if token:  # an empty token is no token (and is echoed back as given)
        after: str | None = decode_token(token)
    else:
        after = start_after or None
    page = await lsvc.list_objects(ctx, bucket.id, ListQuery(prefix, delimiter, after, max_keys))
    nodes: list[xml.Node] = [("Name", bucket.name), ("Prefix", enc(prefix))]
    if delimiter:
        nodes.append(("Delimiter", enc(delimiter)))
    nodes += [("MaxKeys", max_keys), ("KeyCount", len(page.contents) + len(page.prefixes))]
    if token is not None:
        nodes.append(("ContinuationToken", token))
    if start_after:
        nodes.append(("StartAfter", enc(start_after)))
    nodes.append(("IsTruncated", page.truncated))
    if page.truncated and page.last is not None:
        nodes.append(("NextContinuationToken", encode_token(page.last)))
    if "encoding-type" in req.query:
        nodes.append(("EncodingType", "url"))
    nodes += _contents(page.contents, enc, owner=fetch_owner)
    nodes += _prefixes(page, enc)
    return xml_response(xml.render("ListBucketResult", nodes))


async def list_object_versions(ctx: Context, req: S3Request) -> Response:
    """ListObjectVersions. Walrus does not keep versions (versioning is never enabled), so
    every object is listed once, as its only version: ``VersionId`` ``null``, latest."""
    bucket = await bsvc.get_bucket(ctx, req.require_bucket())
    require(bucket.acl, requester(req), "READ")
    enc = url_encoder(req)
    prefix = req.query.get("prefix", "")
    delimiter = req.query.get("delimiter", "")
    key_marker = req.query.get("key-marker", "")
    version_marker = req.query.get("version-id-marker", "")
    if version_marker and not key_marker:
        raise errors.InvalidArgument("A version-id marker cannot be specified without a key "
                                     "marker.", ArgumentName="version-id-marker",
                                     ArgumentValue=version_marker)
    if version_marker and version_marker != "null":
        raise errors.InvalidArgument("Invalid version id specified",
                                     ArgumentName="version-id-marker",
                                     ArgumentValue=version_marker)
    max_keys = int_param(req, "max-keys", 1000, hi=1000)
    page = await lsvc.list_objects(ctx, bucket.id, ListQuery(prefix, delimiter,
                                                        key_marker or None, max_keys))
    nodes: list[xml.Node] = [
        ("Name", bucket.name), ("Prefix", enc(prefix)), ("KeyMarker", enc(key_marker)),
        ("VersionIdMarker", version_marker), ("MaxKeys", max_keys),
    ]
    if delimiter:
        nodes.append(("Delimiter", enc(delimiter)))
    nodes.append(("IsTruncated", page.truncated))
    if page.truncated and page.last is not None:
        nodes += [("NextKeyMarker", enc(page.last)), ("NextVersionIdMarker", "null")]
    if "encoding-type" in req.query:
        nodes.append(("EncodingType", "url"))
    for e in page.contents:
        nodes.append(("Version", [
            ("Key", enc(e.key)), ("VersionId", "null"), ("IsLatest", True),
            ("LastModified", e.last_modified), ("ETag", quoted_etag(e.etag)), ("Size", e.size),
            ("Owner", owner_nodes(e.owner_id, e.owner_name)), ("StorageClass", e.storage_class),
        ]))
    nodes += _prefixes(page, enc)
    return xml_response(xml.render("ListVersionsResult", nodes))
