"""The whole path as a new user walks it, on `eucalypt up` defaults.

Key pair, a security group allowing tcp/22, run-instances of the registered
test image with user-data, pending -> running, an elastic IP, ssh into the
instance from this host (through the namespace that holds the data plane)
and see that user-data ran; revoke tcp/22 and see ssh fail; terminate and
see every trace gone. Real QEMU (TCG here), real bridges, iptables, dnsmasq.
"""

from __future__ import annotations

import os
import secrets
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.config import Config as BotoConfig

from eucalypt.config import CcConfig, ClcConfig, Config, NcConfig, WalrusConfig
from eucalypt.net.local import local_network_defaults
from tests.support.cloud import Cloud, start_cloud_with, stop_cloud
from tests.support.servers import free_port

pytestmark = [
    pytest.mark.slow,
    pytest.mark.netns,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root (namespaces, taps, iptables)"),
]

USER_DATA = "#!/bin/sh\necho userdata-ran-$(hostname) > /tmp/userdata-proof\n"


def e2e_config(data_dir: Path) -> Config:
    tag = secrets.token_hex(3)
    nc_port = free_port()
    config = Config(
        data_dir=data_dir,
        clc=ClcConfig(port=free_port(), sync_seconds=1.0, auto_public_ip=True),
        walrus=WalrusConfig(port=free_port()),
        cc=CcConfig(port=free_port(), nodes=[f"http://127.0.0.1:{nc_port}"], poll_seconds=1.0),
        nc=NcConfig(port=nc_port),
    )
    local_network_defaults(config)
    # Names and addresses of our own, so a cloud the developer runs is never touched.
    config.cc.network_netns = config.nc.netns = f"eut-{tag}"
    config.cc.local_uplink_interface = f"eut{tag}"
    config.cc.local_uplink_net = "169.254.124.0/30"
    config.cc.public_ips = ["198.51.100.192/28"]
    config.cc.metadata_port = free_port()
    config.save()
    return config


@pytest.fixture(scope="module")
def cloud(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cloud]:
    data_dir = tmp_path_factory.mktemp("e2e")
    config = e2e_config(data_dir)
    c = start_cloud_with(config, "--timeout", "180")
    try:
        yield c
    finally:
        stop_cloud(c)
        ns = config.cc.network_netns
        subprocess.run(["ip", "link", "del", config.cc.local_uplink_interface], capture_output=True)
        subprocess.run(["ip", "netns", "del", ns], capture_output=True)


def ec2(cloud: Cloud) -> Any:
    return boto3.client(
        "ec2",
        endpoint_url=cloud.env["AWS_ENDPOINT_URL_EC2"],
        region_name=cloud.env["AWS_DEFAULT_REGION"],
        aws_access_key_id=cloud.env["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=cloud.env["AWS_SECRET_ACCESS_KEY"],
        config=BotoConfig(retries={"max_attempts": 2}),
    )


def wait_for(what: str, check: Any, timeout: float, every: float = 1.0) -> Any:
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(every)
    raise AssertionError(f"{what}: not after {timeout:.0f}s (last: {last!r})")


def ssh(key: Path, host: str, command: str, timeout: int = 8) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            "ssh",
            "-i",
            str(key),
            "-o",
            "StrictHostKeyChecking=no",
            "-o",
            "UserKnownHostsFile=/dev/null",
            "-o",
            f"ConnectTimeout={timeout}",
            "-o",
            "BatchMode=yes",
            f"root@{host}",
            command,
        ],
        capture_output=True,
        text=True,
        timeout=timeout + 10,
    )


def test_ssh_into_instance_end_to_end(cloud: Cloud, tmp_path: Path) -> None:
    client = ec2(cloud)
    ns = cloud.config.cc.network_netns
    # The image `eucalypt up` registered.
    images = client.describe_images(
        Filters=[{"Name": "name", "Values": ["eucalypt-test-machine-*"]}]
    )
    image_id = images["Images"][0]["ImageId"]

    made = client.create_key_pair(KeyName="e2e")
    key = tmp_path / "e2e.pem"
    key.write_text(made["KeyMaterial"])
    key.chmod(0o600)
    group = client.create_security_group(GroupName="e2e-ssh", Description="ssh in")["GroupId"]
    client.authorize_security_group_ingress(
        GroupId=group, IpProtocol="tcp", FromPort=22, ToPort=22, CidrIp="0.0.0.0/0"
    )
    res = client.run_instances(
        ImageId=image_id,
        MinCount=1,
        MaxCount=1,
        InstanceType="t1.micro",
        KeyName="e2e",
        SecurityGroups=["e2e-ssh"],
        UserData=USER_DATA,  # boto3 base64-encodes it, as the AWS CLI does
    )
    instance_id = res["Instances"][0]["InstanceId"]
    assert res["Instances"][0]["State"]["Name"] == "pending"

    def described() -> dict[str, Any]:
        return client.describe_instances(InstanceIds=[instance_id])["Reservations"][0]["Instances"][
            0
        ]

    wait_for("running", lambda: described()["State"]["Name"] == "running", 120)
    # botocore decodes GetConsoleOutput's base64 for us.
    console = wait_for(
        "guest ready line",
        lambda: (
            (out := client.get_console_output(InstanceId=instance_id).get("Output", ""))
            and "EUCALYPT-GUEST-READY" in out
            and out
        ),
        180,
        every=2,
    )
    assert f"instance-id={instance_id}" in console
    # The guest asked for an IMDSv2 token (through the CC's proxy) and used it.
    assert "metadata: IMDSv2" in console

    address = client.allocate_address()
    client.associate_address(InstanceId=instance_id, PublicIp=address["PublicIp"])
    assert described()["PublicIpAddress"] == address["PublicIp"]
    out = wait_for(
        "ssh with the key",
        lambda: (
            (r := ssh(key, address["PublicIp"], "cat /tmp/userdata-proof")).returncode == 0 and r
        ),
        90,
        every=3,
    )
    assert out.stdout.strip() == f"userdata-ran-{instance_id}"

    client.revoke_security_group_ingress(
        GroupId=group, IpProtocol="tcp", FromPort=22, ToPort=22, CidrIp="0.0.0.0/0"
    )
    refused = ssh(key, address["PublicIp"], "true", timeout=5)
    assert refused.returncode != 0

    tap_and_pid = described()
    client.terminate_instances(InstanceIds=[instance_id])
    wait_for("terminated", lambda: described()["State"]["Name"] == "terminated", 60)
    links = subprocess.run(["ip", "-n", ns, "-o", "link"], capture_output=True, text=True).stdout
    assert "tap" not in links
    rules = subprocess.run(
        ["ip", "netns", "exec", ns, "iptables-save"], capture_output=True, text=True
    ).stdout
    assert tap_and_pid["PrivateIpAddress"] not in rules
    assert address["PublicIp"] not in rules
    qemu = subprocess.run(["pgrep", "-f", instance_id], capture_output=True, text=True).stdout
    assert qemu.strip() == ""
    addr = client.describe_addresses(PublicIps=[address["PublicIp"]])["Addresses"][0]
    assert "InstanceId" not in addr
    client.release_address(PublicIp=address["PublicIp"])
