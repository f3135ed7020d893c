"""Malformed EC2 requests are rejected with EC2's error codes, naming the parameter."""

from __future__ import annotations

import pytest

from eucalypt.clc.ec2 import Ec2Protocol
from eucalypt.clc.ec2.errors import (
    Ec2Error,
    InvalidAction,
    InvalidParameterValue,
    MissingParameter,
    UnknownParameter,
)

RUN = [("MinCount", "1"), ("MaxCount", "1")]


def raises(protocol: Ec2Protocol, action: str, params: list[tuple[str, str]]) -> Ec2Error:
    with pytest.raises(Ec2Error) as info:
        protocol.parse_request(action, params)
    return info.value


@pytest.mark.parametrize(
    ("params", "missing"),
    [
        ([("MinCount", "1")], "MaxCount"),
        ([("MaxCount", "1")], "MinCount"),
        ([], "MaxCount"),
    ],
)
def test_missing_required_parameter(
    protocol: Ec2Protocol, params: list[tuple[str, str]], missing: str
) -> None:
    error = raises(protocol, "RunInstances", params)
    assert isinstance(error, MissingParameter)
    assert error.code == "MissingParameter"
    assert error.status == 400
    assert error.message == f"The request must contain the parameter {missing}"


def test_missing_required_parameter_is_named_by_wire_name(protocol: Ec2Protocol) -> None:
    error = raises(protocol, "ImportKeyPair", [("KeyName", "k")])
    assert error.message == "The request must contain the parameter PublicKeyMaterial"
    error = raises(protocol, "CreateTags", [("ResourceId.1", "i-1")])
    assert error.message == "The request must contain the parameter Tag"


@pytest.mark.parametrize(
    ("action", "params", "name"),
    [
        ("RunInstances", [*RUN[:1], ("MaxCount", "many")], "MaxCount"),
        ("RunInstances", [*RUN[:1], ("MaxCount", "1.5")], "MaxCount"),
        ("RunInstances", [*RUN[:1], ("MaxCount", "1_000")], "MaxCount"),
        ("RunInstances", [*RUN[:1], ("MaxCount", " 1")], "MaxCount"),
        ("RunInstances", [*RUN[:1], ("MaxCount", "")], "MaxCount"),
        ("RunInstances", [*RUN[:1], ("MaxCount", str(2**31))], "MaxCount"),
        ("DescribeInstances", [("MaxResults", "ten")], "MaxResults"),
        ("DescribeInstances", [("DryRun", "yes")], "DryRun"),
        ("RunInstances", [*RUN, ("Monitoring.Enabled", "1")], "Monitoring.Enabled"),
        (
            "ImportKeyPair",
            [("KeyName", "k"), ("PublicKeyMaterial", "not base64!")],
            "PublicKeyMaterial",
        ),
        ("DescribeSpotPriceHistory", [("StartTime", "yesterday")], "StartTime"),
        ("DescribeInstances", [("InstanceId", "i-1")], "InstanceId"),
        ("RunInstances", [*RUN, ("Placement", "zone-a")], "Placement"),
        ("DescribeInstances", [("InstanceId.1", "a"), ("InstanceId.01", "b")], "InstanceId.01"),
        ("DescribeInstances", [("MaxResults", "5"), ("MaxResults", "6")], "MaxResults"),
    ],
)
def test_bad_values(
    protocol: Ec2Protocol, action: str, params: list[tuple[str, str]], name: str
) -> None:
    error = raises(protocol, action, params)
    assert isinstance(error, InvalidParameterValue)
    assert error.code == "InvalidParameterValue"
    assert name in error.message


@pytest.mark.parametrize(
    ("action", "params", "name"),
    [
        ("DescribeInstances", [("Bogus", "1")], "Bogus"),
        ("DescribeInstances", [("instanceId.1", "i-1")], "instanceId.1"),
        (
            "DescribeInstances",
            [("Filter.1.Name", "a"), ("Filter.1.Valu.1", "b")],
            "Filter.1.Valu.1",
        ),
        ("DescribeInstances", [("InstanceId.x", "i-1")], "InstanceId.x"),
        ("DescribeInstances", [("InstanceId.x.y", "i-1")], "InstanceId.x.y"),
        ("DescribeInstances", [("InstanceId.1.Extra", "i-1")], "InstanceId.1.Extra"),
        ("DescribeInstances", [("MaxResults.1", "5")], "MaxResults.1"),
        ("DescribeInstances", [("MaxResults", "5"), ("MaxResults.1.a", "5")], "MaxResults.1.a"),
        ("DescribeInstances", [("Filter..Name", "a")], "Filter..Name"),
        ("RunInstances", [*RUN, ("Placement.Zone", "z")], "Placement.Zone"),
        ("DescribeAccountAttributes", [("AttributeName.1", "x"), ("Nope", "y")], "Nope"),
    ],
)
def test_unknown_parameters(
    protocol: Ec2Protocol, action: str, params: list[tuple[str, str]], name: str
) -> None:
    error = raises(protocol, action, params)
    assert isinstance(error, UnknownParameter)
    assert error.code == "UnknownParameter"
    assert error.message == f"The parameter {name} is not recognized"


def test_unknown_action(protocol: Ec2Protocol) -> None:
    assert protocol.has_operation("DescribeInstances")
    assert not protocol.has_operation("describeinstances")
    assert not protocol.has_operation("DescribeUnicorns")
    error = raises(protocol, "DescribeUnicorns", [])
    assert isinstance(error, InvalidAction)
    assert "DescribeUnicorns" in error.message


def test_dry_run_and_only_present_members(protocol: Ec2Protocol) -> None:
    assert protocol.parse_request("DescribeInstances", {}) == {}
    assert protocol.parse_request("DescribeInstances", {"DryRun": "TRUE"}) == {"DryRun": True}
    assert protocol.parse_request("DescribeRegions", {"AllRegions": "false"}) == {
        "AllRegions": False
    }
