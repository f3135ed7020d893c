"""Shared fixtures for the EC2 wire-protocol tests: the protocol, botocore's own codec."""

from __future__ import annotations

import pytest
from ec2_botocore_codec import BotocoreCodec

from eucalypt.clc.ec2 import Ec2Protocol


@pytest.fixture(scope="session")
def protocol() -> Ec2Protocol:
    """One protocol object for the whole session, as an app would hold it."""
    return Ec2Protocol()


@pytest.fixture(scope="session")
def botocore_codec(protocol: Ec2Protocol) -> BotocoreCodec:
    """botocore's codec with client-side parameter validation on (params must be valid)."""
    return BotocoreCodec(protocol, validate=True)


@pytest.fixture(scope="session")
def lax_botocore_codec(protocol: Ec2Protocol) -> BotocoreCodec:
    """botocore's codec without parameter validation (for generated, out-of-range values)."""
    return BotocoreCodec(protocol, validate=False)
