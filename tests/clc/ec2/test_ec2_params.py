"""Collecting query parameters from the HTTP request and splitting off the envelope."""

from __future__ import annotations

import pytest

from eucalypt.clc.ec2.errors import InvalidParameterValue, MalformedQueryString, MissingAction
from eucalypt.clc.ec2.params import is_auth_param, query_params_from, split_action


def test_query_and_body_are_merged_in_order_with_blanks() -> None:
    pairs = query_params_from(
        "?Action=DescribeInstances&Version=2016-11-15&Empty=",
        b"InstanceId.1=i-1&Filter.1.Name=tag%3AName&Filter.1.Value.1=a+b%26c&Blank",
    )
    assert pairs == [
        ("Action", "DescribeInstances"),
        ("Version", "2016-11-15"),
        ("Empty", ""),
        ("InstanceId.1", "i-1"),
        ("Filter.1.Name", "tag:Name"),
        ("Filter.1.Value.1", "a b&c"),
        ("Blank", ""),
    ]
    assert query_params_from("", None) == []
    assert query_params_from("A=%C3%A9", b"") == [("A", "é")]


@pytest.mark.parametrize(
    ("query", "body"),
    [("A=%FF", None), ("", b"A=%FF"), ("", b"A=\xff")],
)
def test_undecodable_input_is_malformed(query: str, body: bytes | None) -> None:
    with pytest.raises(MalformedQueryString):
        query_params_from(query, body)


def test_too_many_fields_is_malformed() -> None:
    with pytest.raises(MalformedQueryString):
        query_params_from("&".join(f"P{i}=1" for i in range(11)), None, max_fields=10)
    with pytest.raises(MalformedQueryString):
        query_params_from("A=1&B=2", b"C=3&D=4", max_fields=3)
    assert len(query_params_from("A=1&B=2", b"C=3", max_fields=3)) == 3


def test_split_action_drops_envelope_and_auth() -> None:
    params = [
        ("Action", "RunInstances"),
        ("Version", "2016-11-15"),
        ("AWSAccessKeyId", "AKID"),
        ("SignatureMethod", "HmacSHA256"),
        ("SignatureVersion", "2"),
        ("Signature", "sig"),
        ("Timestamp", "2026-11-30T01:02:03Z"),
        ("Expires", "2026-11-30T01:07:03Z"),
        ("SecurityToken", "tok"),
        ("X-Amz-Algorithm", "AWS4-HMAC-SHA256"),
        ("X-Amz-Credential", "AKID/20261130/eucalypt/ec2/aws4_request"),
        ("X-Amz-Date", "20261130T010203Z"),
        ("X-Amz-SignedHeaders", "host"),
        ("X-Amz-Signature", "abc"),
        ("x-amz-security-token", "tok"),
        ("ImageId", "emi-1"),
        ("MinCount", "1"),
    ]
    assert split_action(params) == (
        "RunInstances",
        "2016-11-15",
        [("ImageId", "emi-1"), ("MinCount", "1")],
    )
    assert split_action({"Action": "DescribeRegions"}) == ("DescribeRegions", None, [])
    assert split_action([("Action", "A"), ("Action", "A")]) == ("A", None, [])


def test_split_action_errors() -> None:
    with pytest.raises(MissingAction) as info:
        split_action([("Version", "2016-11-15")])
    assert info.value.code == "MissingAction"
    assert info.value.message == "The request must contain the parameter Action"
    with pytest.raises(MissingAction):
        split_action([("Action", "")])
    with pytest.raises(InvalidParameterValue):
        split_action([("Action", "A"), ("Action", "B")])


def test_is_auth_param() -> None:
    assert is_auth_param("X-Amz-Date")
    assert is_auth_param("Signature")
    assert not is_auth_param("Filter.1.Name")
    assert not is_auth_param("Xylophone")
