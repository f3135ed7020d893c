"""``eucalypt image``: build the test guest image and register it in the cloud.

``eucalypt image install-test`` builds the tiny guest (kernel, ramdisk, root
filesystem; cached), uploads the three files to a Walrus bucket as the
cloud administrator and registers them as a kernel (eki), a ramdisk (eri)
and a public machine image (emi) that uses both. It is idempotent: images
already registered from identical bytes are reused. ``eucalypt up`` runs it.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import click
from botocore.config import Config as BotoConfig
from rich.console import Console

from eucalypt.clc.identity import ADMIN_USER, SYSTEM_ACCOUNT
from eucalypt.cli.common import config_option, load_config
from eucalypt.cli.env import user_key
from eucalypt.config import Config

BUCKET = "eucalypt-images"
NAME = "eucalypt-test"


@dataclass(frozen=True)
class Registered:
    kernel_id: str
    ramdisk_id: str
    image_id: str


def _clients(config: Config) -> tuple[Any, Any]:
    key = user_key(config, SYSTEM_ACCOUNT, ADMIN_USER)
    common = {
        "region_name": config.region,
        "aws_access_key_id": key.access_key,
        "aws_secret_access_key": key.secret_key,
        "config": BotoConfig(retries={"max_attempts": 3}, s3={"addressing_style": "path"}),
    }
    s3 = boto3.client("s3", endpoint_url=config.walrus.url, **common)
    ec2 = boto3.client("ec2", endpoint_url=config.clc.url, **common)
    return s3, ec2


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def _wait_available(ec2: Any, image_ids: list[str], timeout: float = 300.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        images = ec2.describe_images(ImageIds=image_ids)["Images"]
        states = {i["ImageId"]: i["State"] for i in images}
        failed = {i: i_state for i, i_state in states.items() if i_state == "failed"}
        if failed:
            raise click.ClickException(f"image registration failed: {failed}")
        if all(s == "available" for s in states.values()):
            return
        time.sleep(0.5)
    raise click.ClickException(f"images not available after {timeout:.0f}s: {image_ids}")


def install_test_image(config: Config, console: Console) -> Registered:
    from eucalypt.nc.guestimage.build import build_test_image

    with console.status("building the test guest image (cached after the first time) ..."):
        image = build_test_image(progress=lambda m: console.log(m))
    s3, ec2 = _clients(config)
    if BUCKET not in [b["Name"] for b in s3.list_buckets().get("Buckets", [])]:
        s3.create_bucket(Bucket=BUCKET)
    ids: dict[str, str] = {}
    for kind, path in (
        ("kernel", image.kernel),
        ("ramdisk", image.ramdisk),
        ("machine", image.rootfs),
    ):
        digest = _sha256(path)
        name = f"{NAME}-{kind}-{digest[:12]}"
        found = ec2.describe_images(Owners=["self"], Filters=[{"Name": "name", "Values": [name]}])[
            "Images"
        ]
        if found:
            ids[kind] = found[0]["ImageId"]
            continue
        key = f"{NAME}/{digest[:12]}/{path.name}"
        with console.status(f"uploading {kind} ({path.stat().st_size >> 20} MiB) ..."):
            s3.upload_file(str(path), BUCKET, key)
        kwargs: dict[str, Any] = {
            "Name": name,
            "ImageLocation": f"{BUCKET}/{key}",
            "Architecture": "x86_64",
        }
        if kind == "kernel":
            kwargs["KernelId"] = "true"
        elif kind == "ramdisk":
            kwargs["RamdiskId"] = "true"
        else:
            kwargs["KernelId"], kwargs["RamdiskId"] = ids["kernel"], ids["ramdisk"]
            kwargs["Description"] = "eucalypt test guest: DHCP, metadata, user-data, dropbear"
        ids[kind] = ec2.register_image(**kwargs)["ImageId"]
        _wait_available(ec2, [ids[kind]])
    ec2.modify_image_attribute(ImageId=ids["machine"], LaunchPermission={"Add": [{"Group": "all"}]})
    for kind in ("kernel", "ramdisk"):
        ec2.modify_image_attribute(ImageId=ids[kind], LaunchPermission={"Add": [{"Group": "all"}]})
    return Registered(kernel_id=ids["kernel"], ramdisk_id=ids["ramdisk"], image_id=ids["machine"])


@click.group("image")
def image_group() -> None:
    """Guest images: build and register the test image."""


@image_group.command("install-test")
@config_option
def install_test(config_path: Path | None) -> None:
    """Build the test guest image and register it (public) in the running cloud."""
    console = Console(stderr=True)
    reg = install_test_image(load_config(config_path), console)
    click.echo(f"kernel {reg.kernel_id}  ramdisk {reg.ramdisk_id}  image {reg.image_id}")
