"""EC2 error classes and the error document, read back by botocore's EC2 parser."""

from __future__ import annotations

from typing import Any

import pytest

from eucalypt.clc.ec2 import errors
from eucalypt.clc.ec2.errors import Ec2Error, render_error


@pytest.mark.parametrize(
    ("error", "code", "status", "message"),
    [
        (errors.InvalidAction("x"), "InvalidAction", 400, "x"),
        (
            errors.MissingAction(),
            "MissingAction",
            400,
            "The request must contain the parameter Action",
        ),
        (errors.MissingParameter("m"), "MissingParameter", 400, "m"),
        (errors.InvalidParameterValue("v"), "InvalidParameterValue", 400, "v"),
        (errors.InvalidParameterCombination("c"), "InvalidParameterCombination", 400, "c"),
        (errors.UnknownParameter("u"), "UnknownParameter", 400, "u"),
        (errors.AuthFailure("a"), "AuthFailure", 401, "a"),
        (errors.InvalidClientTokenId("t"), "InvalidClientTokenId", 403, "t"),
        (errors.SignatureDoesNotMatch(), "SignatureDoesNotMatch", 403, None),
        (errors.RequestExpired("e"), "RequestExpired", 400, "e"),
        (errors.UnauthorizedOperation(), "UnauthorizedOperation", 403, None),
        (
            errors.DryRunOperation(),
            "DryRunOperation",
            412,
            "Request would have succeeded, but DryRun flag is set.",
        ),
        (errors.InvalidRequest("r"), "InvalidRequest", 400, "r"),
        (errors.InsufficientInstanceCapacity("i"), "InsufficientInstanceCapacity", 500, "i"),
        (errors.ServiceUnavailable("s"), "ServiceUnavailable", 503, "s"),
        (errors.InternalError(), "InternalError", 500, None),
        (errors.IncorrectState("s"), "IncorrectState", 400, "s"),
        (
            errors.not_found("InvalidInstanceID.NotFound", "The instance ID 'i-1' does not exist"),
            "InvalidInstanceID.NotFound",
            400,
            "The instance ID 'i-1' does not exist",
        ),
        (
            errors.duplicate("InvalidKeyPair.Duplicate", "The keypair 'k' already exists."),
            "InvalidKeyPair.Duplicate",
            400,
            "The keypair 'k' already exists.",
        ),
        (Ec2Error("boom", code="Custom.Code", status=409), "Custom.Code", 409, "boom"),
        (errors.InvalidRequest("r", status=418), "InvalidRequest", 418, "r"),
    ],
)
def test_error_codes_and_statuses(
    error: Ec2Error, code: str, status: int, message: str | None
) -> None:
    assert isinstance(error, Ec2Error)
    assert (error.code, error.status) == (code, status)
    if message is not None:
        assert error.message == message
    assert error.message
    assert code in str(error)


def test_instance_overrides_do_not_leak_into_the_class() -> None:
    errors.InvalidRequest("r", code="Other", status=499)
    assert (errors.InvalidRequest.code, errors.InvalidRequest.status) == ("InvalidRequest", 400)
    assert errors.InvalidRequest().message == "InvalidRequest"


def test_factories_give_catchable_families() -> None:
    with pytest.raises(errors.ResourceNotFound):
        raise errors.not_found("InvalidGroup.NotFound", "no such group")
    with pytest.raises(errors.ResourceDuplicate):
        raise errors.duplicate("InvalidGroup.Duplicate", "group exists")


def test_render_error_exact_document() -> None:
    body = render_error(errors.MissingParameter("need <X> & Y"), "req-1")
    assert body == (
        b'<?xml version="1.0" encoding="UTF-8"?>\n<Response><Errors><Error>'
        b"<Code>MissingParameter</Code><Message>need &lt;X&gt; &amp; Y</Message>"
        b"</Error></Errors><RequestID>req-1</RequestID></Response>"
    )


@pytest.mark.parametrize(
    "error",
    [
        errors.not_found("InvalidInstanceID.NotFound", "The instance ID 'i-1' does not exist"),
        errors.DryRunOperation(),
        errors.AuthFailure("AWS was not able to validate the provided access credentials"),
        errors.InternalError("ünïcode <&> message"),
    ],
)
def test_render_error_parsed_by_botocore(botocore_codec: Any, error: Ec2Error) -> None:
    body = render_error(error, "req-err-7")
    parsed = botocore_codec.parse_response("DescribeInstances", body, status=error.status)
    assert parsed["Error"] == {"Code": error.code, "Message": error.message}
    assert parsed["ResponseMetadata"]["RequestId"] == "req-err-7"
    assert parsed["ResponseMetadata"]["HTTPStatusCode"] == error.status
