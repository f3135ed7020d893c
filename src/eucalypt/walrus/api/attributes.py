"""GetObjectAttributes (``GET /bucket/key?attributes``): an object's ETag, size, storage
class and, for a multipart object, its parts, without its bytes."""

from __future__ import annotations

from eucalypt.walrus import errors, xml
from eucalypt.walrus.api.common import requester
from eucalypt.walrus.http import Response, S3Request, http_date, xml_response
from eucalypt.walrus.security import require
from eucalypt.walrus.services import Context
from eucalypt.walrus.services import buckets as bsvc
from eucalypt.walrus.services import objects as osvc

ATTRIBUTES = frozenset({"ETag", "Checksum", "ObjectParts", "StorageClass", "ObjectSize"})


async def get_object_attributes(ctx: Context, req: S3Request) -> Response:
    if req.query.get("versionId", "null") != "null":
        raise errors.InvalidArgument("Invalid version id specified")
    wanted = {a.strip() for a in req.headers.get("x-amz-object-attributes", "").split(",")
              if a.strip()}
    if not wanted or not wanted <= ATTRIBUTES:
        raise errors.InvalidArgument("Invalid attribute name specified.",
                                     ArgumentName="x-amz-object-attributes")
    bucket = await bsvc.get_bucket(ctx, req.require_bucket())
    principal = requester(req)
    try:
        view = await osvc.get_object(ctx, bucket, req.require_key())
    except errors.NoSuchKey:
        require(bucket.acl, principal, "READ")
        raise
    require(view.acl, principal, "READ")
    nodes: list[xml.Node] = []
    if "ETag" in wanted:
        nodes.append(("ETag", view.etag))
    if "ObjectParts" in wanted and "-" in view.etag:
        # Parts are numbered in the order they make up the object.
        marker = _header_int(req, "x-amz-part-number-marker", 0)
        limit = min(_header_int(req, "x-amz-max-parts", 1000), 1000)
        sizes = [int(seg[1]) for seg in view.segments]
        page = list(enumerate(sizes, start=1))[marker:marker + limit]
        parts: list[xml.Node] = [
            ("PartsCount", len(sizes)), ("PartNumberMarker", marker),
            ("NextPartNumberMarker", page[-1][0] if page else marker), ("MaxParts", limit),
            ("IsTruncated", marker + len(page) < len(sizes)),
        ]
        parts += [("Part", [("PartNumber", n), ("Size", size)]) for n, size in page]
        nodes.append(("ObjectParts", parts))
    if "StorageClass" in wanted:
        nodes.append(("StorageClass", view.storage_class))
    if "ObjectSize" in wanted:
        nodes.append(("ObjectSize", view.size))
    return xml_response(xml.render("GetObjectAttributesResponse", nodes)).header(
        "last-modified", http_date(view.last_modified))


def _header_int(req: S3Request, name: str, default: int) -> int:
    raw = req.headers.get(name, "").strip()
    if not raw:
        return default
    if not raw.isdigit():
        raise errors.InvalidArgument(f"Invalid {name}", ArgumentName=name, ArgumentValue=raw)
    return int(raw)
