"""The whole cloud as a user meets it: `eucalypt up`, the AWS CLI, boto3, `down`."""

from __future__ import annotations

import json
import os
import urllib.parse
from pathlib import Path

import boto3
import botocore.exceptions
import httpx
import pytest
from botocore.config import Config as BotoConfig

from eucalypt.cli.supervisor import COMPONENTS, SUPERVISOR, alive, read_pid
from tests.support.cloud import Cloud, start_cloud, stop_cloud


@pytest.fixture(scope="module")
def cloud(tmp_path_factory: pytest.TempPathFactory) -> Cloud:
    c = start_cloud(tmp_path_factory.mktemp("cloud"), "--no-test-image")
    yield c  # type: ignore[misc]
    stop_cloud(c)


def ec2(cloud: Cloud, secret: str | None = None, access: str | None = None):  # type: ignore[no-untyped-def]
    return boto3.client(
        "ec2",
        endpoint_url=cloud.env["AWS_ENDPOINT_URL_EC2"],
        region_name=cloud.env["AWS_DEFAULT_REGION"],
        aws_access_key_id=access or cloud.env["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=secret or cloud.env["AWS_SECRET_ACCESS_KEY"],
        config=BotoConfig(retries={"max_attempts": 1}),
    )


def test_status_reports_every_component_up(cloud: Cloud) -> None:
    out = cloud.cli("status", "--config", str(cloud.config.config_path)).stdout
    for component in COMPONENTS:
        assert component in out
    assert out.count(" up ") >= 4 or out.count("up") >= 4
    for component in COMPONENTS:
        assert read_pid(cloud.config, component) is not None


def test_aws_cli_describe_regions(cloud: Cloud) -> None:
    regions = json.loads(cloud.aws("ec2", "describe-regions").stdout)["Regions"]
    assert regions == [
        {
            "RegionName": cloud.config.region,
            "Endpoint": cloud.config.clc.url,
            "OptInStatus": "opt-in-not-required",
        }
    ]


def test_aws_cli_describe_availability_zones(cloud: Cloud) -> None:
    zones = json.loads(cloud.aws("ec2", "describe-availability-zones").stdout)["AvailabilityZones"]
    assert [z["ZoneName"] for z in zones] == [cloud.config.cc.name]
    assert zones[0]["State"] == "available"
    assert zones[0]["RegionName"] == cloud.config.region


def test_verbose_zones_report_capacity_per_vm_type(cloud: Cloud) -> None:
    zones = ec2(cloud).describe_availability_zones(ZoneNames=["verbose"])["AvailabilityZones"]
    names = [z["ZoneName"] for z in zones]
    assert names[0] == cloud.config.cc.name
    assert "|- m1.small" in names
    small = next(z for z in zones if z["ZoneName"] == "|- m1.small")
    free, _, maximum = small["State"].split()[:3]
    cores = len(os.sched_getaffinity(0))
    # m1.small is 1 core: an empty node fits at most one per core.
    assert int(free) == int(maximum) and 1 <= int(maximum) <= cores


def test_zone_filters_and_unknown_zone(cloud: Cloud) -> None:
    client = ec2(cloud)
    got = client.describe_availability_zones(Filters=[{"Name": "state", "Values": ["avail*"]}])
    assert len(got["AvailabilityZones"]) == 1
    got = client.describe_availability_zones(Filters=[{"Name": "zone-name", "Values": ["nope"]}])
    assert got["AvailabilityZones"] == []
    with pytest.raises(botocore.exceptions.ClientError) as err:
        client.describe_availability_zones(ZoneNames=["no-such-zone"])
    assert err.value.response["Error"]["Code"] == "InvalidParameterValue"
    with pytest.raises(botocore.exceptions.ClientError) as err:
        client.describe_availability_zones(Filters=[{"Name": "bogus", "Values": ["x"]}])
    assert err.value.response["Error"]["Code"] == "InvalidParameterValue"


def test_wrong_secret_is_signature_does_not_match(cloud: Cloud) -> None:
    with pytest.raises(botocore.exceptions.ClientError) as err:
        ec2(cloud, secret="wrong-secret-wrong-secret").describe_regions()
    assert err.value.response["Error"]["Code"] == "SignatureDoesNotMatch"
    assert err.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403
    assert err.value.response["ResponseMetadata"]["RequestId"]


def test_unknown_key_is_auth_failure(cloud: Cloud) -> None:
    with pytest.raises(botocore.exceptions.ClientError) as err:
        ec2(cloud, access="AKIANOSUCHKEY0000000").describe_regions()
    assert err.value.response["Error"]["Code"] == "AuthFailure"


def test_aws_cli_wrong_secret_fails_with_ec2_error(cloud: Cloud) -> None:
    proc = cloud.aws("ec2", "describe-regions", check=False, env={"AWS_SECRET_ACCESS_KEY": "wrong"})
    assert proc.returncode != 0
    assert "SignatureDoesNotMatch" in proc.stderr


def raw_ec2(cloud: Cloud, params: dict[str, str]) -> httpx.Response:
    """A correctly signed raw EC2 Query POST, for requests boto3 would refuse to make."""
    from botocore.auth import SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    body = urllib.parse.urlencode(params)
    url = cloud.env["AWS_ENDPOINT_URL_EC2"] + "/"
    req = AWSRequest(
        method="POST",
        url=url,
        data=body,
        headers={"Content-Type": "application/x-www-form-urlencoded; charset=utf-8"},
    )
    creds = Credentials(cloud.env["AWS_ACCESS_KEY_ID"], cloud.env["AWS_SECRET_ACCESS_KEY"])
    SigV4Auth(creds, "ec2", cloud.env["AWS_DEFAULT_REGION"]).add_auth(req)
    return httpx.post(url, content=body, headers=dict(req.headers))


def test_unknown_action_is_invalid_action(cloud: Cloud) -> None:
    reply = raw_ec2(cloud, {"Action": "FlyToTheMoon", "Version": "2016-11-15"})
    assert reply.status_code == 400
    assert "<Code>InvalidAction</Code>" in reply.text
    assert "<RequestID>" in reply.text


def test_missing_required_parameter(cloud: Cloud) -> None:
    reply = raw_ec2(cloud, {"Action": "RunInstances", "Version": "2016-11-15", "ImageId": "emi-1"})
    assert reply.status_code == 400
    assert "<Code>MissingParameter</Code>" in reply.text
    assert "MinCount" in reply.text or "MaxCount" in reply.text


def test_unsigned_request_is_refused(cloud: Cloud) -> None:
    reply = httpx.post(
        cloud.env["AWS_ENDPOINT_URL_EC2"] + "/",
        data={"Action": "DescribeRegions", "Version": "2016-11-15"},
    )
    assert reply.status_code in (401, 403)
    assert "<Response><Errors><Error><Code>" in reply.text


def test_dry_run(cloud: Cloud) -> None:
    with pytest.raises(botocore.exceptions.ClientError) as err:
        ec2(cloud).describe_regions(DryRun=True)
    assert err.value.response["Error"]["Code"] == "DryRunOperation"


def test_new_account_key_works_and_deactivation_takes_effect(cloud: Cloud) -> None:
    cfg = str(cloud.config.config_path)
    made = json.loads(
        cloud.cli("admin", "account", "create", "carol-co", "--json", "--config", cfg).stdout
    )
    access, secret = made[0]["access_key"], made[0]["secret_key"]
    listed = json.loads(
        cloud.cli("admin", "key", "list", "--account", "carol-co", "--json", "--config", cfg).stdout
    )
    assert [k["access_key"] for k in listed] == [access]
    assert "secret_key" not in listed[0]
    assert ec2(cloud, secret=secret, access=access).describe_regions()["Regions"]
    cloud.cli("admin", "key", "deactivate", access, "--config", cfg)
    with pytest.raises(botocore.exceptions.ClientError) as err:
        ec2(cloud, secret=secret, access=access).describe_regions()
    assert err.value.response["Error"]["Code"] == "AuthFailure"


def test_env_writes_eucarc(cloud: Cloud) -> None:
    eucarc = (cloud.config.data_dir / "eucarc").read_text()
    assert f"export AWS_ENDPOINT_URL_EC2={cloud.config.clc.url}" in eucarc
    assert "EC2_SECRET_KEY=" in eucarc


def test_down_leaves_no_process(tmp_path: Path) -> None:
    c = start_cloud(tmp_path / "second", "--no-test-image")
    pids = [read_pid(c.config, name) for name in (*COMPONENTS, SUPERVISOR)]
    assert all(pids)
    # up is idempotent: a second `up` finds the running cloud.
    again = c.cli("up", "--data-dir", str(c.config.data_dir), "--no-test-image")
    assert "already running" in again.stdout
    stop_cloud(c)
    assert [p for p in pids if p and alive(p)] == []
    status = c.cli("status", "--config", str(c.config.config_path), check=False)
    assert status.returncode == 1
