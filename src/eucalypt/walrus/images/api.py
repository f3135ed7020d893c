"""The internal image endpoint: ``/_image/<bucket>/<manifest key>`` (components only).

- ``GET``  the decrypted image's bytes, with ``x-eucalypt-image-sha256``,
  ``-size``, ``-format`` and ``-cache`` (hit | miss | wait) headers; what an
  NC fetches to boot (it checks the SHA-256 the CLC recorded).
- ``HEAD`` the same headers (decrypting first if needed).
- ``POST`` with ``{"certificates": [PEM, ...]}``: verify the manifest against
  the owner's certificates, record them, decrypt into the cache and answer
  JSON (sha256, size, format and the manifest's fields). The CLC calls this
  when an image is registered.

Signed with a component's key (the NC's, the CLC's) like any internal
request; users, administrators included, are refused: the endpoint hands
out decrypted images regardless of ACLs.
"""

from __future__ import annotations

import json
import os
from collections.abc import AsyncIterator

from eucalypt.bundle import IMAGE_ENDPOINT, SHA256_HEADER
from eucalypt.walrus import errors
from eucalypt.walrus.body import read_small_body
from eucalypt.walrus.http import Response, S3Request
from eucalypt.walrus.images.service import CHUNK, ImageService, Served
from eucalypt.walrus.services import Context

BUCKET = IMAGE_ENDPOINT


def _target(req: S3Request) -> tuple[str, str]:
    bucket, _, key = (req.key or "").partition("/")
    if not bucket or not key:
        raise errors.InvalidArgument(f"Use /{BUCKET}/<bucket>/<manifest key>.")
    return bucket, key


def _require_component(req: S3Request) -> None:
    principal = req.principal
    # Component keys are privileged and belong to no account (eucalypt.rpc.keys).
    if principal is None or not principal.privileged or principal.account_id:
        raise errors.AccessDenied("The image service answers the cloud's components only.")


def _headers(served: Served) -> list[tuple[str, str]]:
    image = served.image
    return [
        ("content-type", "application/octet-stream"),
        ("etag", f'"{image.sha256}"'),
        (SHA256_HEADER, image.sha256),
        ("x-eucalypt-image-size", str(image.size)),
        ("x-eucalypt-image-format", image.disk_format),
        ("x-eucalypt-image-cache", served.cache),
    ]


def _closer(ctx: Context, fd: int):  # type: ignore[no-untyped-def]
    async def close() -> None:
        await ctx.io(os.close, fd)

    return close


async def _stream(ctx: Context, fd: int, size: int) -> AsyncIterator[bytes]:
    pos = 0
    while pos < size:
        data = await ctx.io(os.pread, fd, min(CHUNK, size - pos), pos)
        if not data:
            raise errors.InternalError("the cached image is shorter than recorded")
        pos += len(data)
        yield data


async def get_image(ctx: Context, req: S3Request) -> Response:
    _require_component(req)
    bucket, key = _target(req)
    served = await ImageService(ctx).get(bucket, key)
    size = served.image.size
    if req.method == "HEAD":
        return Response(headers=_headers(served), length=size, cleanup=_closer(ctx, served.fd))
    return Response(headers=_headers(served), stream=_stream(ctx, served.fd, size), length=size,
                    cleanup=_closer(ctx, served.fd))


async def verify_image(ctx: Context, req: S3Request) -> Response:
    _require_component(req)
    bucket, key = _target(req)
    try:
        body = json.loads(await read_small_body(req, 1 << 20) or b"{}")
        certificates = [str(c) for c in body.get("certificates", [])]
    except (ValueError, AttributeError, TypeError) as exc:
        raise errors.InvalidArgument('Send {"certificates": ["<PEM>", ...]}.') from exc
    served = await ImageService(ctx).get(bucket, key, certificates)
    os.close(served.fd)
    m, image = served.manifest, served.image
    reply = {
        "location": image.location,
        "sha256": image.sha256,
        "size": image.size,
        "format": image.disk_format,
        "cache": served.cache,
        "name": m.name,
        "user": m.user,
        "image_type": m.image_type,
        "architecture": m.architecture,
        "kernel_id": m.kernel_id,
        "ramdisk_id": m.ramdisk_id,
        "signer_serial": f"{served.signer.serial_number:x}",
    }
    return Response(headers=[("content-type", "application/json")],
                    body=json.dumps(reply).encode())


async def handle(ctx: Context, req: S3Request) -> Response:
    """Dispatch ``/_image/...`` by method (see the module docstring)."""
    if req.method in ("GET", "HEAD"):
        return await get_image(ctx, req)
    if req.method == "POST":
        return await verify_image(ctx, req)
    raise errors.MethodNotAllowed(Method=req.method, ResourceType="IMAGE")
