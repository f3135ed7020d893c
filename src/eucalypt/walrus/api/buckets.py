"""Bucket handlers: ListBuckets, Create/Delete/HeadBucket, GetBucketLocation, and the
bucket configurations Walrus does not keep (answered as "none configured")."""

from __future__ import annotations

import base64

from eucalypt.walrus import errors, xml
from eucalypt.walrus.api.common import int_param, owner_nodes, requester
from eucalypt.walrus.body import read_small_body
from eucalypt.walrus.http import Response, S3Request, empty_response, xml_response
from eucalypt.walrus.security import acl_from_request, require_owner_or
from eucalypt.walrus.services import Context
from eucalypt.walrus.services import buckets as svc


async def list_buckets(ctx: Context, req: S3Request) -> Response:
    principal = requester(req)
    if not principal.authenticated:
        raise errors.AccessDenied()
    rows = await svc.list_buckets(ctx, principal)  # in name order
    # Paginated form: prefix, max-buckets, continuation-token (the last name returned).
    prefix = req.query.get("prefix", "")
    token = req.query.get("continuation-token", "")
    limit = int_param(req, "max-buckets", 10000, lo=1)
    if limit > 10000:
        raise errors.InvalidArgument("Argument max-buckets must be between 1 and 10000",
                                     ArgumentName="max-buckets", ArgumentValue=str(limit))
    after = ""
    if token:
        try:
            after = base64.urlsafe_b64decode(token.encode("ascii")).decode("utf-8")
        except (ValueError, UnicodeError) as exc:
            raise errors.InvalidArgument("The continuation token provided is incorrect",
                                         ArgumentName="continuation-token") from exc
    rows = [b for b in rows if b.name.startswith(prefix) and b.name > after]
    page, more = rows[:limit], len(rows) > limit
    nodes: list[xml.Node] = [
        ("Owner", owner_nodes(principal.account_id, principal.display_name)),
        ("Buckets", [("Bucket", [("Name", b.name), ("CreationDate", b.created_at),
                                 ("BucketRegion", b.location or ctx.config.region)])
                     for b in page]),
    ]
    if more:
        last = page[-1].name.encode("utf-8")
        nodes.append(("ContinuationToken", base64.urlsafe_b64encode(last).decode("ascii")))
    if "prefix" in req.query:
        nodes.append(("Prefix", prefix))
    return xml_response(xml.render("ListAllMyBucketsResult", nodes))


async def create_bucket(ctx: Context, req: S3Request) -> Response:
    principal = requester(req)
    if not principal.authenticated:
        raise errors.AccessDenied()
    name = req.require_bucket()
    svc.validate_bucket_name(name)
    acl = acl_from_request(req.headers)
    region = ctx.config.region
    location = region
    body = await read_small_body(req, limit=64 << 10)
    if body.strip():
        root = xml.parse(body, "CreateBucketConfiguration")
        constraint = xml.child_text(root, "LocationConstraint")
        if constraint:
            if constraint != region:
                raise errors.InvalidLocationConstraint(
                    f"The specified location-constraint is not valid: {constraint} "
                    f"(this Walrus serves {region})", LocationConstraint=constraint)
            location = constraint
    await svc.create_bucket(ctx, name, principal, location, acl)
    return empty_response().header("location", f"/{name}")


async def delete_bucket(ctx: Context, req: S3Request) -> Response:
    bucket = await svc.get_bucket(ctx, req.require_bucket())
    principal = requester(req)
    if not (principal.privileged or principal.account_id == bucket.owner_id):
        raise errors.AccessDenied()
    await svc.delete_bucket(ctx, bucket)
    return empty_response(204)


async def head_bucket(ctx: Context, req: S3Request) -> Response:
    bucket = await svc.get_bucket(ctx, req.require_bucket())
    require_owner_or(bucket.acl, requester(req), "READ")
    return empty_response().header("x-amz-bucket-region", bucket.location or ctx.config.region)


async def get_bucket_location(ctx: Context, req: S3Request) -> Response:
    bucket = await svc.get_bucket(ctx, req.require_bucket())
    require_owner_or(bucket.acl, requester(req), "READ")
    location = bucket.location or ctx.config.region
    return xml_response(xml.render_text("LocationConstraint", location))


async def get_bucket_versioning(ctx: Context, req: S3Request) -> Response:
    bucket = await svc.get_bucket(ctx, req.require_bucket())
    require_owner_or(bucket.acl, requester(req), "READ")
    return xml_response(xml.render("VersioningConfiguration", []))


def _not_configured(error: type[errors.S3Error]):  # type: ignore[no-untyped-def]
    async def handler(ctx: Context, req: S3Request) -> Response:
        bucket = await svc.get_bucket(ctx, req.require_bucket())
        require_owner_or(bucket.acl, requester(req), "READ")
        raise error(BucketName=bucket.name)

    return handler


get_bucket_policy = _not_configured(errors.NoSuchBucketPolicy)
get_bucket_cors = _not_configured(errors.NoSuchCORSConfiguration)
get_bucket_lifecycle = _not_configured(errors.NoSuchLifecycleConfiguration)
get_bucket_tagging = _not_configured(errors.NoSuchTagSet)
get_bucket_encryption = _not_configured(errors.ServerSideEncryptionConfigurationNotFoundError)
