"""Requests serialised by botocore's EC2 client codec must parse back to the same params."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import botocore.loaders
import pytest
from ec2_sample_values import SampleValues

from eucalypt.clc.ec2 import Ec2Protocol

CASES: list[tuple[str, dict[str, Any]]] = [
    ("DescribeInstances", {}),
    (
        "DescribeInstances",
        {
            "Filters": [
                {"Name": "instance-state-name", "Values": ["running", "pending"]},
                {"Name": "tag:Name", "Values": ["web & db <1>"]},
            ],
            "InstanceIds": ["i-0123456789abcdef0", "i-00000000000000001"],
            "MaxResults": 50,
            "NextToken": "tok+en/==",
            "DryRun": True,
        },
    ),
    (
        "RunInstances",
        {
            "ImageId": "emi-12345678",
            "InstanceType": "m1.small",
            "MinCount": 1,
            "MaxCount": 3,
            "KeyName": "my key",
            "SecurityGroups": ["default", "web"],
            "SecurityGroupIds": ["sg-1"],
            "UserData": "IyEvYmluL3NoCmVjaG8gaGkK",
            "Placement": {"AvailabilityZone": "zone-a", "Tenancy": "default"},
            "Monitoring": {"Enabled": False},
            "BlockDeviceMappings": [
                {
                    "DeviceName": "/dev/sda1",
                    "Ebs": {"VolumeSize": 20, "DeleteOnTermination": True, "VolumeType": "gp2"},
                },
                {"DeviceName": "/dev/sdb", "VirtualName": "ephemeral0"},
                {"DeviceName": "/dev/sdc", "NoDevice": ""},
            ],
            "TagSpecifications": [
                {
                    "ResourceType": "instance",
                    "Tags": [{"Key": "Name", "Value": "web-1"}, {"Key": "env", "Value": ""}],
                },
                {"ResourceType": "volume", "Tags": [{"Key": "k", "Value": "v"}]},
            ],
            "NetworkInterfaces": [
                {
                    "DeviceIndex": 0,
                    "SubnetId": "subnet-1",
                    "Groups": ["sg-1", "sg-2"],
                    "PrivateIpAddresses": [
                        {"PrivateIpAddress": "10.0.0.5", "Primary": True},
                        {"PrivateIpAddress": "10.0.0.6", "Primary": False},
                    ],
                    "Ipv6Addresses": [{"Ipv6Address": "fd00::1"}],
                }
            ],
            "ClientToken": "token-1",
            "DryRun": False,
        },
    ),
    (
        "AuthorizeSecurityGroupIngress",
        {
            "GroupName": "web",
            "IpPermissions": [
                {
                    "IpProtocol": "tcp",
                    "FromPort": 22,
                    "ToPort": 22,
                    "IpRanges": [
                        {"CidrIp": "0.0.0.0/0", "Description": "ssh from anywhere"},
                        {"CidrIp": "10.0.0.0/8"},
                    ],
                    "UserIdGroupPairs": [
                        {"GroupName": "default", "UserId": "000000000001"},
                        {"GroupId": "sg-2"},
                    ],
                },
                {"IpProtocol": "icmp", "FromPort": -1, "ToPort": -1},
            ],
        },
    ),
    (
        "AuthorizeSecurityGroupIngress",
        {
            "GroupId": "sg-1",
            "IpProtocol": "udp",
            "FromPort": 53,
            "ToPort": 53,
            "CidrIp": "192.168.0.0/16",
            "SourceSecurityGroupName": "other",
            "SourceSecurityGroupOwnerId": "000000000002",
        },
    ),
    (
        "CreateTags",
        {
            "Resources": ["i-1", "vol-2"],
            "Tags": [{"Key": "Name", "Value": "a=b&c"}, {"Key": "empty", "Value": ""}],
        },
    ),
    (
        "DescribeAvailabilityZones",
        {"ZoneNames": ["zone-a", "zone-b"], "AllAvailabilityZones": True},
    ),
    ("DescribeRegions", {"AllRegions": True, "RegionNames": ["eucalypt"]}),
    ("DescribeRegions", {"AllRegions": False}),
    (
        "ImportKeyPair",
        {
            "KeyName": "imported",
            "PublicKeyMaterial": b"ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAI\x00\xff user@host\n",
        },
    ),
    ("CreateKeyPair", {"KeyName": "k", "KeyType": "ed25519", "KeyFormat": "pem"}),
    ("DeleteKeyPair", {"KeyName": "k", "DryRun": True}),
    ("TerminateInstances", {"InstanceIds": ["i-1", "i-2", "i-3"]}),
    ("AllocateAddress", {"Domain": "standard"}),
    ("AssociateAddress", {"InstanceId": "i-1", "PublicIp": "203.0.113.7"}),
    (
        "DescribeSpotPriceHistory",
        {
            "StartTime": datetime(2026, 11, 30, 1, 2, 3, tzinfo=UTC),
            "EndTime": datetime(2026, 12, 1, 4, 5, 6, 789012, tzinfo=UTC),
            "InstanceTypes": ["m1.small"],
        },
    ),
    ("DescribeImages", {"Owners": ["self"], "ExecutableUsers": ["all"], "ImageIds": ["emi-1"]}),
    (
        "ModifyInstanceAttribute",
        {"InstanceId": "i-1", "UserData": {"Value": b"#!/bin/sh\necho \xe2\x9c\x93\n"}},
    ),
]


@pytest.mark.parametrize(
    ("operation", "params"),
    CASES,
    ids=[f"{op}-{i}" for i, (op, _) in enumerate(CASES)],
)
def test_botocore_request_parses_back(botocore_codec: Any, operation: str, params: dict) -> None:
    assert botocore_codec.through_the_wire(operation, params) == params


def test_wire_names_follow_ec2_rules(botocore_codec: Any) -> None:
    """Sanity check of the encoding we rely on: locationName capitalised, queryName as is."""
    pairs = dict(
        botocore_codec.request_pairs(
            "RunInstances",
            {
                "MinCount": 1,
                "MaxCount": 1,
                "DryRun": True,
                "Placement": {"AvailabilityZone": "z"},
                "NetworkInterfaces": [
                    {"DeviceIndex": 0, "PrivateIpAddresses": [{"PrivateIpAddress": "10.0.0.1"}]}
                ],
            },
        )
    )
    assert pairs["DryRun"] == "true"
    assert pairs["Placement.AvailabilityZone"] == "z"
    assert pairs["NetworkInterface.1.PrivateIpAddresses.1.PrivateIpAddress"] == "10.0.0.1"


def test_user_data_string_is_kept_verbatim(protocol: Ec2Protocol) -> None:
    parsed = protocol.parse_request(
        "RunInstances", {"MinCount": "1", "MaxCount": "1", "UserData": "aGVsbG8="}
    )
    assert parsed == {"MinCount": 1, "MaxCount": 1, "UserData": "aGVsbG8="}


def test_blob_tolerates_whitespace_and_timestamps_normalise_to_utc(protocol: Ec2Protocol) -> None:
    parsed = protocol.parse_request(
        "ImportKeyPair", {"KeyName": "k", "PublicKeyMaterial": "c3No\nLXJzYQ=="}
    )
    assert parsed["PublicKeyMaterial"] == b"ssh-rsa"
    parsed = protocol.parse_request(
        "DescribeSpotPriceHistory",
        [("StartTime", "2026-11-30T03:02:03+02:00"), ("EndTime", "2026-11-30T01:02:03")],
    )
    expected = datetime(2026, 11, 30, 1, 2, 3, tzinfo=UTC)
    assert parsed == {"StartTime": expected, "EndTime": expected}
    assert parsed["EndTime"].utcoffset() is not None


def test_list_items_ordered_by_index_and_blank_list_is_empty(protocol: Ec2Protocol) -> None:
    parsed = protocol.parse_request(
        "DescribeInstances", [("InstanceId.10", "c"), ("InstanceId.2", "b"), ("InstanceId.1", "a")]
    )
    assert parsed == {"InstanceIds": ["a", "b", "c"]}
    assert protocol.parse_request("DescribeInstances", [("InstanceId", "")]) == {"InstanceIds": []}


def _operations() -> list[str]:
    model = botocore.loaders.Loader().load_service_model("ec2", "service-2")
    return sorted(model["operations"])


OPERATIONS = _operations()


@pytest.mark.parametrize("operation", OPERATIONS)
def test_every_operation_round_trips_generated_params(
    lax_botocore_codec: Any, operation: str
) -> None:
    """Every input member of every EC2 operation, at every depth, survives the trip."""
    shape = lax_botocore_codec.protocol.service_model.operation_model(operation).input_shape
    params = SampleValues(for_output=False).value(shape) if shape is not None else None
    params = params or {}
    assert lax_botocore_codec.through_the_wire(operation, params) == params
