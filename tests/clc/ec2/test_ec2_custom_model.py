"""The codec is model-driven: a small hand-written model exercises what EC2's lacks (maps)."""

from __future__ import annotations

from typing import Any

import botocore.model
import pytest
from ec2_botocore_codec import BotocoreCodec

from eucalypt.clc.ec2 import Ec2Protocol
from eucalypt.clc.ec2.errors import MissingParameter, UnknownParameter

MODEL: dict[str, Any] = {
    "metadata": {
        "apiVersion": "2016-11-15",
        "endpointPrefix": "ec2",
        "protocol": "ec2",
        "serviceId": "EC2",
        "signatureVersion": "v4",
    },
    "operations": {
        "PutThing": {
            "name": "PutThing",
            "http": {"method": "POST", "requestUri": "/"},
            "input": {"shape": "PutThingRequest"},
            "output": {"shape": "PutThingResult"},
        },
        "Ping": {"name": "Ping", "http": {"method": "POST", "requestUri": "/"}},
    },
    "shapes": {
        "PutThingRequest": {
            "type": "structure",
            "required": ["Name"],
            "members": {
                "Name": {"shape": "String", "locationName": "name"},
                "Attributes": {"shape": "AttributeMap", "locationName": "attribute"},
                "Ratio": {"shape": "Double"},
                "Nested": {"shape": "Nested", "queryName": "NestedThing"},
            },
        },
        "Nested": {
            "type": "structure",
            "required": ["Size"],
            "members": {"Size": {"shape": "Long"}, "Child": {"shape": "Nested"}},
        },
        "PutThingResult": {
            "type": "structure",
            "members": {
                "Attributes": {"shape": "AttributeMap", "locationName": "attributeSet"},
                "Ratio": {"shape": "Double", "locationName": "ratio"},
                "Nested": {"shape": "Nested", "locationName": "nested"},
            },
        },
        "AttributeMap": {"type": "map", "key": {"shape": "String"}, "value": {"shape": "Long"}},
        "String": {"type": "string"},
        "Long": {"type": "long"},
        "Double": {"type": "double"},
    },
}


@pytest.fixture(scope="module")
def custom() -> tuple[Ec2Protocol, BotocoreCodec]:
    protocol = Ec2Protocol(botocore.model.ServiceModel(MODEL, service_name="ec2"))
    return protocol, BotocoreCodec(protocol, validate=True)


def test_maps_recursion_and_query_names_in_requests(custom: tuple[Ec2Protocol, Any]) -> None:
    protocol, codec = custom
    params = {
        "Name": "n",
        "Attributes": {"a": 1, "b.c": 2**40},
        "Ratio": 0.5,
        "Nested": {"Size": 1, "Child": {"Size": 2, "Child": {"Size": 3}}},
    }
    pairs = dict(codec.request_pairs("PutThing", params))
    assert pairs["Attribute.entry.2.key"] == "b.c"
    assert pairs["NestedThing.Child.Size"] == "2"
    assert codec.through_the_wire("PutThing", params) == params
    assert protocol.parse_request("PutThing", {"Name": "n", "Ratio": "-Infinity"}) == {
        "Name": "n",
        "Ratio": float("-inf"),
    }


def test_nested_required_member(custom: tuple[Ec2Protocol, Any]) -> None:
    protocol, _ = custom
    with pytest.raises(MissingParameter, match=r"parameter NestedThing\.Child\.Size$"):
        protocol.parse_request("PutThing", {"Name": "n", "NestedThing.Child.Child.Size": "1"})


def test_operation_without_input_takes_no_parameters(custom: tuple[Ec2Protocol, Any]) -> None:
    protocol, _ = custom
    assert protocol.parse_request("Ping", {}) == {}
    with pytest.raises(UnknownParameter, match=r"parameter Foo\.1 is not recognized"):
        protocol.parse_request("Ping", {"Foo.1": "x"})


def test_maps_and_recursion_in_responses(custom: tuple[Ec2Protocol, Any]) -> None:
    protocol, codec = custom
    result = {
        "Attributes": {"a": 1, "<b>": -2},
        "Ratio": float("inf"),
        "Nested": {"Size": 1, "Child": {"Size": 2}},
    }
    body = protocol.serialize_response("PutThing", result, "r")
    assert b"<attributeSet><entry><key>a</key><value>1</value></entry>" in body
    parsed = codec.parse_response("PutThing", body)
    parsed.pop("ResponseMetadata")
    assert parsed == result
