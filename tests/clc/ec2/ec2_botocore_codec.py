"""botocore's client-side EC2 codec, the reference our protocol must agree with."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

import botocore.parsers
import botocore.serialize

from eucalypt.clc.ec2 import Ec2Protocol, query_params_from, split_action


class BotocoreCodec:
    """botocore's client-side EC2 codec, used as the reference our protocol must agree with."""

    def __init__(self, protocol: Ec2Protocol, *, validate: bool) -> None:
        self.protocol = protocol
        self.serializer = botocore.serialize.create_serializer("ec2", include_validation=validate)
        self.parser = botocore.parsers.create_parser("ec2")

    def request_pairs(self, operation: str, params: dict[str, Any]) -> list[tuple[str, str]]:
        """What a boto3 client would POST for ``params``, decoded like the CLC decodes it."""
        operation_model = self.protocol.service_model.operation_model(operation)
        request = self.serializer.serialize_to_request(params, operation_model)
        body = urlencode(request["body"]).encode()
        return query_params_from("", body)

    def through_the_wire(self, operation: str, params: dict[str, Any]) -> dict[str, Any]:
        """``params`` serialised by botocore, then split and parsed by our protocol."""
        action, version, op_params = split_action(self.request_pairs(operation, params))
        assert action == operation
        assert version == Ec2Protocol.API_VERSION
        return self.protocol.parse_request(action, op_params)

    def parse_response(self, operation: str, body: bytes, status: int = 200) -> dict[str, Any]:
        """What a boto3 client would return for our response ``body``."""
        shape = self.protocol.service_model.operation_model(operation).output_shape
        response = {"body": body, "headers": {}, "status_code": status}
        return self.parser.parse(response, shape)
