"""Verify, decrypt and cache bundled images (the paper's Walrus image service).

For a manifest at ``bucket/key``: read and parse it; verify its signature
with the owner's certificates (given by the CLC at registration, or on
record since then; each must be issued by this cloud's CA); look the parts
up; and answer from the decrypted-image cache if it holds this exact
version (manifest and parts unchanged). Otherwise, under the entry's lock
(concurrent requests wait for the one decryption), decrypt with the cloud's
private key, checking every part's digest, into the cache, then evict the
least recently used entries over the cap. A refusal is recorded with the
version it was made for, so the same broken upload is not decrypted again.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from sqlalchemy import Connection, select

from eucalypt.bundle import crypto
from eucalypt.bundle.errors import BundleError, ManifestError, PartMissing, SignatureError
from eucalypt.bundle.manifest import (
    MAX_MANIFEST_BYTES,
    Manifest,
    ManifestPart,
    SignedManifest,
    parse,
)
from eucalypt.bundle.unbundle import Unbundled, decrypt_key_iv, unbundle
from eucalypt.config import Config
from eucalypt.walrus import errors
from eucalypt.walrus.images.cache import CachedImage, DecryptedImages
from eucalypt.walrus.images.errors import from_bundle_error, refused
from eucalypt.walrus.images.signers import SignerRecords
from eucalypt.walrus.models import Object
from eucalypt.walrus.services import Context
from eucalypt.walrus.services.buckets import BucketView
from eucalypt.walrus.services.objects import OpenObject, open_by_name, open_object

log = logging.getLogger("eucalypt.walrus.images")

CHUNK = 1 << 20
DEFAULT_MAX_GIB = 20.0
# The cloud's CA files, as eucalypt.clc.certs writes them into the keys directory.
CLOUD_CERT = "cloud-cert.pem"
CLOUD_KEY = "cloud-pk.pem"


@dataclass(frozen=True)
class ImageSettings:
    root: Path  # cache/ and signers/ live here
    max_bytes: int
    keys_dir: Path

    @classmethod
    def from_config(cls, config: Config) -> ImageSettings:
        # Optional settings (walrus.image_cache_dir, walrus.image_cache_max_gib) are read
        # if the configuration defines them; otherwise <data dir>/walrus/images, 20 GiB.
        root = getattr(config.walrus, "image_cache_dir", "") or (
            config.data_dir / "walrus" / "images"
        )
        gib = float(getattr(config.walrus, "image_cache_max_gib", DEFAULT_MAX_GIB))
        return cls(root=Path(root), max_bytes=int(gib * (1 << 30)), keys_dir=config.keys_dir)


@dataclass(frozen=True)
class Served:
    """A decrypted image ready to send: its entry and an open descriptor of its bytes."""

    image: CachedImage
    fd: int
    cache: str  # hit | miss (decrypted for this request) | wait (decrypted by another)
    manifest: Manifest
    signer: x509.Certificate


def _read_all(opened: OpenObject) -> bytes:
    out, pos = [], 0
    while pos < opened.view.size:
        data = opened.read(pos, min(CHUNK, opened.view.size - pos))
        out.append(data)
        pos += len(data)
    return b"".join(out)


def _part_versions(conn: Connection, bucket_id: int, keys: list[str]) -> dict[str, str]:
    found: dict[str, str] = {}
    for i in range(0, len(keys), 500):
        rows = conn.execute(
            select(Object.key, Object.generation)
            .where(Object.bucket_id == bucket_id, Object.key.in_(keys[i:i + 500]))
        )
        found.update({row.key: row.generation for row in rows})
    return found


def _token(manifest_generation: str, part_generations: list[str]) -> str:
    return hashlib.sha256("\0".join([manifest_generation, *part_generations]).encode()).hexdigest()


def _close_abandoned(task: asyncio.Future[tuple[CachedImage, int, str] | None]) -> None:
    """A decryption whose requester went away: close the descriptor it opened for it."""
    if task.cancelled() or task.exception() is not None:
        return
    result = task.result()
    if result is not None:
        os.close(result[1])


class ImageService:
    """Built per request from the Walrus context (all state is on disk)."""

    def __init__(self, ctx: Context, settings: ImageSettings | None = None) -> None:
        self.ctx = ctx
        self.settings = settings or ImageSettings.from_config(ctx.config)
        self.cache = DecryptedImages(self.settings.root / "cache", self.settings.max_bytes)
        self.signers = SignerRecords(self.settings.root / "signers")

    # -- the cloud's keys --------------------------------------------------------------
    def _cloud_cert(self) -> x509.Certificate:
        try:
            return crypto.load_certificate((self.settings.keys_dir / CLOUD_CERT).read_bytes())
        except FileNotFoundError:
            raise errors.InternalError("the cloud certificate is missing (eucalypt init)") from None

    def _trusted(self, pems: list[str]) -> list[tuple[str, x509.Certificate]]:
        ca = self._cloud_cert()
        good: list[tuple[str, x509.Certificate]] = []
        reasons: list[str] = []
        for pem in pems:
            try:
                cert = crypto.load_certificate(pem)
                crypto.check_issued_by(cert, ca)
            except SignatureError as exc:
                reasons.append(exc.message)
                continue
            good.append((pem, cert))
        if not good:
            why = "; ".join(reasons) or (
                "the image's owner has no certificate (`eucalypt admin cert` issues one)"
            )
            raise SignatureError(f"no valid signer certificate: {why}")
        return good

    # -- the request -------------------------------------------------------------------
    async def get(self, bucket: str, key: str, certificates: list[str] | None = None) -> Served:
        """The decrypted image of the manifest ``bucket/key`` (see the module docstring).

        ``certificates`` (PEM) are the owner's, passed by the CLC at registration;
        without them the certificates on record for this manifest are used.
        """
        location = f"{bucket}/{key}"
        bucket_view, generation, data = await self._read_manifest(bucket, key)
        try:
            signed = parse(data)
            pems = certificates if certificates is not None else self.signers.load(location)
            if pems is None:
                raise SignatureError(
                    "no signer certificate is on record for this manifest: register it as an "
                    "image first (RegisterImage passes the owner's certificates)"
                )
            trusted = await self.ctx.io(self._trusted, pems)
            signer = signed.signer(cert for _, cert in trusted)
        except BundleError as exc:
            log.warning("image refused", extra={"location": location, "code": exc.code,
                                                "error": exc.message})
            raise from_bundle_error(exc) from exc
        if certificates is not None:
            await self.ctx.io(self.signers.record, location, [pem for pem, _ in trusted])
        part_keys = signed.manifest.part_keys(key)
        versions = await self.ctx.read(lambda c: _part_versions(c, bucket_view.id, part_keys))
        missing = [k for k in part_keys if k not in versions]
        if missing:
            raise from_bundle_error(PartMissing(
                f"{len(missing)} of {len(part_keys)} parts are missing, first s3://{bucket}/"
                f"{missing[0]} (upload the whole bundle, manifest last)"))
        token = _token(generation, [versions[k] for k in part_keys])
        for _ in range(3):
            ready = await self._cached(location, token)
            if ready is not None:
                return Served(ready[0], ready[1], "hit", signed.manifest, signer)
            # Shielded: a requester that goes away does not abort the decryption others wait on.
            task = asyncio.ensure_future(
                self._produce_locked(location, token, signed, bucket_view, generation))
            try:
                result = await asyncio.shield(task)
            except asyncio.CancelledError:
                task.add_done_callback(_close_abandoned)
                raise
            if result is not None:
                entry, fd, how = result
                return Served(entry, fd, how, signed.manifest, signer)
        raise errors.InternalError("the decrypted image kept changing while being opened")

    async def _read_manifest(self, bucket: str, key: str) -> tuple[BucketView, str, bytes]:
        bucket_view, opened = await open_by_name(self.ctx, bucket, key)
        if opened is None:
            raise errors.NoSuchKey(Key=key)
        try:
            if opened.view.size > MAX_MANIFEST_BYTES:
                raise from_bundle_error(
                    ManifestError(f"s3://{bucket}/{key} is too large to be a manifest"))
            data = await self.ctx.io(_read_all, opened)
            return bucket_view, opened.view.generation, data
        finally:
            opened.close()

    async def _cached(self, location: str, token: str) -> tuple[CachedImage, int] | None:
        """A cache hit (entry + open descriptor), a recorded refusal (raised), or None."""
        opened = await self.ctx.io(self.cache.open, location, token)
        if opened is not None:
            return opened
        failed = await self.ctx.io(self.cache.failure, location, token)
        if failed is not None:
            raise refused(failed.code, failed.message)
        return None

    async def _produce_locked(self, location: str, token: str, signed: SignedManifest,
                              bucket_view: BucketView, generation: str
                              ) -> tuple[CachedImage, int, str] | None:
        async with self.cache.locked(location) as waited:
            ready = await self._cached(location, token)
            if ready is not None:
                return ready[0], ready[1], "wait" if waited else "hit"
            self.cache.clean_temp(location)
            entry = await self._produce(location, signed, bucket_view, generation)
            opened = await self.ctx.io(self.cache.open, location, entry.token)
        if opened is None:
            return None
        return opened[0], opened[1], "miss"

    async def _produce(self, location: str, signed: SignedManifest, bucket_view: BucketView,
                       generation: str) -> CachedImage:
        manifest = signed.manifest
        key = location.split("/", 1)[1]
        parts: list[OpenObject] = []
        temp = self.cache.temp_path(location)
        started = time.monotonic()
        try:
            for part_key in manifest.part_keys(key):
                try:
                    parts.append(await open_object(self.ctx, bucket_view, part_key))
                except errors.NoSuchKey:
                    raise from_bundle_error(PartMissing(
                        f"part s3://{bucket_view.name}/{part_key} is missing")) from None
            # The version decrypted is the one opened (a part may have changed since).
            token = _token(generation, [p.view.generation for p in parts])
            try:
                result = await self.ctx.io(self._decrypt, manifest, parts, temp)
            except BundleError as exc:
                await self.ctx.io(self.cache.record_failure, location, token, exc.code,
                                  exc.message)
                log.warning("image bundle refused", extra={
                    "location": location, "code": exc.code, "error": exc.message})
                raise from_bundle_error(exc) from exc
            entry = CachedImage(
                location=location, token=token, sha256=result.sha256, size=result.size,
                disk_format=result.disk_format, name=result.name,
                image_type=manifest.image_type, decrypted_at=time.time(),
                last_used=time.time(), path=temp)
            committed = await self.ctx.io(self.cache.commit, entry, temp)
        finally:
            for part in parts:
                part.close()
            with contextlib.suppress(FileNotFoundError):
                temp.unlink()
        took = time.monotonic() - started
        dropped = await self.ctx.io(self.cache.evict, location)
        log.info("image decrypted", extra={
            "location": location, "bytes": result.size, "seconds": round(took, 3),
            "mb_per_s": round(result.size / took / 1e6, 1) if took > 0 else None,
            "evicted": dropped})
        return committed

    def _decrypt(self, manifest: Manifest, parts: list[OpenObject], temp: Path) -> Unbundled:
        key = crypto.load_private_key((self.settings.keys_dir / CLOUD_KEY).read_bytes())
        aes_key, iv = decrypt_key_iv(manifest, key)

        def source(part: ManifestPart) -> Iterator[bytes]:
            obj, pos = parts[part.index], 0
            while pos < obj.view.size:
                data = obj.read(pos, min(CHUNK, obj.view.size - pos))
                pos += len(data)
                yield data

        with temp.open("wb") as out:
            result = unbundle(manifest, aes_key, iv, source, out)
            out.flush()
            os.fsync(out.fileno())
        return result
