"""The S3 dispatch table: ``(method, target, subresource) -> handler``.

``target`` is ``service`` (no bucket), ``bucket`` or ``object``; the
subresource is the first S3 subresource named in the query (``acl``,
``uploads``, ``uploadId``, ...), or ``None``. A known S3 subresource that
Walrus does not implement answers ``NotImplemented`` (501); a method S3 does
not define for the target answers ``MethodNotAllowed`` (405).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from eucalypt.walrus import errors
from eucalypt.walrus.api import acl, attributes, buckets, listing, multipart, objects, post
from eucalypt.walrus.http import Response, S3Request
from eucalypt.walrus.images import api as images
from eucalypt.walrus.services import Context

Handler = Callable[[Context, S3Request], Awaitable[Response]]
RouteKey = tuple[str, str, str | None]

# Every subresource S3 defines (so we can tell "not implemented" from a plain parameter).
SUBRESOURCES = (
    "uploadId", "uploads", "acl", "location", "delete", "versioning", "policy", "cors",
    "lifecycle", "tagging", "encryption", "website", "logging", "notification", "replication",
    "requestPayment", "accelerate", "object-lock", "retention", "legal-hold", "torrent",
    "restore", "select", "versions", "ownershipControls", "publicAccessBlock", "analytics",
    "metrics", "inventory", "intelligent-tiering", "attributes", "policyStatus",
    "renameObject", "session",
)

ROUTES: dict[RouteKey, Handler] = {
    ("GET", "service", None): buckets.list_buckets,
    # buckets
    ("PUT", "bucket", None): buckets.create_bucket,
    ("DELETE", "bucket", None): buckets.delete_bucket,
    ("HEAD", "bucket", None): buckets.head_bucket,
    ("GET", "bucket", None): listing.list_objects,
    ("GET", "bucket", "location"): buckets.get_bucket_location,
    ("GET", "bucket", "versions"): listing.list_object_versions,
    ("GET", "bucket", "versioning"): buckets.get_bucket_versioning,
    ("GET", "bucket", "policy"): buckets.get_bucket_policy,
    ("GET", "bucket", "cors"): buckets.get_bucket_cors,
    ("GET", "bucket", "lifecycle"): buckets.get_bucket_lifecycle,
    ("GET", "bucket", "tagging"): buckets.get_bucket_tagging,
    ("GET", "bucket", "encryption"): buckets.get_bucket_encryption,
    ("GET", "bucket", "acl"): acl.get_bucket_acl,
    ("PUT", "bucket", "acl"): acl.put_bucket_acl,
    ("POST", "bucket", "delete"): objects.delete_objects,
    ("POST", "bucket", None): post.post_object,
    ("GET", "bucket", "uploads"): multipart.list_uploads,
    # objects
    ("PUT", "object", None): objects.put_object,
    ("GET", "object", None): objects.get_object,
    ("HEAD", "object", None): objects.head_object,
    ("DELETE", "object", None): objects.delete_object,
    ("GET", "object", "acl"): acl.get_object_acl,
    ("PUT", "object", "acl"): acl.put_object_acl,
    ("GET", "object", "tagging"): objects.get_object_tagging,
    ("GET", "object", "attributes"): attributes.get_object_attributes,
    # multipart
    ("POST", "object", "uploads"): multipart.create_upload,
    ("PUT", "object", "uploadId"): multipart.upload_part,
    ("POST", "object", "uploadId"): multipart.complete_upload,
    ("DELETE", "object", "uploadId"): multipart.abort_upload,
    ("GET", "object", "uploadId"): multipart.list_parts,
}

METHODS = frozenset({"GET", "PUT", "POST", "DELETE", "HEAD"})


def subresource_of(req: S3Request) -> str | None:
    for name in SUBRESOURCES:
        if name in req.query:
            return name
    return None


def route(req: S3Request) -> Handler:
    """The handler for ``req``, or the S3 error saying why there is none."""
    if req.bucket == images.BUCKET:  # /_image/<bucket>/<manifest>: walrus/images/ (internal)
        return images.handle
    if req.method not in METHODS:
        raise errors.MethodNotAllowed(Method=req.method, ResourceType=req.target.upper())
    sub = subresource_of(req)
    handler = ROUTES.get((req.method, req.target, sub))
    if handler is not None:
        return handler
    if sub is not None:
        raise errors.S3NotImplemented(
            f"The {sub!r} subresource is not implemented for {req.method} on a {req.target}.")
    if req.target == "service":
        raise errors.MethodNotAllowed(Method=req.method, ResourceType="SERVICE")
    raise errors.MethodNotAllowed(Method=req.method, ResourceType=req.target.upper())
