"""The paper's image path on a whole cloud: bundle as a user, upload, register, launch.

CLC, Walrus, a CC and a sim NC run as real servers (threads, real signed
HTTP); the user works through ``eucalypt admin cert`` and the ``eucalypt
bundle`` commands, and boto3. The sim driver boots nothing, so the NC's
fetch is exercised with the NC's own image cache on the URL and digest the
CLC gives NCs (``image_ref``). A real VM boots from a bundle in
``test_boot.py``.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import boto3
import pytest
from botocore.config import Config as BotoConfig
from botocore.exceptions import ClientError
from click.testing import CliRunner

from eucalypt.bundle import crypto
from eucalypt.bundle.bundle import BundleKeys
from eucalypt.cc.app import create_app as create_cc
from eucalypt.clc import identity
from eucalypt.clc.app import create_app as create_clc
from eucalypt.clc.app import open_database
from eucalypt.clc.certs import CloudCA
from eucalypt.clc.instances import image_ref
from eucalypt.clc.models import Image
from eucalypt.clc.storage import WalrusReader
from eucalypt.cli.admin import admin_group
from eucalypt.cli.bundle import bundle_group
from eucalypt.cli.init import initialise
from eucalypt.config import CcConfig, ClcConfig, Config, NcConfig, VmType, WalrusConfig
from eucalypt.nc.api import ImageRef
from eucalypt.nc.cache import FetchSettings, ImageCache
from eucalypt.nc.errors import ImageError
from eucalypt.nc.guestimage.build import GuestImage, build_test_image
from eucalypt.rpc.keys import ComponentKeys
from eucalypt.walrus.app import create_app as create_walrus
from tests.bundle.helpers import bundle, make_image
from tests.support.servers import free_port, serve_in_thread

ACCOUNT = "bundler"


@dataclass
class Cloud:
    config: Config
    env: dict[str, str]  # the user's `eucalypt env`
    certs: Path  # `eucalypt admin cert --out`
    account_id: str
    work: Path

    def ec2(self) -> Any:
        return boto3.client("ec2", endpoint_url=self.config.clc.url,
                            region_name=self.config.region,
                            aws_access_key_id=self.env["AWS_ACCESS_KEY_ID"],
                            aws_secret_access_key=self.env["AWS_SECRET_ACCESS_KEY"],
                            config=BotoConfig(retries={"max_attempts": 1}))

    def s3(self) -> Any:
        return boto3.client("s3", endpoint_url=self.config.walrus.url,
                            region_name=self.config.region,
                            aws_access_key_id=self.env["AWS_ACCESS_KEY_ID"],
                            aws_secret_access_key=self.env["AWS_SECRET_ACCESS_KEY"],
                            config=BotoConfig(s3={"addressing_style": "path"}))

    def cli(self, *args: str, ok: bool = True) -> str:
        result = CliRunner().invoke(bundle_group, list(args), env=self.env)
        if ok:
            assert result.exit_code == 0, result.output
        else:
            assert result.exit_code != 0, result.output
        return result.output.strip().splitlines()[-1] if result.output.strip() else ""

    def bundle_and_upload(self, image: Path, prefix: str, *extra: str) -> str:
        out = self.work / f"b-{prefix}"
        manifest = self.cli("image", "-i", str(image), "--keys-dir", str(self.certs),
                            "-d", str(out), "-p", prefix, "--compress-level", "1", *extra)
        return self.cli("upload", "-m", manifest, "-b", "user-images/bundles")

    def db_image(self, image_id: str) -> Image:
        db = open_database(self.config)
        try:
            image = db.run_sync(lambda s: s.get(Image, image_id))
            assert image is not None
            return image
        finally:
            db.dispose()


@contextlib.contextmanager
def whole_cloud(data_dir: Path) -> Iterator[Cloud]:
    nc_port = free_port()
    config = Config(
        data_dir=data_dir,
        clc=ClcConfig(port=free_port(), sync_seconds=0.5),
        walrus=WalrusConfig(port=free_port()),
        cc=CcConfig(port=free_port(), nodes=[f"http://127.0.0.1:{nc_port}"], poll_seconds=0.5),
        nc=NcConfig(port=nc_port, hypervisor="sim", sim_boot_seconds=0.2, sim_cores=8,
                    sim_memory_mib=8192, sim_disk_gib=100, reserve_memory_mib=0),
        vm_types=[VmType(name="t1.micro", cores=1, memory_mib=256, disk_gib=1)],
    )
    config.save()
    initialise(data_dir)
    db = open_database(config)
    try:
        key = db.run_sync(lambda s: identity.create_access_key(
            s, identity.get_user(s, identity.create_account(s, ACCOUNT), "admin")))
    finally:
        db.dispose()
    certs = data_dir / "my-certs"
    result = CliRunner().invoke(admin_group, [
        "cert", "--config", str(config.config_path), "--account", ACCOUNT, "--user", "admin",
        "--out", str(certs)])
    assert result.exit_code == 0, result.output
    env = {
        "AWS_ACCESS_KEY_ID": key.access_key, "AWS_SECRET_ACCESS_KEY": key.secret_key,
        "AWS_DEFAULT_REGION": config.region, "AWS_ENDPOINT_URL_S3": config.walrus.url,
        "AWS_ENDPOINT_URL_EC2": config.clc.url,
        "AWS_CONFIG_FILE": str(data_dir / "none"), "AWS_SHARED_CREDENTIALS_FILE":
            str(data_dir / "none"),
    }
    work = data_dir / "work"
    work.mkdir()
    with contextlib.ExitStack() as stack:
        from eucalypt.nc.app import create_app as create_nc

        stack.enter_context(serve_in_thread(create_nc(config), nc_port))
        stack.enter_context(serve_in_thread(create_cc(config), config.cc.port))
        stack.enter_context(serve_in_thread(create_clc(config), config.clc.port))
        stack.enter_context(serve_in_thread(create_walrus(config), config.walrus.port))
        yield Cloud(config=config, env=env, certs=certs, account_id=key.account_id, work=work)


@pytest.fixture(scope="module")
def cloud(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cloud]:
    with whole_cloud(tmp_path_factory.mktemp("bundle-cloud")) as c:
        c.s3().create_bucket(Bucket="user-images")
        yield c


@pytest.fixture(scope="module")
def guest() -> GuestImage:
    return build_test_image()


def wait_image(ec2: Any, image_id: str, timeout: float = 120) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        image: dict[str, Any] = ec2.describe_images(ImageIds=[image_id])["Images"][0]
        if image["State"] != "pending":
            return image
        time.sleep(0.3)
    raise AssertionError(f"{image_id} still pending")


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def nc_fetch(cloud: Cloud, ref: ImageRef, root: Path) -> Any:
    """Fetch ``ref`` the way the NC does: its image cache, signed with its component key."""
    nc_key = ComponentKeys.load(cloud.config.keys_dir).credential("nc")

    async def go() -> Any:
        cache = ImageCache(root, 1 << 32, FetchSettings(credential=nc_key,
                                                       region=cloud.config.region))
        try:
            return await cache.get(ref)
        finally:
            await cache.aclose()

    return asyncio.run(go())


def clc_image_ref(cloud: Cloud, image_id: str) -> ImageRef:
    """The ImageRef the CLC puts in RunInstance for ``image_id`` (clc/instances.image_ref)."""
    clc_key = ComponentKeys.load(cloud.config.keys_dir).credential("clc")
    services = SimpleNamespace(
        walrus=WalrusReader(cloud.config.walrus.url, clc_key, cloud.config.region))
    return image_ref(services, cloud.db_image(image_id))  # type: ignore[arg-type]


def test_triple_from_bundles_launches(cloud: Cloud, guest: GuestImage) -> None:
    """EKI, ERI and EMI from three bundles, registered, launched; the NC's fetch checks out."""
    ec2 = cloud.ec2()
    ids: dict[str, str] = {}
    for kind, path, flag in (("kernel", guest.kernel, "--kernel"),
                             ("ramdisk", guest.ramdisk, "--ramdisk")):
        location = cloud.bundle_and_upload(path, f"guest-{kind}", flag, "true")
        assert location == f"user-images/bundles/guest-{kind}.manifest.xml"
        ids[kind] = cloud.cli("register", location, "-n", f"guest-{kind}")
    location = cloud.bundle_and_upload(guest.rootfs, "guest-root", "--kernel", ids["kernel"],
                                       "--ramdisk", ids["ramdisk"])
    ids["machine"] = cloud.cli("register", location, "-n", "guest-root")
    assert ids["kernel"].startswith("eki-") and ids["ramdisk"].startswith("eri-")
    assert ids["machine"].startswith("emi-")
    described = {i["ImageId"]: i for i in ec2.describe_images(Owners=["self"])["Images"]}
    root = described[ids["machine"]]
    assert root["State"] == "available"
    assert (root["ImageType"], root["KernelId"], root["RamdiskId"]) == \
        ("machine", ids["kernel"], ids["ramdisk"])
    assert root["ImageLocation"] == "user-images/bundles/guest-root.manifest.xml"
    assert described[ids["kernel"]]["ImageType"] == "kernel"
    assert described[ids["ramdisk"]]["ImageType"] == "ramdisk"
    for kind, path in (("kernel", guest.kernel), ("ramdisk", guest.ramdisk),
                       ("machine", guest.rootfs)):
        row = cloud.db_image(ids[kind])
        assert (row.source, row.sha256, row.size) == ("bundle", sha256(path),
                                                      path.stat().st_size)

    reservation = ec2.run_instances(ImageId=ids["machine"], MinCount=1, MaxCount=1,
                                    InstanceType="t1.micro")
    instance_id = reservation["Instances"][0]["InstanceId"]
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        state = ec2.describe_instances(InstanceIds=[instance_id])["Reservations"][0][
            "Instances"][0]["State"]["Name"]
        if state == "running":
            break
        time.sleep(0.3)
    assert state == "running"

    # What the NC is told to fetch, fetched as the NC does: decrypted by Walrus, digest checked.
    for kind in ("kernel", "ramdisk", "machine"):
        ref = clc_image_ref(cloud, ids[kind])
        assert "/_image/user-images/bundles/guest-" in ref.url
        entry = nc_fetch(cloud, ref, cloud.work / "nc-cache")
        assert entry.sha256 == ref.sha256
    ec2.terminate_instances(InstanceIds=[instance_id])


def test_unbundle_my_own_bundle_from_walrus(cloud: Cloud, tmp_path: Path) -> None:
    img = make_image(tmp_path / "mine.img", 1_500_000)
    location = cloud.bundle_and_upload(img, "mine", "-B", "0.5")
    out = cloud.cli("unbundle", "-m", f"s3://{location}", "--keys-dir", str(cloud.certs),
                    "-d", str(tmp_path / "back"))
    assert sha256(Path(out)) == sha256(img)


def test_large_parts_go_up_in_multipart_uploads(cloud: Cloud, tmp_path: Path) -> None:
    import os

    img = tmp_path / "random.img"
    img.write_bytes(os.urandom(26 * 1024 * 1024))  # incompressible: ~26 MiB encrypted
    manifest = cloud.cli("image", "-i", str(img), "--keys-dir", str(cloud.certs),
                         "-d", str(tmp_path / "b"), "-B", "12", "--compress-level", "1")
    location = cloud.cli("upload", "-m", manifest, "-b", "user-images/big",
                         "--multipart-threshold", "5")
    head = cloud.s3().head_object(Bucket="user-images", Key="big/random.img.part.00")
    assert head["ContentLength"] == 12 * 1024 * 1024
    assert head["ETag"].strip('"').endswith("-3")  # 12 MiB in 5 MiB chunks
    image_id = cloud.cli("register", location, "-n", "random-multipart")
    assert cloud.db_image(image_id).sha256 == sha256(img)


def test_overwritten_manifest_is_decrypted_again(cloud: Cloud, tmp_path: Path) -> None:
    """Walrus drops its cached image when the manifest is overwritten; the NC, holding the
    digest registered, refuses the changed image rather than boot it."""
    ec2 = cloud.ec2()
    first = make_image(tmp_path / "v.img", 800_000, seed=5)
    location = cloud.bundle_and_upload(first, "changing")
    image_id = cloud.cli("register", location, "-n", "changing")
    ref = clc_image_ref(cloud, image_id)
    assert nc_fetch(cloud, ref, tmp_path / "c1").sha256 == sha256(first)
    second = make_image(tmp_path / "v.img", 800_000, seed=6)
    cloud.bundle_and_upload(second, "changing")
    with pytest.raises(ImageError, match="sha256 mismatch"):
        nc_fetch(cloud, ref, tmp_path / "c2")
    fresh = nc_fetch(cloud, ref.model_copy(update={"sha256": sha256(second)}), tmp_path / "c3")
    assert fresh.sha256 == sha256(second)
    assert wait_image(ec2, image_id)["State"] == "available"


def test_bad_bundles_fail_and_cannot_launch(cloud: Cloud, tmp_path: Path) -> None:
    ec2 = cloud.ec2()
    keys = BundleKeys.from_files(cloud.certs / "pk.pem", cloud.certs / "cert.pem",
                                 cloud.certs / "cloud-cert.pem")
    img = make_image(tmp_path / "bad.img", 1_200_000)
    s3 = cloud.s3()

    def upload(b: Any) -> str:
        for path in b.files:
            s3.upload_file(str(path), "user-images", f"bad/{path.name}")
        return f"user-images/bad/{b.manifest_path.name}"

    # 1. A tampered part.
    tampered = bundle(img, tmp_path / "t", keys, user=cloud.account_id, prefix="tampered",
                      part_size=400_000)
    raw = bytearray(tampered.part_paths[1].read_bytes())
    raw[100] ^= 0x10
    tampered.part_paths[1].write_bytes(bytes(raw))
    # 2. Bundled for another cloud.
    other = CloudCA.ensure(tmp_path / "other", "elsewhere")
    foreign = bundle(img, tmp_path / "f", replace(keys, cloud_cert=other.cert),
                     user=cloud.account_id, prefix="foreign")
    # 3. Signed by someone who is not in this account (a valid user of this cloud).
    ca = CloudCA.load(cloud.config.keys_dir)
    stranger = ca.issue("000000000042", "stranger")
    signed_elsewhere = bundle(img, tmp_path / "s", replace(
        keys, private_key=crypto.load_private_key(stranger.private_key_pem)),
        user=cloud.account_id, prefix="stranger")
    expected = {
        "tampered": "BundleDigestMismatch: part 1 (tampered.part.01)",
        "foreign": "BundleKeyMismatch",
        "stranger": "InvalidManifestSignature",
    }
    for b, name in ((tampered, "tampered"), (foreign, "foreign"),
                    (signed_elsewhere, "stranger")):
        image_id = ec2.register_image(Name=name, ImageLocation=upload(b))["ImageId"]
        image = wait_image(ec2, image_id)
        assert image["State"] == "failed", image
        assert image["StateReason"]["Message"].startswith(expected[name]), image["StateReason"]
        with pytest.raises(ClientError) as err:
            ec2.run_instances(ImageId=image_id, MinCount=1, MaxCount=1, InstanceType="t1.micro")
        assert err.value.response["Error"]["Code"] == "InvalidAMIID.Unavailable"
    # The CLI says why, and exits non-zero.
    cli_reason = cloud.cli("register", "user-images/bad/tampered.manifest.xml", "-n", "tampered-2",
                           ok=False)
    assert "BundleDigestMismatch" in cli_reason


def test_register_reads_the_manifest(cloud: Cloud, tmp_path: Path) -> None:
    ec2 = cloud.ec2()
    with pytest.raises(ClientError) as err:
        ec2.register_image(Name="nope", ImageLocation="user-images/none.manifest.xml")
    assert err.value.response["Error"]["Code"] == "InvalidManifest"
    cloud.s3().put_object(Bucket="user-images", Key="junk.manifest.xml", Body=b"<not/>")
    with pytest.raises(ClientError) as err:
        ec2.register_image(Name="junk", ImageLocation="user-images/junk.manifest.xml")
    assert err.value.response["Error"]["Code"] == "InvalidManifest"
    assert "not a bundle manifest" in err.value.response["Error"]["Message"]
