"""Get/PutBucketAcl and Get/PutObjectAcl: canned ACLs, grant headers or an XML policy."""

from __future__ import annotations

from sqlalchemy import Connection, update

from eucalypt.walrus import errors, xml
from eucalypt.walrus.api.common import owner_nodes, requester
from eucalypt.walrus.body import read_small_body
from eucalypt.walrus.http import Response, S3Request, empty_response, xml_response
from eucalypt.walrus.models import Object
from eucalypt.walrus.security import (
    GROUPS,
    PERMISSIONS,
    XSI,
    Acl,
    GrantSpec,
    acl_from_request,
    canonical_id,
    require,
    valid_canonical_id,
)
from eucalypt.walrus.services import Context
from eucalypt.walrus.services import buckets as bsvc
from eucalypt.walrus.services import objects as osvc
from eucalypt.walrus.services.buckets import store_grants


def ordered_grants(acl: Acl) -> list[GrantSpec]:
    """Groups first, then other accounts, then the bucket owner (each in stored order)."""
    bucket_owner = canonical_id(acl.bucket_owner_id or acl.owner_id)

    def rank(g: GrantSpec) -> int:
        return 0 if g.grantee_type == "Group" else 2 if g.grantee == bucket_owner else 1

    return sorted(acl.effective_grants(), key=rank)


def render_acl(acl: Acl, names: dict[str, str]) -> bytes:
    """The AccessControlPolicy; ``names`` gives display names by canonical id."""
    grants: list[xml.Node] = []
    for g in ordered_grants(acl):
        if g.grantee_type == "Group":
            grantee: list[xml.Node] = [("URI", g.grantee)]
        else:
            name = g.display_name or names.get(g.grantee)
            grantee = [("ID", g.grantee), ("DisplayName", name or None)]
        tag = f'Grantee xmlns:xsi="{XSI}" xsi:type="{g.grantee_type}"'
        grants.append(("Grant", [(tag, grantee), ("Permission", g.permission)]))
    return xml.render("AccessControlPolicy", [
        ("Owner", owner_nodes(acl.owner_id, acl.owner_name)),
        ("AccessControlList", grants),
    ])


def parse_policy(body: bytes) -> list[GrantSpec]:
    root = xml.parse(body, "AccessControlPolicy", error=errors.MalformedACLError)
    acl = root.find("AccessControlList")
    if acl is None:
        raise errors.MalformedACLError()
    grants: list[GrantSpec] = []
    for grant in acl.findall("Grant"):
        grantee = grant.find("Grantee")
        permission = (xml.child_text(grant, "Permission") or "").strip()
        if grantee is None or permission not in PERMISSIONS:
            raise errors.MalformedACLError()
        kind = grantee.get(f"{{{XSI}}}type", "")
        uid, uri = xml.child_text(grantee, "ID"), xml.child_text(grantee, "URI")
        if xml.child_text(grantee, "EmailAddress") is not None or kind == "AmazonCustomerByEmail":
            raise errors.S3NotImplemented("Grants by e-mail address are not supported")
        if uid:
            name = xml.child_text(grantee, "DisplayName") or ""
            grants.append(GrantSpec("CanonicalUser", valid_canonical_id(uid), permission, name))
        elif uri and uri.strip() in GROUPS:
            grants.append(GrantSpec("Group", uri.strip(), permission))
        else:
            raise errors.InvalidArgument("Invalid grantee", ArgumentName="AccessControlList")
    return grants


async def _requested_acl(req: S3Request) -> tuple[str, list[GrantSpec]]:
    body = await read_small_body(req, limit=256 << 10)
    if body.strip():
        if "x-amz-acl" in req.headers or any(h.startswith("x-amz-grant-") for h in req.headers):
            raise errors.UnexpectedContent(
                "This request does not support content when ACL headers are given")
        return "custom", parse_policy(body)
    if "x-amz-acl" not in req.headers and not any(
            h.startswith("x-amz-grant-") for h in req.headers):
        raise errors.MalformedACLError()
    return acl_from_request(req.headers)


async def get_bucket_acl(ctx: Context, req: S3Request) -> Response:
    bucket = await bsvc.get_bucket(ctx, req.require_bucket())
    require(bucket.acl, requester(req), "READ_ACP")
    return xml_response(render_acl(bucket.acl, ctx.display_names))


async def put_bucket_acl(ctx: Context, req: S3Request) -> Response:
    bucket = await bsvc.get_bucket(ctx, req.require_bucket())
    require(bucket.acl, requester(req), "WRITE_ACP")
    canned, grants = await _requested_acl(req)
    await bsvc.set_bucket_acl(ctx, bucket, canned, grants)
    return empty_response()


async def _object(ctx: Context, req: S3Request) -> tuple[bsvc.BucketView, osvc.ObjectView]:
    bucket = await bsvc.get_bucket(ctx, req.require_bucket())
    try:
        view = await osvc.get_object(ctx, bucket, req.require_key())
    except errors.NoSuchKey:
        require(bucket.acl, requester(req), "READ")
        raise
    return bucket, view


async def get_object_acl(ctx: Context, req: S3Request) -> Response:
    _, view = await _object(ctx, req)
    require(view.acl, requester(req), "READ_ACP")
    return xml_response(render_acl(view.acl, ctx.display_names))


async def put_object_acl(ctx: Context, req: S3Request) -> Response:
    bucket, view = await _object(ctx, req)
    require(view.acl, requester(req), "WRITE_ACP")
    canned, grants = await _requested_acl(req)

    def work(conn: Connection) -> None:
        result = conn.execute(update(Object).where(Object.id == view.id).values(acl=canned))
        if result.rowcount != 1:
            raise errors.NoSuchKey(Key=view.key)
        store_grants(conn, bucket.id, view.id, grants if canned == "custom" else [])

    await ctx.write(work)
    return empty_response()
