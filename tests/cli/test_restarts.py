"""State survives restarts: kill -9 the CLC while instances run (sim NC), images from Walrus."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.config import Config as BotoConfig

from eucalypt.cc.api import CcClient
from eucalypt.cli.supervisor import alive, read_pid
from eucalypt.rpc import ComponentKeys
from tests.support.cloud import Cloud, make_config, start_cloud_with, stop_cloud


@pytest.fixture(scope="module")
def cloud(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cloud]:
    config = make_config(tmp_path_factory.mktemp("restarts"), hypervisor="sim")
    c = start_cloud_with(config, "--no-test-image")
    try:
        yield c
    finally:
        stop_cloud(c)


def client(cloud: Cloud, service: str) -> Any:
    return boto3.client(
        service,
        endpoint_url=cloud.env[f"AWS_ENDPOINT_URL_{service.upper()}"],
        region_name=cloud.env["AWS_DEFAULT_REGION"],
        aws_access_key_id=cloud.env["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=cloud.env["AWS_SECRET_ACCESS_KEY"],
        config=BotoConfig(retries={"max_attempts": 4}, s3={"addressing_style": "path"}),
    )


def wait(what: str, check: Any, timeout: float = 60.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            got = check()
        except Exception:  # the CLC may be restarting
            got = None
        if got:
            return got
        time.sleep(0.3)
    raise AssertionError(f"{what} not after {timeout}s")


def states(ec2: Any, ids: list[str]) -> dict[str, str]:
    res = ec2.describe_instances(InstanceIds=ids)["Reservations"]
    return {i["InstanceId"]: i["State"]["Name"] for r in res for i in r["Instances"]}


def test_register_image_from_walrus_then_survive_clc_kill(cloud: Cloud, tmp_path: Path) -> None:
    s3, ec2 = client(cloud, "s3"), client(cloud, "ec2")
    s3.create_bucket(Bucket="imgs")
    body = os.urandom(3 << 20)
    s3.put_object(Bucket="imgs", Key="disk.raw", Body=body)
    image_id = ec2.register_image(Name="disk", ImageLocation="imgs/disk.raw")["ImageId"]
    assert image_id.startswith("emi-")
    wait(
        "image available",
        lambda: ec2.describe_images(ImageIds=[image_id])["Images"][0]["State"] == "available",
    )
    # A location that does not exist: the image fails, with the reason.
    bad = ec2.register_image(Name="missing", ImageLocation="imgs/nope.raw")["ImageId"]
    failed = wait(
        "image failed",
        lambda: (
            (img := ec2.describe_images(ImageIds=[bad])["Images"][0])
            and img["State"] == "failed"
            and img
        ),
    )
    assert "nope.raw" in failed["StateReason"]["Message"]

    ids = [
        i["InstanceId"]
        for i in ec2.run_instances(
            ImageId=image_id, MinCount=3, MaxCount=3, InstanceType="t1.micro"
        )["Instances"]
    ]
    wait("running", lambda: set(states(ec2, ids).values()) == {"running"})

    clc_pid = read_pid(cloud.config, "clc")
    assert clc_pid is not None
    os.kill(clc_pid, signal.SIGKILL)
    wait(
        "CLC restarted by the supervisor",
        lambda: (p := read_pid(cloud.config, "clc")) is not None and p != clc_pid and alive(p),
        30,
    )
    # Nothing lost: the same instances, still running.
    assert wait("CLC answers", lambda: states(ec2, ids)) == dict.fromkeys(ids, "running")

    # An instance ended behind the CLC's back (here: at its CC) shows up as terminated.
    keys = ComponentKeys.load(cloud.config.keys_dir)

    async def end_at_cc() -> None:
        cc = CcClient(cloud.config.cc.url, keys.credential("clc"), region=cloud.config.region)
        try:
            await cc.terminate_instances([ids[0]])
        finally:
            await cc.aclose()

    asyncio.run(end_at_cc())
    wait("caught up from the CC", lambda: states(ec2, ids)[ids[0]] == "terminated")
    ec2.terminate_instances(InstanceIds=ids[1:])
    wait("terminated", lambda: set(states(ec2, ids).values()) == {"terminated"})


def test_cloud_admin_may_call_the_nc_directly_and_users_may_not(cloud: Cloud) -> None:
    from eucalypt.auth.credentials import Credential
    from eucalypt.nc.api import NcClient
    from eucalypt.rpc import RemoteError

    admin = Credential(
        access_key=cloud.env["AWS_ACCESS_KEY_ID"], secret_key=cloud.env["AWS_SECRET_ACCESS_KEY"]
    )

    async def describe(cred: Credential) -> int:
        nc = NcClient(cloud.config.nc.url, cred, region=cloud.config.region)
        try:
            return (await nc.describe_resource()).resources.cores_total
        finally:
            await nc.aclose()

    assert asyncio.run(describe(admin)) == 8  # the sim node's cores
    made = cloud.cli(
        "admin",
        "account",
        "create",
        "plain-user",
        "--json",
        "--config",
        str(cloud.config.config_path),
    ).stdout
    import json

    key = json.loads(made)[0]
    user = Credential(access_key=key["access_key"], secret_key=key["secret_key"])
    with pytest.raises(RemoteError) as err:
        asyncio.run(describe(user))
    assert err.value.code == "AccessDenied"
