"""Images: Register, Describe, Deregister, and the launchPermission attribute.

Images are registered from objects in Walrus: a whole disk (raw or qcow2),
or a kernel (``KernelId=true``, the Eucalyptus convention) or ramdisk
(``RamdiskId=true``) for paravirtual triples. Registration starts
``pending``; the CLC then reads the object once for its size and SHA-256
(the digest the nodes check) and the image becomes ``available``, or
``failed`` with the reason.

An ``ImageLocation`` ending in ``.manifest.xml`` is an EC2 bundle
(``eucalypt bundle``, ``euca-bundle-image``, ``ec2-bundle-image``): the
manifest is read at once for the image's type (machine, kernel, ramdisk),
architecture and kernel/ramdisk, and the image is ``source="bundle"``.
Then, in the background, the CLC hands the owner's certificates to Walrus's
image service (``POST /_image/<bucket>/<manifest>``), which verifies the
signature and every part, decrypts with the cloud's key and caches the
image; its SHA-256 and size are recorded and the image becomes
``available`` -- or ``failed`` with Walrus's reason (tampered part, wrong
signature, another cloud's key). NCs then fetch the decrypted image from
that endpoint (``clc/instances.py`` ``image_ref``).
"""

from __future__ import annotations

import json
import logging
from typing import Any
from xml.etree.ElementTree import ParseError

import defusedxml.ElementTree as DET
import httpx
from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from eucalypt.auth import HttpxSigV4Auth
from eucalypt.bundle import IMAGE_ENDPOINT
from eucalypt.bundle.errors import BundleError
from eucalypt.bundle.manifest import MANIFEST_SUFFIX, MAX_MANIFEST_BYTES, Manifest, parse
from eucalypt.clc.actions.common import TagGetters, tags_for
from eucalypt.clc.actions.filters import apply_filters
from eucalypt.clc.actions.tagging import apply_tag_specifications, drop_tags
from eucalypt.clc.context import RequestContext, Services
from eucalypt.clc.ec2.errors import InvalidParameterValue, UnauthorizedOperation, not_found
from eucalypt.clc.ids import IMAGE_PREFIXES, check_ids, new_id
from eucalypt.clc.models import Image, LaunchPermission, User, UserCertificate
from eucalypt.clc.storage import ObjectMissing
from eucalypt.rpc.keys import ComponentKeys

log = logging.getLogger("eucalypt.clc.images")
PREFIX = {"machine": "emi", "kernel": "eki", "ramdisk": "eri"}


def split_location(location: str) -> tuple[str, str]:
    """``bucket/key`` (also ``s3://bucket/key`` or ``/bucket/key``) -> (bucket, key)."""
    loc = location.removeprefix("s3://").lstrip("/")
    bucket, _, key = loc.partition("/")
    if not bucket or not key:
        raise InvalidParameterValue(
            f"Invalid ImageLocation '{location}': give bucket/key of an object in Walrus."
        )
    return bucket, key


def visible(account: str, is_admin: bool):  # type: ignore[no-untyped-def]
    """SQL condition: images the caller may see (and launch)."""
    if is_admin:
        return Image.id.is_not(None)
    shared = select(LaunchPermission.image_id).where(LaunchPermission.account_id == account)
    return or_(Image.account_id == account, Image.is_public.is_(True), Image.id.in_(shared))


def get_launchable(s: Session, account: str, is_admin: bool, image_id: str) -> Image:
    image = s.scalar(select(Image).where(Image.id == image_id, visible(account, is_admin)))
    if image is None:
        raise not_found("InvalidAMIID.NotFound", f"The image id '[{image_id}]' does not exist")
    return image


def _own(s: Session, ctx: RequestContext, image_id: str) -> Image:
    check_ids([image_id], IMAGE_PREFIXES, "InvalidAMIID.Malformed")
    image = s.get(Image, image_id)
    if image is None or not (ctx.is_admin or image.account_id == ctx.caller.account_id):
        raise not_found("InvalidAMIID.NotFound", f"The image id '[{image_id}]' does not exist")
    return image


class BundleRefused(Exception):
    """Walrus would not verify or decrypt a bundle; ``str()`` is ``Code: message``."""


def _walrus_client(services: Services, read_timeout: float) -> httpx.AsyncClient:
    """An HTTP client signing as the CLC (a component: Walrus's image service accepts it)."""
    config = services.config
    credential = ComponentKeys.load(config.keys_dir).credential("clc")
    return httpx.AsyncClient(
        auth=HttpxSigV4Auth(credential, region=config.region, service="s3"),
        timeout=httpx.Timeout(30.0, read=read_timeout),
    )


def _walrus_error(reply: httpx.Response) -> str:
    """``Code: Message`` from Walrus's S3 error envelope (or the status and body)."""
    try:
        root = DET.fromstring(reply.content)
        code, message = root.findtext("Code") or "", root.findtext("Message") or ""
        if code:
            return f"{code}: {message}"
    except (ParseError, ValueError):
        pass
    return f"Walrus answered {reply.status_code}: {reply.text[:200]}"


async def read_manifest(services: Services, bucket: str, key: str) -> Manifest:
    """The bundle manifest at ``bucket/key`` (fields only: Walrus verifies the signature)."""
    async with _walrus_client(services, 60.0) as http:
        try:
            reply = await http.get(services.walrus.url(bucket, key))
        except httpx.HTTPError as exc:
            raise InvalidParameterValue(f"Cannot read s3://{bucket}/{key}: {exc!r}") from exc
    if reply.status_code != 200:
        raise InvalidParameterValue(
            f"Cannot read the manifest s3://{bucket}/{key}: {_walrus_error(reply)}",
            code="InvalidManifest",
        )
    if len(reply.content) > MAX_MANIFEST_BYTES:
        raise InvalidParameterValue("The manifest is too large.", code="InvalidManifest")
    try:
        return parse(reply.content).manifest
    except BundleError as exc:
        raise InvalidParameterValue(
            f"s3://{bucket}/{key} is not a bundle manifest: {exc.message}", code="InvalidManifest"
        ) from exc


def owner_certificates(s: Session, account_id: str) -> list[str]:
    """PEMs of the active certificates of the account's users (who may sign its bundles)."""
    return list(
        s.scalars(
            select(UserCertificate.pem)
            .join(User, UserCertificate.user_id == User.id)
            .where(User.account_id == account_id, UserCertificate.active.is_(True))
            .order_by(UserCertificate.created_at.desc())
        )
    )


async def verify_bundle(services: Services, image: Image) -> dict[str, Any]:
    """Ask Walrus to verify and decrypt the bundle (see the module docstring)."""
    bucket, key = split_location(image.location)
    certificates = await services.db.run(lambda s: owner_certificates(s, image.account_id))
    async with _walrus_client(services, 3600.0) as http:
        reply = await http.post(
            services.walrus.url(IMAGE_ENDPOINT, f"{bucket}/{key}"),
            content=json.dumps({"certificates": certificates}).encode(),
            headers={"content-type": "application/json"},
        )
    if reply.status_code != 200:
        raise BundleRefused(_walrus_error(reply))
    answer: dict[str, Any] = reply.json()
    return answer


async def finish_registration(services: Services, image_id: str) -> None:
    """Read the image's object once (or have Walrus decrypt the bundle); available or failed."""
    image = await services.db.run(lambda s: s.get(Image, image_id))
    if image is None:
        return
    bucket, key = split_location(image.location)
    try:
        if image.source == "bundle":
            answer = await verify_bundle(services, image)
            sha256, size, fmt = str(answer["sha256"]), int(answer["size"]), str(answer["format"])
        else:
            digest = await services.walrus.digest(bucket, key)
            sha256, size, fmt = digest.sha256, digest.size, digest.disk_format
    except (ObjectMissing, BundleRefused, OSError, Exception) as exc:  # any failure: failed
        reason = str(exc) or type(exc).__name__
        log.warning("image registration failed", extra={"image_id": image_id, "error": reason})

        def fail(s: Session) -> None:
            row = s.get(Image, image_id)
            if row is not None:
                row.state, row.state_reason = "failed", reason[:255]

        await services.db.run(fail)
        return

    def done(s: Session) -> None:
        row = s.get(Image, image_id)
        if row is not None:
            row.state, row.sha256, row.size = "available", sha256, size
            row.disk_format = "qcow2" if fmt == "qcow2" else "raw"

    await services.db.run(done)
    log.info("image available", extra={"image_id": image_id, "size": size})


async def register_image(ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
    account = ctx.caller.account_id
    name = params["Name"]
    location = params.get("ImageLocation")
    if not location:
        raise InvalidParameterValue(
            "ImageLocation is required (bucket/key of the image object in Walrus).",
            code="MissingParameter",
        )
    bucket, key = split_location(location)
    kernel_id, ramdisk_id = params.get("KernelId"), params.get("RamdiskId")
    arch = params.get("Architecture")
    source = "object"
    image_type = "machine"
    if key.endswith(MANIFEST_SUFFIX):
        source = "bundle"
        manifest = await read_manifest(ctx.services, bucket, key)
        image_type = manifest.image_type
        # Eucalyptus marks kernel and ramdisk bundles with kernel_id/ramdisk_id "true" too.
        if manifest.kernel_id == "true":
            image_type = "kernel"
        elif manifest.ramdisk_id == "true":
            image_type = "ramdisk"
        elif image_type == "machine":
            kernel_id = kernel_id or manifest.kernel_id
            ramdisk_id = ramdisk_id or manifest.ramdisk_id
        arch = arch or manifest.architecture
    if kernel_id == "true" or image_type == "kernel":
        image_type, kernel_id, ramdisk_id = "kernel", None, None
    elif ramdisk_id == "true" or image_type == "ramdisk":
        image_type, kernel_id, ramdisk_id = "ramdisk", None, None
    arch = arch or "x86_64"
    if arch not in ("x86_64", "i386"):
        raise InvalidParameterValue(f"Unsupported architecture '{arch}'.")

    def work(s: Session) -> str:
        for ref, kind in ((kernel_id, "kernel"), (ramdisk_id, "ramdisk")):
            if ref:
                img = get_launchable(s, account, ctx.is_admin, ref)
                if img.image_type != kind:
                    raise InvalidParameterValue(f"{ref} is not a {kind} image.")
        if s.scalar(select(Image).where(Image.account_id == account, Image.name == name)):
            raise InvalidParameterValue(
                f"An image named '{name}' already exists in this account.",
                code="InvalidAMIName.Duplicate",
            )
        image = Image(
            id=new_id(PREFIX[image_type]),
            account_id=account,
            name=name,
            description=params.get("Description", ""),
            image_type=image_type,
            state="pending",
            location=f"{bucket}/{key}",
            source=source,
            architecture=arch,
            root_device_name=params.get("RootDeviceName", "/dev/vda"),
            kernel_id=kernel_id,
            ramdisk_id=ramdisk_id,
        )
        s.add(image)
        s.flush()
        apply_tag_specifications(s, account, image.id, "image", params.get("TagSpecifications"))
        return image.id

    image_id = await ctx.services.db.run(work)
    ctx.services.background(finish_registration(ctx.services, image_id))
    return {"ImageId": image_id}


def render_image(image: Image, tags: list[dict[str, str]]) -> dict[str, Any]:
    item: dict[str, Any] = {
        "ImageId": image.id,
        "ImageLocation": image.location,
        "State": image.state,
        "OwnerId": image.account_id,
        "Public": image.is_public,
        "Architecture": image.architecture,
        "ImageType": image.image_type,
        "Name": image.name,
        "Description": image.description,
        "RootDeviceType": "instance-store",
        "RootDeviceName": image.root_device_name,
        "VirtualizationType": "paravirtual" if image.kernel_id else "hvm",
        "Hypervisor": "xen",
        "CreationDate": image.created_at.strftime("%Y-%m-%dT%H:%M:%S.000Z"),
        "BlockDeviceMappings": [],
        "Tags": tags,
    }
    if image.kernel_id:
        item["KernelId"] = image.kernel_id
    if image.ramdisk_id:
        item["RamdiskId"] = image.ramdisk_id
    if image.state_reason:
        item["StateReason"] = {"Code": "Client.ImageError", "Message": image.state_reason}
    return item


async def describe_images(ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
    account, admin = ctx.caller.account_id, ctx.is_admin
    owners = params.get("Owners") or []
    executable_by = params.get("ExecutableBy") or []
    ids = params.get("ImageIds") or []
    check_ids(ids, IMAGE_PREFIXES, "InvalidAMIID.Malformed")

    def work(s: Session) -> list[dict[str, Any]]:
        query = select(Image).where(visible(account, admin)).order_by(Image.id)
        if ids:
            query = query.where(Image.id.in_(ids))
        if owners:
            wanted = {account if o == "self" else o for o in owners}
            query = query.where(Image.account_id.in_(wanted))
        images = list(s.scalars(query))
        if executable_by:
            shared = set(
                s.scalars(
                    select(LaunchPermission.image_id).where(LaunchPermission.account_id == account)
                )
            )
            keep = []
            for img in images:
                for who in executable_by:
                    if (
                        (who == "all" and img.is_public)
                        or (
                            who == "self"
                            and (img.account_id == account or img.is_public or img.id in shared)
                        )
                        or who == img.account_id
                    ):
                        keep.append(img)
                        break
            images = keep
        tags = tags_for(s, [i.id for i in images])
        return [render_image(i, tags.get(i.id, [])) for i in images]

    items = await ctx.services.db.run(work)
    if ids:
        missing = sorted(set(ids) - {i["ImageId"] for i in items})
        if missing and not owners and not executable_by:
            raise not_found(
                "InvalidAMIID.NotFound", f"The image id '[{missing[0]}]' does not exist"
            )
    items = apply_filters(
        items,
        params.get("Filters"),
        TagGetters(
            {
                "image-id": lambda i: [i["ImageId"]],
                "name": lambda i: [i["Name"]],
                "state": lambda i: [i["State"]],
                "image-type": lambda i: [i["ImageType"]],
                "architecture": lambda i: [i["Architecture"]],
                "owner-id": lambda i: [i["OwnerId"]],
                "is-public": lambda i: ["true" if i["Public"] else "false"],
                "kernel-id": lambda i: [i.get("KernelId", "")],
                "ramdisk-id": lambda i: [i.get("RamdiskId", "")],
                "description": lambda i: [i["Description"]],
                "manifest-location": lambda i: [i["ImageLocation"]],
                "root-device-type": lambda i: [i["RootDeviceType"]],
                "virtualization-type": lambda i: [i["VirtualizationType"]],
            }
        ),
    )
    return {"Images": items}


async def deregister_image(ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
    def work(s: Session) -> None:
        image = _own(s, ctx, params["ImageId"])
        drop_tags(s, image.id)
        s.delete(image)

    await ctx.services.db.run(work)
    return {"Return": True}


def _permissions(s: Session, image: Image) -> list[dict[str, str]]:
    perms: list[dict[str, str]] = [{"Group": "all"}] if image.is_public else []
    perms += [
        {"UserId": p.account_id}
        for p in s.scalars(
            select(LaunchPermission)
            .where(LaunchPermission.image_id == image.id)
            .order_by(LaunchPermission.account_id)
        )
    ]
    return perms


async def describe_image_attribute(ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
    attribute = params["Attribute"]

    def work(s: Session) -> dict[str, Any]:
        image = _own(s, ctx, params["ImageId"])
        out: dict[str, Any] = {"ImageId": image.id}
        if attribute == "launchPermission":
            out["LaunchPermissions"] = _permissions(s, image)
        elif attribute == "description":
            out["Description"] = {"Value": image.description}
        elif attribute == "kernel":
            out["KernelId"] = {"Value": image.kernel_id or ""}
        elif attribute == "ramdisk":
            out["RamdiskId"] = {"Value": image.ramdisk_id or ""}
        elif attribute == "blockDeviceMapping":
            out["BlockDeviceMappings"] = []
        else:
            raise InvalidParameterValue(
                f"Unsupported attribute '{attribute}'.", code="InvalidRequest"
            )
        return out

    return await ctx.services.db.run(work)


async def modify_image_attribute(ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
    attribute = params.get("Attribute", "launchPermission")
    add: list[dict[str, Any]] = []
    remove: list[dict[str, Any]] = []
    if "LaunchPermission" in params:
        add = list(params["LaunchPermission"].get("Add", []))
        remove = list(params["LaunchPermission"].get("Remove", []))
    elif params.get("OperationType") in ("add", "remove"):
        target = add if params["OperationType"] == "add" else remove
        target += [{"UserId": u} for u in params.get("UserIds", [])]
        target += [{"Group": g} for g in params.get("UserGroups", [])]
    if attribute == "description" or "Description" in params:
        desc = params.get("Description", {}).get("Value", params.get("Value", ""))

        def set_desc(s: Session) -> None:
            _own(s, ctx, params["ImageId"]).description = desc

        await ctx.services.db.run(set_desc)
        return {}
    if attribute != "launchPermission":
        raise InvalidParameterValue(f"Unsupported attribute '{attribute}'.")

    def work(s: Session) -> None:
        image = _own(s, ctx, params["ImageId"])
        if image.account_id != ctx.caller.account_id and not ctx.is_admin:
            raise UnauthorizedOperation("Only the image's owner may share it.")
        for perm in add:
            if perm.get("Group") == "all":
                image.is_public = True
            elif perm.get("UserId") and s.get(LaunchPermission, (image.id, perm["UserId"])) is None:
                s.add(LaunchPermission(image_id=image.id, account_id=perm["UserId"]))
        for perm in remove:
            if perm.get("Group") == "all":
                image.is_public = False
            elif perm.get("UserId"):
                row = s.get(LaunchPermission, (image.id, perm["UserId"]))
                if row is not None:
                    s.delete(row)

    await ctx.services.db.run(work)
    return {}


async def reset_image_attribute(ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
    if params["Attribute"] != "launchPermission":
        raise InvalidParameterValue("Only launchPermission can be reset.")

    def work(s: Session) -> None:
        image = _own(s, ctx, params["ImageId"])
        image.is_public = False
        for row in s.scalars(select(LaunchPermission).where(LaunchPermission.image_id == image.id)):
            s.delete(row)

    await ctx.services.db.run(work)
    return {}
