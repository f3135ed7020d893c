"""Walrus as the image service: /_image/<bucket>/<manifest> verifies, decrypts, caches.

A real Walrus (its HTTP server in a thread) with users and component keys; bundles
made by ``eucalypt.bundle`` and uploaded with boto3 as their owner; the
endpoint called as the CLC (POST, with the owner's certificates) and as an
NC (GET), including through the NC's own image cache.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import boto3
import httpx
import pytest
from botocore.config import Config as BotoConfig

from eucalypt.auth import Credential, HttpxSigV4Auth, StaticCredentialStore
from eucalypt.bundle import SHA256_HEADER
from eucalypt.bundle.bundle import Bundle
from eucalypt.clc.certs import CloudCA
from eucalypt.config import Config, WalrusConfig
from eucalypt.walrus.app import WalrusApp, create_app
from eucalypt.walrus.images.cache import CachedImage, DecryptedImages
from eucalypt.walrus.images.service import ImageService, ImageSettings
from tests.bundle.helpers import User, bundle, make_image, new_user
from tests.support.servers import free_port, serve_in_thread
from tests.walrus.conftest import new_pg_database

REGION = "eucalypt-1"
ALICE = Credential("AKIAIMGALICE00000001", "alice-secret-0123456789abcdefghijklmn",
                   account_id="111111111111", user_name="alice")
BOB = Credential("AKIAIMGBOB0000000002", "bob-secret-0123456789abcdefghijklmnop",
                 account_id="222222222222", user_name="bob")
ADMIN = Credential("AKIAIMGADMIN00000003", "admin-secret-0123456789abcdefghijklm",
                   account_id="000000000000", user_name="admin", is_admin=True)
NC = Credential("EUCNCIMGTEST00000004", "nc-secret-0123456789abcdefghijklmnopq",
                user_name="nc", principal="component:nc", is_admin=True)
CLC = Credential("EUCCLCIMGTEST0000005", "clc-secret-0123456789abcdefghijklmnop",
                 user_name="clc", principal="component:clc", is_admin=True)


@dataclass
class Env:
    url: str
    config: Config
    app: WalrusApp
    ca: CloudCA
    alice: User
    tmp: Path

    def s3(self, cred: Credential = ALICE) -> Any:
        return boto3.client("s3", endpoint_url=self.url, region_name=REGION,
                            aws_access_key_id=cred.access_key,
                            aws_secret_access_key=cred.secret_key,
                            config=BotoConfig(s3={"addressing_style": "path"},
                                              retries={"max_attempts": 1}))

    def http(self, cred: Credential | None = NC) -> httpx.Client:
        auth = HttpxSigV4Auth(cred, region=REGION, service="s3") if cred else None
        return httpx.Client(auth=auth, timeout=120)

    def endpoint(self, bucket: str, key: str) -> str:
        return f"{self.url}/_image/{bucket}/{key}"

    def upload(self, b: Bundle, bucket: str, cred: Credential = ALICE) -> str:
        s3 = self.s3(cred)
        for path in b.files:
            s3.upload_file(str(path), bucket, path.name)
        return b.manifest_path.name

    def register(self, bucket: str, key: str, certs: list[str] | None = None,
                 cred: Credential = CLC) -> httpx.Response:
        with self.http(cred) as c:
            return c.post(self.endpoint(bucket, key),
                          json={"certificates": certs if certs is not None
                                else [self.alice.cert_pem]})

    def fetch(self, bucket: str, key: str, cred: Credential | None = NC) -> httpx.Response:
        with self.http(cred) as c:
            return c.get(self.endpoint(bucket, key))


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def env(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
        ) -> Iterator[Env]:
    """A Walrus with a cloud CA, once per metadata backend."""
    tmp = tmp_path_factory.mktemp(f"walrus-images-{request.param}")
    port = free_port()
    drop = None
    database_url = f"sqlite:///{tmp / 'walrus.db'}"
    if request.param == "postgresql":
        database_url, drop = new_pg_database(request.getfixturevalue("pg_url"))
    config = Config(data_dir=tmp, walrus=WalrusConfig(port=port, database_url=database_url))
    ca = CloudCA.ensure(config.keys_dir, REGION)
    app = create_app(config, credentials=StaticCredentialStore([ALICE, BOB, ADMIN, NC, CLC]))
    try:
        with serve_in_thread(app, port) as url:
            yield Env(url=url, config=config, app=app, ca=ca,
                      alice=new_user(ca, ALICE.account_id), tmp=tmp)
    finally:
        if drop is not None:
            drop()


_counter = iter(range(10**6))


@pytest.fixture
def bucket(env: Env) -> str:
    name = f"images-{next(_counter)}-{int(time.time() * 1000) % 10**6}"
    env.s3().create_bucket(Bucket=name)
    return name


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def make_bundle(env: Env, tmp: Path, size: int = 2_500_000, seed: int = 1, **kw: Any
                ) -> tuple[Path, Bundle]:
    tmp.mkdir(parents=True, exist_ok=True)
    img = make_image(tmp / f"disk-{seed}-{size}.img", size, seed=seed)
    kw.setdefault("prefix", "disk.img")
    kw.setdefault("part_size", 600_000)
    return img, bundle(img, tmp / f"out-{seed}-{size}", env.alice.keys(env.ca),
                       user=ALICE.account_id, **kw)


def error_code(reply: httpx.Response) -> str:
    import re

    found = re.search(r"<Code>([^<]+)</Code>", reply.text)
    return found.group(1) if found else ""


def test_register_then_fetch(env: Env, bucket: str, tmp_path: Path) -> None:
    img, b = make_bundle(env, tmp_path)
    key = env.upload(b, bucket)
    reply = env.register(bucket, key)
    assert reply.status_code == 200, reply.text
    answer = reply.json()
    assert answer["sha256"] == sha256(img)
    assert answer["size"] == img.stat().st_size
    assert answer["cache"] == "miss"
    assert answer["image_type"] == "machine" and answer["user"] == ALICE.account_id
    got = env.fetch(bucket, key)
    assert got.status_code == 200
    assert got.headers[SHA256_HEADER] == sha256(img)
    assert got.headers["x-eucalypt-image-cache"] == "hit"
    assert hashlib.sha256(got.content).hexdigest() == sha256(img)
    with env.http() as c:
        head = c.head(env.endpoint(bucket, key))
    assert head.status_code == 200 and head.headers["content-length"] == str(img.stat().st_size)


def test_components_only(env: Env, bucket: str, tmp_path: Path) -> None:
    _, b = make_bundle(env, tmp_path)
    key = env.upload(b, bucket)
    assert env.register(bucket, key).status_code == 200
    for who in (ALICE, BOB, ADMIN, None):
        reply = env.fetch(bucket, key, who)
        assert reply.status_code == 403, who
        assert error_code(reply) == "AccessDenied"
    assert env.register(bucket, key, cred=ALICE).status_code == 403


def test_unregistered_manifest_is_refused(env: Env, bucket: str, tmp_path: Path) -> None:
    """No certificate on record (never registered): nothing to verify the signature with."""
    _, b = make_bundle(env, tmp_path)
    key = env.upload(b, bucket)
    reply = env.fetch(bucket, key)
    assert reply.status_code == 403
    assert error_code(reply) == "InvalidManifestSignature"
    assert "register" in reply.text
    missing = env.fetch(bucket, "nothing.manifest.xml")
    assert missing.status_code == 404 and error_code(missing) == "NoSuchKey"


def test_wrong_signer_and_foreign_certificates(env: Env, bucket: str, tmp_path: Path) -> None:
    _, b = make_bundle(env, tmp_path)
    key = env.upload(b, bucket)
    mallory = new_user(env.ca, BOB.account_id, "bob")
    reply = env.register(bucket, key, [mallory.cert_pem])
    assert reply.status_code == 403 and error_code(reply) == "InvalidManifestSignature"
    assert "does not verify" in reply.text
    other = CloudCA.ensure(tmp_path / "other-ca", "elsewhere")
    forged = other.issue(ALICE.account_id, "alice")
    reply = env.register(bucket, key, [forged.certificate_pem])
    assert reply.status_code == 403 and "not issued by this cloud" in reply.text
    reply = env.register(bucket, key, [])
    assert reply.status_code == 403 and "no certificate" in reply.text
    # A failed verification records nothing: the manifest is still unregistered.
    assert env.fetch(bucket, key).status_code == 403


def test_another_clouds_bundle_is_refused(env: Env, bucket: str, tmp_path: Path) -> None:
    other = CloudCA.ensure(tmp_path / "other-ca", "elsewhere")
    img = make_image(tmp_path / "disk.img", 300_000)
    b = bundle(img, tmp_path / "out", replace(env.alice.keys(env.ca), cloud_cert=other.cert),
               user=ALICE.account_id)
    key = env.upload(b, bucket)
    reply = env.register(bucket, key)
    assert reply.status_code == 400
    assert error_code(reply) == "BundleKeyMismatch"
    assert "another cloud" in reply.text


def test_tampered_part_fails_and_is_remembered(env: Env, bucket: str, tmp_path: Path) -> None:
    _, b = make_bundle(env, tmp_path)
    victim = b.part_paths[2]
    raw = bytearray(victim.read_bytes())
    raw[12345] ^= 0x01
    victim.write_bytes(bytes(raw))
    key = env.upload(b, bucket)
    reply = env.register(bucket, key)
    assert reply.status_code == 400
    assert error_code(reply) == "BundleDigestMismatch"
    assert "part 2 (disk.img.part.02)" in reply.text
    # The refusal is recorded for this version: the NC gets the same answer, at once.
    started = time.monotonic()
    again = env.fetch(bucket, key)
    assert again.status_code == 400 and "part 2" in again.text
    assert time.monotonic() - started < 2


def test_missing_part(env: Env, bucket: str, tmp_path: Path) -> None:
    _, b = make_bundle(env, tmp_path)
    key = env.upload(b, bucket)
    env.s3().delete_object(Bucket=bucket, Key=b.part_paths[1].name)
    reply = env.register(bucket, key)
    assert reply.status_code == 404 and error_code(reply) == "BundlePartMissing"
    assert "disk.img.part.01" in reply.text


def test_overwritten_manifest_invalidates_the_cache(env: Env, bucket: str,
                                                    tmp_path: Path) -> None:
    img1, b1 = make_bundle(env, tmp_path / "v1", seed=1)
    key = env.upload(b1, bucket)
    assert env.register(bucket, key).json()["sha256"] == sha256(img1)
    assert env.fetch(bucket, key).headers["x-eucalypt-image-cache"] == "hit"
    # A new image bundled under the same name and uploaded over the old one.
    img2, b2 = make_bundle(env, tmp_path / "v2", seed=2)
    assert sha256(img1) != sha256(img2)
    env.upload(b2, bucket)
    got = env.fetch(bucket, key)
    assert got.status_code == 200
    assert got.headers["x-eucalypt-image-cache"] == "miss"
    assert got.headers[SHA256_HEADER] == sha256(img2)
    assert hashlib.sha256(got.content).hexdigest() == sha256(img2)
    assert env.fetch(bucket, key).headers["x-eucalypt-image-cache"] == "hit"
    # Overwriting one part (same manifest) invalidates too, and is caught.
    env.s3().put_object(Bucket=bucket, Key=b2.part_paths[0].name, Body=b"x" * 600_000)
    broken = env.fetch(bucket, key)
    assert broken.status_code == 400 and "part 0" in broken.text


def test_concurrent_requests_share_one_decryption(env: Env, bucket: str,
                                                  tmp_path: Path) -> None:
    img, b = make_bundle(env, tmp_path, size=24_000_000, part_size=4_000_000)
    key = env.upload(b, bucket)
    assert env.register(bucket, key).status_code == 200
    # Invalidate (overwrite the manifest with itself: a new version, same bytes).
    env.s3().upload_file(str(b.manifest_path), bucket, key)

    def one(_: int) -> tuple[int, str, str]:
        r = env.fetch(bucket, key)
        return r.status_code, r.headers.get("x-eucalypt-image-cache", ""), \
            hashlib.sha256(r.content).hexdigest()

    with ThreadPoolExecutor(6) as pool:
        results = list(pool.map(one, range(6)))
    assert all(status == 200 for status, _, _ in results), results
    assert all(digest == sha256(img) for _, _, digest in results)
    how = sorted(h for _, h, _ in results)
    assert how.count("miss") == 1, how
    assert set(how) <= {"miss", "wait", "hit"}
    assert "wait" in how, how


def test_a_requester_that_leaves_does_not_abort_the_decryption(env: Env, bucket: str,
                                                                 tmp_path: Path) -> None:
    import os

    img, b = make_bundle(env, tmp_path, size=24_000_000, part_size=4_000_000)
    key = env.upload(b, bucket)
    assert env.register(bucket, key).status_code == 200
    env.s3().upload_file(str(b.manifest_path), bucket, key)  # invalidate
    fds = len(os.listdir("/proc/self/fd"))
    with env.http() as c, pytest.raises(httpx.ReadTimeout):
        c.get(env.endpoint(bucket, key), timeout=httpx.Timeout(10, read=0.05))
    got = env.fetch(bucket, key)
    assert got.status_code == 200
    assert got.headers["x-eucalypt-image-cache"] in ("wait", "hit")  # not decrypted twice
    assert hashlib.sha256(got.content).hexdigest() == sha256(img)
    time.sleep(0.2)
    assert len(os.listdir("/proc/self/fd")) <= fds + 2  # no descriptor left behind


def test_nc_image_cache_fetches_and_checks(env: Env, bucket: str, tmp_path: Path) -> None:
    """The NC's own fetch path: signed with its component key, SHA-256 checked."""
    from eucalypt.nc.api import ImageRef
    from eucalypt.nc.cache import FetchSettings, ImageCache
    from eucalypt.nc.errors import ImageError

    img, b = make_bundle(env, tmp_path)
    key = env.upload(b, bucket)
    answer = env.register(bucket, key).json()
    url = env.endpoint(bucket, key)

    async def fetch(ref: ImageRef) -> Any:
        cache = ImageCache(tmp_path / "nc-cache", 1 << 30, FetchSettings(credential=NC))
        try:
            return await cache.get(ref)
        finally:
            await cache.aclose()

    entry = asyncio.run(fetch(ImageRef(image_id="emi-1", url=url, sha256=answer["sha256"],
                                       size=answer["size"])))
    assert entry.sha256 == sha256(img) and entry.path.read_bytes() == img.read_bytes()
    with pytest.raises(ImageError, match="sha256 mismatch"):
        asyncio.run(fetch(ImageRef(image_id="emi-2", url=url, sha256="0" * 64)))


def test_lru_eviction_under_the_cap(env: Env, bucket: str, tmp_path: Path) -> None:
    """The service keeps the cache under its cap, dropping the least recently used."""
    settings = replace(ImageSettings.from_config(env.config), root=tmp_path / "small",
                       max_bytes=5_000_000)
    service = ImageService(env.app.ctx, settings)
    keys = []
    for seed in (1, 2, 3):
        _, b = make_bundle(env, tmp_path / f"s{seed}", seed=seed, prefix=f"img{seed}")
        keys.append(env.upload(b, bucket))

    async def get(key: str) -> str:
        import os

        served = await service.get(bucket, key, [env.alice.cert_pem])
        os.close(served.fd)
        return served.cache

    async def scenario() -> list[str]:
        return [await get(keys[0]), await get(keys[1]), await get(keys[0]),
                await get(keys[2]), await get(keys[0]), await get(keys[1])]

    # 2.5 MB each, cap 5 MB: two fit. img1 is used again before img3 arrives, so img2 goes.
    assert asyncio.run(scenario()) == ["miss", "miss", "hit", "miss", "hit", "miss"]
    assert service.cache.total_bytes <= 5_000_000


def test_cache_eviction_skips_locked_entries(tmp_path: Path) -> None:
    cache = DecryptedImages(tmp_path, max_bytes=150)

    def add(location: str) -> None:
        temp = cache.temp_path(location)
        temp.write_bytes(b"x" * 100)
        cache.commit(CachedImage(location=location, token="t", sha256="s", size=100,
                                 disk_format="raw", name="n", image_type="machine",
                                 decrypted_at=0, last_used=0, path=temp), temp)
        time.sleep(0.02)

    async def scenario() -> list[str]:
        add("b/one")
        add("b/two")
        async with cache.locked("b/one"):
            assert cache.evict(keep="b/two") == []  # one is busy, two was just made
        return cache.evict(keep="b/two")

    assert asyncio.run(scenario()) == ["b/one"]
    assert cache.lookup("b/two", "t") is not None
    assert cache.lookup("b/one", "t") is None
    json.dumps([e.meta() for e in cache.entries()])
