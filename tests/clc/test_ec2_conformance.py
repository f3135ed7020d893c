"""EC2 answers peer suites rely on: auth codes, odd missing-parameter codes, tag filters."""

from __future__ import annotations

import boto3
import botocore.exceptions
import pytest
from botocore.config import Config as BotoConfig

from tests.clc.conftest import ClcFixture


def fails(call, *args, **kwargs) -> tuple[str, int]:  # type: ignore[no-untyped-def]
    with pytest.raises(botocore.exceptions.ClientError) as err:
        call(*args, **kwargs)
    response = err.value.response
    return str(response["Error"]["Code"]), int(response["ResponseMetadata"]["HTTPStatusCode"])


def test_unknown_access_key_is_auth_failure(clc: ClcFixture) -> None:
    stranger = boto3.client(
        "ec2",
        endpoint_url=clc.url,
        region_name=clc.config.region,
        aws_access_key_id="AKIANOSUCHKEY0000000",
        aws_secret_access_key="x" * 40,
        config=BotoConfig(retries={"max_attempts": 1}),
    )
    assert fails(stranger.describe_regions) == ("AuthFailure", 401)


def test_terminate_without_ids_and_unknown_instance_type(clc: ClcFixture) -> None:
    ec2 = clc.client(clc.alice)
    assert fails(ec2.terminate_instances, InstanceIds=[]) == ("InvalidParameterCombination", 400)
    assert fails(ec2.describe_instance_types, InstanceTypes=["x9.huge"]) == (
        "InvalidInstanceType",
        400,
    )


def test_describe_tags_tag_filter_and_malformed_resource_ids(clc: ClcFixture) -> None:
    ec2 = clc.client(clc.alice)
    gid = ec2.create_security_group(GroupName="tag-filtered", Description="d")["GroupId"]
    ec2.create_tags(Resources=[gid], Tags=[{"Key": "tier", "Value": "web"}, {"Key": "x"}])
    got = ec2.describe_tags(Filters=[{"Name": "tag:tier", "Values": ["w*"]}])["Tags"]
    assert [(t["ResourceId"], t["Key"], t["Value"]) for t in got] == [(gid, "tier", "web")]
    assert ec2.describe_tags(Filters=[{"Name": "tag:tier", "Values": ["db"]}])["Tags"] == []
    for bad in ("bogus", "i-zz", "sg-!!"):
        assert fails(ec2.create_tags, Resources=[bad], Tags=[{"Key": "k", "Value": "v"}]) == (
            "InvalidID",
            400,
        )
    assert {t["Key"] for t in ec2.describe_tags()["Tags"] if t["ResourceId"] == gid} == {
        "tier",
        "x",
    }


def test_filter_values_escape_wildcards_with_backslash(clc: ClcFixture) -> None:
    ec2 = clc.client(clc.bob)
    values = ["plain value", "star value*", "stars value**", "mixed value*?"]
    for i, value in enumerate(values):
        gid = ec2.create_security_group(GroupName=f"escaped-{i}", Description="d")["GroupId"]
        ec2.create_tags(Resources=[gid], Tags=[{"Key": "escaped", "Value": value}])

    def matching(pattern: str) -> list[str]:
        got = ec2.describe_tags(
            Filters=[{"Name": "key", "Values": ["escaped"]}, {"Name": "value", "Values": [pattern]}]
        )["Tags"]
        return sorted(t["Value"] for t in got)

    assert matching("*value*") == sorted(values)
    assert matching(r"*value\*") == ["star value*"]
    assert matching(r"*value\*\*") == ["stars value**"]
    assert matching(r"*value\*\?") == ["mixed value*?"]
    assert matching("star?value\\*") == ["star value*"]


def test_deleting_a_resource_deletes_its_tags(clc: ClcFixture) -> None:
    ec2 = clc.client(clc.bob)
    key = ec2.create_key_pair(KeyName="tagged-then-gone")["KeyPairId"]
    gid = ec2.create_security_group(GroupName="tagged-then-gone", Description="d")["GroupId"]
    image = ec2.register_image(Name="tagged-then-gone", ImageLocation="bucket/gone.img")["ImageId"]
    ec2.create_tags(Resources=[key, gid, image], Tags=[{"Key": "doomed", "Value": "1"}])
    assert len(ec2.describe_tags(Filters=[{"Name": "key", "Values": ["doomed"]}])["Tags"]) == 3
    ec2.delete_key_pair(KeyPairId=key)
    ec2.delete_security_group(GroupId=gid)
    ec2.deregister_image(ImageId=image)
    assert ec2.describe_tags(Filters=[{"Name": "key", "Values": ["doomed"]}])["Tags"] == []


def test_allocate_address_checks_its_parameters_first(clc: ClcFixture) -> None:
    ec2 = clc.client(clc.bob)
    assert fails(ec2.allocate_address, Domain="bogus") == ("InvalidParameterValue", 400)
    assert fails(ec2.allocate_address, NetworkBorderGroup="mars-1") == (
        "InvalidParameterValue",
        400,
    )
    assert ec2.describe_addresses()["Addresses"] == []
