"""Our response XML, read by botocore's own EC2 response parser, must give back the result."""

from __future__ import annotations

import copy
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import botocore.loaders
import defusedxml.ElementTree as SafeET
import pytest
from ec2_sample_values import SampleValues

from eucalypt.clc.ec2 import Ec2Protocol

NS = "{http://ec2.amazonaws.com/doc/2016-11-15/}"
LAUNCH = datetime(2026, 11, 30, 1, 2, 3, tzinfo=UTC)


def instance(n: int) -> dict[str, Any]:
    """A realistically populated Instance as a handler would return it."""
    return {
        "InstanceId": f"i-{n:017x}",
        "ImageId": "emi-12345678",
        "State": {"Code": 16, "Name": "running"},
        "PrivateDnsName": f"euca-10-0-{n // 256}-{n % 256}.eucalypt.internal",
        "PublicDnsName": "",
        "StateTransitionReason": "",
        "KeyName": "my <key> & co",
        "AmiLaunchIndex": n % 4,
        "ProductCodes": [],
        "InstanceType": "m1.small",
        "LaunchTime": LAUNCH + timedelta(milliseconds=n),
        "Placement": {"AvailabilityZone": "zone-a", "GroupName": "", "Tenancy": "default"},
        "KernelId": "eki-1",
        "RamdiskId": "eri-1",
        "Monitoring": {"State": "disabled"},
        "PrivateIpAddress": f"10.0.{n // 256}.{n % 256}",
        "PublicIpAddress": "203.0.113.7",
        "Architecture": "x86_64",
        "RootDeviceType": "instance-store",
        "RootDeviceName": "/dev/sda1",
        "BlockDeviceMappings": [
            {
                "DeviceName": "/dev/sda1",
                "Ebs": {
                    "AttachTime": LAUNCH,
                    "DeleteOnTermination": True,
                    "Status": "attached",
                    "VolumeId": "vol-1",
                },
            }
        ],
        "VirtualizationType": "hvm",
        "Hypervisor": "xen",
        "ClientToken": "",
        "Tags": [{"Key": "Name", "Value": f"web-{n}"}, {"Key": "owner", "Value": "é ✓"}],
        "SecurityGroups": [{"GroupName": "default", "GroupId": "sg-1"}],
        "SourceDestCheck": True,
        "EbsOptimized": False,
        "EnaSupport": False,
        "NetworkInterfaces": [
            {
                "NetworkInterfaceId": "eni-1",
                "Status": "in-use",
                "MacAddress": "d0:0d:00:00:00:01",
                "PrivateIpAddress": "10.0.0.1",
                "SourceDestCheck": True,
                "Groups": [{"GroupName": "default", "GroupId": "sg-1"}],
                "Attachment": {
                    "AttachmentId": "eni-attach-1",
                    "DeviceIndex": 0,
                    "Status": "attached",
                    "AttachTime": LAUNCH,
                    "DeleteOnTermination": True,
                },
                "Association": {"PublicIp": "203.0.113.7", "IpOwnerId": "amazon"},
                "PrivateIpAddresses": [
                    {
                        "PrivateIpAddress": "10.0.0.1",
                        "Primary": True,
                        "Association": {"PublicIp": "203.0.113.7", "IpOwnerId": "amazon"},
                    }
                ],
                "Ipv6Addresses": [],
            }
        ],
        "CpuOptions": {"CoreCount": 1, "ThreadsPerCore": 1},
        "MetadataOptions": {
            "State": "applied",
            "HttpTokens": "optional",
            "HttpEndpoint": "enabled",
        },
    }


CASES: list[tuple[str, dict[str, Any]]] = [
    (
        "DescribeRegions",
        {
            "Regions": [
                {
                    "RegionName": "eucalypt",
                    "Endpoint": "ec2.eucalypt.internal",
                    "OptInStatus": "opt-in-not-required",
                },
                {"RegionName": "other", "Endpoint": "e2"},
            ]
        },
    ),
    ("DescribeRegions", {"Regions": []}),
    (
        "DescribeAvailabilityZones",
        {
            "AvailabilityZones": [
                {
                    "ZoneName": "zone-a",
                    "State": "available",
                    "RegionName": "eucalypt",
                    "Messages": [{"Message": "all good"}, {"Message": "<ok> & fine"}],
                    "ZoneType": "availability-zone",
                    "ZoneId": "euc1-az1",
                    "OptInStatus": "opt-in-not-required",
                }
            ]
        },
    ),
    (
        "DescribeInstances",
        {
            "Reservations": [
                {
                    "ReservationId": "r-1",
                    "OwnerId": "000000000001",
                    "Groups": [{"GroupName": "default", "GroupId": "sg-1"}],
                    "Instances": [instance(0), instance(1)],
                },
                {"ReservationId": "r-2", "OwnerId": "000000000001", "Instances": [instance(2)]},
            ],
            "NextToken": "next/token==",
        },
    ),
    (
        "CreateKeyPair",
        {
            "KeyName": "k",
            "KeyFingerprint": "1f:51:ae:28:bf:89:e9:d8:1f:25:5d:37:2d:7d:b8:ca:9f:f5:f1:6f",
            "KeyMaterial": (
                "-----BEGIN RSA PRIVATE KEY-----\nMIIE\r\n+/=\n-----END RSA PRIVATE KEY-----"
            ),
            "KeyPairId": "key-1",
            "Tags": [],
        },
    ),
    (
        "RunInstances",
        {
            "ReservationId": "r-3",
            "OwnerId": "000000000001",
            "Groups": [{"GroupName": "default", "GroupId": "sg-1"}],
            "Instances": [
                {**instance(3), "State": {"Code": 0, "Name": "pending"}, "PublicIpAddress": None}
            ],
        },
    ),
    (
        "DescribeSecurityGroups",
        {
            "SecurityGroups": [
                {
                    "GroupName": "web",
                    "GroupId": "sg-2",
                    "OwnerId": "000000000001",
                    "Description": "web servers <80/443>",
                    "IpPermissions": [
                        {
                            "IpProtocol": "tcp",
                            "FromPort": 80,
                            "ToPort": 80,
                            "IpRanges": [{"CidrIp": "0.0.0.0/0", "Description": "http"}],
                            "Ipv6Ranges": [],
                            "PrefixListIds": [],
                            "UserIdGroupPairs": [
                                {"GroupName": "default", "GroupId": "sg-1", "UserId": "0001"}
                            ],
                        },
                        {"IpProtocol": "icmp", "FromPort": -1, "ToPort": -1, "IpRanges": []},
                    ],
                    "IpPermissionsEgress": [],
                }
            ]
        },
    ),
    (
        "AllocateAddress",
        {"PublicIp": "203.0.113.9", "Domain": "standard", "AllocationId": "eipalloc-1"},
    ),
    ("DeleteKeyPair", {"Return": True, "KeyPairId": "key-1"}),
    ("DeleteKeyPair", {"Return": False}),
    ("DeleteKeyPair", {}),
    (
        "TerminateInstances",
        {
            "TerminatingInstances": [
                {
                    "InstanceId": "i-1",
                    "CurrentState": {"Code": 32, "Name": "shutting-down"},
                    "PreviousState": {"Code": 16, "Name": "running"},
                }
            ]
        },
    ),
    ("GetConsoleOutput", {"InstanceId": "i-1", "Output": "aGk=", "Timestamp": LAUNCH}),
    (
        "DescribeSpotPriceHistory",
        {"SpotPriceHistory": [{"SpotPrice": "0.01", "Timestamp": LAUNCH}]},
    ),
    ("ImportKeyPair", {"KeyName": "k", "KeyFingerprint": "ab:cd", "KeyPairId": "key-2"}),
]


def strip_metadata(parsed: dict[str, Any]) -> dict[str, Any]:
    parsed = dict(parsed)
    parsed.pop("ResponseMetadata")
    return parsed


def drop_none(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: drop_none(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [drop_none(v) for v in value]
    return value


@pytest.mark.parametrize(
    ("operation", "result"), CASES, ids=[f"{op}-{i}" for i, (op, _) in enumerate(CASES)]
)
def test_botocore_parses_our_response_back(
    protocol: Ec2Protocol, botocore_codec: Any, operation: str, result: dict[str, Any]
) -> None:
    original = copy.deepcopy(result)
    body = protocol.serialize_response(operation, result, "req-42")
    assert result == original, "serialisation must not mutate the result"
    parsed = botocore_codec.parse_response(operation, body)
    assert parsed["ResponseMetadata"]["RequestId"] == "req-42"
    assert strip_metadata(parsed) == drop_none(result)


def test_document_envelope(protocol: Ec2Protocol) -> None:
    body = protocol.serialize_response(
        "DescribeRegions", {"Regions": [{"RegionName": "r", "Endpoint": "e"}]}, "req-<1>"
    )
    head, _, rest = body.partition(b"\n")
    assert head == b'<?xml version="1.0" encoding="UTF-8"?>'
    assert rest.startswith(
        b'<DescribeRegionsResponse xmlns="http://ec2.amazonaws.com/doc/2016-11-15/">'
        b"<requestId>req-&lt;1&gt;</requestId><regionInfo><item><regionName>r</regionName>"
    )
    root = SafeET.fromstring(body)
    assert root.tag == f"{NS}DescribeRegionsResponse"
    assert root.find(f"{NS}requestId").text == "req-<1>"


def test_scalar_formats(protocol: Ec2Protocol) -> None:
    when = datetime(2026, 11, 30, 3, 2, 3, 456789, tzinfo=timezone(timedelta(hours=2)))
    body = protocol.serialize_response(
        "GetConsoleOutput", {"InstanceId": "i-1", "Timestamp": when}, "r"
    ).decode()
    assert "<timestamp>2026-11-30T01:02:03.456Z</timestamp>" in body
    naive = protocol.serialize_response(
        "GetConsoleOutput", {"Timestamp": datetime(2026, 11, 30, 1, 2, 3)}, "r"
    ).decode()
    assert "<timestamp>2026-11-30T01:02:03.000Z</timestamp>" in naive
    body = protocol.serialize_response("DeleteKeyPair", {"Return": True}, "r").decode()
    assert body.endswith("<requestId>r</requestId><return>true</return></DeleteKeyPairResponse>")


def test_operation_without_output_answers_return_true(
    protocol: Ec2Protocol, botocore_codec: Any
) -> None:
    body = protocol.serialize_response("RebootInstances", {}, "req-1")
    assert body.endswith(
        b"<requestId>req-1</requestId><return>true</return></RebootInstancesResponse>"
    )
    parsed = botocore_codec.parse_response("RebootInstances", body)
    assert parsed["ResponseMetadata"]["RequestId"] == "req-1"
    with pytest.raises(ValueError, match="no output"):
        protocol.serialize_response("RebootInstances", {"Return": True}, "req-1")


def test_unrepresentable_characters_are_replaced(
    protocol: Ec2Protocol, botocore_codec: Any
) -> None:
    body = protocol.serialize_response(
        "CreateKeyPair", {"KeyName": "a\x00b\x1bc\ud800d", "KeyMaterial": "x\ry"}, "r"
    )
    parsed = botocore_codec.parse_response("CreateKeyPair", body)
    assert parsed["KeyName"] == "a\ufffdb\ufffdc\ufffdd"
    assert parsed["KeyMaterial"] == "x\ry"


@pytest.mark.parametrize(
    ("result", "message"),
    [
        ({"Bogus": 1}, r"Bogus: not a member of DescribeInstancesResult"),
        (
            {"Reservations": [{"Instances": [{}, {"InstanceId": "i", "Bogus": 1}]}]},
            r"Reservations\[0\]\.Instances\[1\]\.Bogus: not a member of Instance",
        ),
        (
            {"Reservations": [{"Instances": [{"AmiLaunchIndex": "0"}]}]},
            r"Reservations\[0\]\.Instances\[0\]\.AmiLaunchIndex: expected int",
        ),
        ({"Reservations": [{"Instances": [{"EbsOptimized": 1}]}]}, r"EbsOptimized: expected bool"),
        ({"Reservations": [{"Instances": [{"AmiLaunchIndex": True}]}]}, r"expected int"),
        ({"Reservations": [{"Instances": [{"LaunchTime": "2026"}]}]}, r"expected datetime"),
        ({"Reservations": [{"Instances": [{"InstanceId": 5}]}]}, r"InstanceId: expected str"),
        ({"Reservations": [None]}, r"Reservations\[0\]: list items must not be None"),
        ({"Reservations": {"a": 1}}, r"Reservations: expected a list"),
        ({"Reservations": "r-1"}, r"Reservations: expected a list"),
        ({"Reservations": [["x"]]}, r"Reservations\[0\]: expected a mapping"),
    ],
)
def test_results_that_do_not_fit_the_shape_raise(
    protocol: Ec2Protocol, result: dict[str, Any], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        protocol.serialize_response("DescribeInstances", result, "r")


def test_unknown_operation_is_a_programming_error(protocol: Ec2Protocol) -> None:
    with pytest.raises(ValueError, match="not an EC2 operation"):
        protocol.serialize_response("DescribeUnicorns", {}, "r")


def test_describe_instances_with_a_thousand_instances(
    protocol: Ec2Protocol, botocore_codec: Any
) -> None:
    """Scale check without a timing threshold: 1,000 instances render in a single pass
    (compiled per-shape writers appending to one chunk list) and botocore reads them all."""
    instances = [instance(n) for n in range(1000)]
    result = {"Reservations": [{"ReservationId": "r-1", "OwnerId": "0", "Instances": instances}]}
    body = protocol.serialize_response("DescribeInstances", result, "req-big")
    parsed = botocore_codec.parse_response("DescribeInstances", body)
    got = parsed["Reservations"][0]["Instances"]
    assert len(got) == 1000
    assert got[0] == instances[0]
    assert got[999] == instances[999]
    assert got[999]["LaunchTime"] == LAUNCH + timedelta(milliseconds=999)


def _operations_with_output() -> list[str]:
    model = botocore.loaders.Loader().load_service_model("ec2", "service-2")
    return sorted(name for name, op in model["operations"].items() if "output" in op)


@pytest.mark.parametrize("operation", _operations_with_output())
def test_every_operation_output_round_trips_generated_results(
    protocol: Ec2Protocol, botocore_codec: Any, operation: str
) -> None:
    """Every output member of every EC2 operation, at every depth, survives the trip."""
    shape = protocol.service_model.operation_model(operation).output_shape
    result = SampleValues(for_output=True).value(shape) or {}
    body = protocol.serialize_response(operation, result, "req-gen")
    assert strip_metadata(botocore_codec.parse_response(operation, body)) == result
