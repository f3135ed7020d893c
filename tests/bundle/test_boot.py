"""A real VM boots from bundles: the paper's whole image path on `eucalypt up` with QEMU.

A user (own account, certificate from `eucalypt admin cert`) bundles the
guest test image's kernel, ramdisk and root filesystem, uploads the three
bundles, registers them as EKI/ERI/EMI and runs an instance: the NC fetches
each image from Walrus's image service (decrypted there, SHA-256 checked by
the NC) and the guest boots to its ready line. Then the root bundle's part
is tampered with and re-registered: the image fails and cannot launch.
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.config import Config as BotoConfig
from botocore.exceptions import ClientError
from click.testing import CliRunner

from eucalypt.cli.bundle import bundle_group
from eucalypt.nc.guestimage.build import build_test_image
from tests.e2e.test_ssh_into_instance import e2e_config
from tests.support.cloud import EUCALYPT, Cloud, start_cloud_with, stop_cloud

pytestmark = [
    pytest.mark.slow,
    pytest.mark.netns,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root (namespaces, taps, iptables)"),
]


@pytest.fixture(scope="module")
def cloud(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cloud]:
    data_dir = tmp_path_factory.mktemp("bundle-boot")
    config = e2e_config(data_dir)
    c = start_cloud_with(config, "--timeout", "180")
    try:
        yield c
    finally:
        stop_cloud(c)
        subprocess.run(["ip", "link", "del", config.cc.local_uplink_interface],
                       capture_output=True)
        subprocess.run(["ip", "netns", "del", config.cc.network_netns], capture_output=True)


def eucalypt(cloud: Cloud, *args: str) -> str:
    out = subprocess.run([*EUCALYPT, *args, "--config", str(cloud.config.config_path)],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    return out.stdout


def user_env(cloud: Cloud, account: str) -> dict[str, str]:
    env = {k: v for k, v in cloud.env.items() if not k.startswith(("AWS_", "EC2_", "S3_"))}
    for line in eucalypt(cloud, "env", "--account", account, "--user", "admin").splitlines():
        key, _, value = line.removeprefix("export ").partition("=")
        env[key] = shlex.split(value)[0] if value else ""
    env["AWS_CONFIG_FILE"] = env["AWS_SHARED_CREDENTIALS_FILE"] = "/nonexistent"
    return env


def log_lines(cloud: Cloud, component: str, message: str) -> list[dict[str, Any]]:
    path = cloud.config.logs_dir / f"{component}.log"
    found = []
    for line in path.read_text().splitlines():
        with_json = line[line.find("{"):] if "{" in line else ""
        try:
            record = json.loads(with_json)
        except ValueError:
            continue
        if record.get("message") == message or record.get("msg") == message:
            found.append(record)
    return found


def test_boot_a_vm_from_bundles(cloud: Cloud, tmp_path: Path) -> None:
    guest = build_test_image()
    eucalypt(cloud, "admin", "account", "create", "bundlers")
    certs = tmp_path / "certs"
    eucalypt(cloud, "admin", "cert", "--account", "bundlers", "--user", "admin",
             "--out", str(certs))
    env = user_env(cloud, "bundlers")
    runner = CliRunner()

    def cli(*args: str, ok: bool = True) -> str:
        result = runner.invoke(bundle_group, list(args), env=env)
        assert (result.exit_code == 0) == ok, result.output
        return result.output.strip().splitlines()[-1]

    def bundle_upload(path: Path, prefix: str, *extra: str) -> str:
        manifest = cli("image", "-i", str(path), "--keys-dir", str(certs), "-p", prefix,
                       "-d", str(tmp_path / prefix), *extra)
        return cli("upload", "-m", manifest, "-b", "my-guest")

    ids = {
        "kernel": cli("register", bundle_upload(guest.kernel, "vmlinuz", "--kernel", "true"),
                      "-n", "guest-kernel"),
        "ramdisk": cli("register", bundle_upload(guest.ramdisk, "initrd", "--ramdisk", "true"),
                       "-n", "guest-ramdisk"),
    }
    root_location = bundle_upload(guest.rootfs, "rootfs", "--kernel", ids["kernel"],
                                  "--ramdisk", ids["ramdisk"])
    ids["machine"] = cli("register", root_location, "-n", "guest-root")

    ec2 = boto3.client("ec2", endpoint_url=env["AWS_ENDPOINT_URL_EC2"],
                       region_name=env["AWS_DEFAULT_REGION"],
                       aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
                       aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"],
                       config=BotoConfig(retries={"max_attempts": 2}))
    started = time.monotonic()
    res = ec2.run_instances(ImageId=ids["machine"], MinCount=1, MaxCount=1,
                            InstanceType="t1.micro")
    instance_id = res["Instances"][0]["InstanceId"]

    def state() -> str:
        return str(ec2.describe_instances(InstanceIds=[instance_id])["Reservations"][0][
            "Instances"][0]["State"]["Name"])

    deadline = time.monotonic() + 240
    console = ""
    while time.monotonic() < deadline:
        assert state() in ("pending", "running"), state()
        console = ec2.get_console_output(InstanceId=instance_id).get("Output", "")
        if "EUCALYPT-GUEST-READY" in console:
            break
        time.sleep(2)
    assert "EUCALYPT-GUEST-READY" in console, console[-2000:]
    assert f"instance-id={instance_id}" in console
    print(f"booted from bundles in {time.monotonic() - started:.1f}s")

    # The NC fetched all three images from Walrus's image service and checked their digests.
    cached = {r.get("image_id") for r in log_lines(cloud, "nc", "image cached")}
    assert {ids["kernel"], ids["ramdisk"], ids["machine"]} <= cached, cached
    decrypted = {r.get("location") for r in log_lines(cloud, "walrus", "image decrypted")}
    assert "my-guest/rootfs.manifest.xml" in decrypted, decrypted
    ec2.terminate_instances(InstanceIds=[instance_id])

    # A tampered part: the re-registered image fails, and cannot be launched.
    part = tmp_path / "rootfs" / "rootfs.part.00"
    raw = bytearray(part.read_bytes())
    raw[4096] ^= 0x01
    part.write_bytes(bytes(raw))
    cli("upload", "-m", str(tmp_path / "rootfs" / "rootfs.manifest.xml"), "-b", "my-guest")
    reason = cli("register", root_location, "-n", "guest-root-tampered", ok=False)
    assert "BundleDigestMismatch" in reason and "part 0" in reason
    bad = ec2.describe_images(Filters=[{"Name": "name", "Values": ["guest-root-tampered"]}])
    bad_id = bad["Images"][0]["ImageId"]
    assert bad["Images"][0]["State"] == "failed"
    with pytest.raises(ClientError) as err:
        ec2.run_instances(ImageId=bad_id, MinCount=1, MaxCount=1, InstanceType="t1.micro")
    assert err.value.response["Error"]["Code"] == "InvalidAMIID.Unavailable"
