"""The instance metadata service as an instance sees it (through a CC- or NC-signed proxy)."""

from __future__ import annotations

import base64
import json

import httpx
import pytest

from eucalypt.auth import HttpxSigV4Auth
from eucalypt.clc.app import open_database
from eucalypt.clc.models import Instance
from eucalypt.rpc import ComponentKeys
from tests.clc.conftest import ClcFixture

USER_DATA = b"#!/bin/sh\necho hello\n"


@pytest.fixture(scope="module")
def instance(clc: ClcFixture) -> str:
    ec2 = clc.client(clc.alice)
    key = ec2.create_key_pair(KeyName="md-key")
    pub = ec2.describe_key_pairs(KeyNames=["md-key"], IncludePublicKey=True)["KeyPairs"][0]
    gid = ec2.describe_security_groups(GroupNames=["default"])["SecurityGroups"][0]["GroupId"]
    db = open_database(clc.config)
    try:
        db.run_sync(
            lambda s: s.add(
                Instance(
                    id="i-0123456789abcdef0",
                    reservation_id="r-0123456789abcdef0",
                    account_id=clc.alice.account_id,
                    image_id="emi-0123456789abcdef0",
                    instance_type="m1.small",
                    zone="zone-1",
                    state="running",
                    key_name="md-key",
                    public_key=pub["PublicKey"],
                    user_data=base64.b64encode(USER_DATA).decode(),
                    group_ids=gid,
                    mac="d0:0d:01:02:03:04",
                    private_ip="10.1.0.5",
                )
            )
        )
    finally:
        db.dispose()
    assert key["KeyName"] == "md-key"
    return "i-0123456789abcdef0"


def as_instance(clc: ClcFixture, instance_id: str, component: str = "cc") -> httpx.Client:
    cred = ComponentKeys.load(clc.config.keys_dir).credential(component)
    return httpx.Client(
        base_url=clc.url,
        auth=HttpxSigV4Auth(cred, region=clc.config.region, service="eucalypt"),
        headers={"x-eucalypt-instance-id": instance_id},
    )


def test_meta_data_tree(clc: ClcFixture, instance: str) -> None:
    with as_instance(clc, instance) as http:
        listing = http.get("/latest/meta-data/").text.splitlines()
        assert {"ami-id", "instance-id", "local-ipv4", "public-keys/", "placement/"} <= set(listing)
        assert http.get("/latest/meta-data/instance-id").text == instance
        assert http.get("/latest/meta-data/local-ipv4").text == "10.1.0.5"
        assert http.get("/latest/meta-data/placement/availability-zone").text == "zone-1"
        assert http.get("/latest/meta-data/public-keys/").text == "0=md-key"
        key = http.get("/latest/meta-data/public-keys/0/openssh-key").text
        assert key.startswith("ssh-rsa ")
        macs = http.get("/latest/meta-data/network/interfaces/macs/").text
        assert macs == "d0:0d:01:02:03:04/"
        assert http.get("/latest/meta-data/security-groups").text == "default"
        assert http.get("/latest/meta-data/no-such-thing").status_code == 404


def test_user_data_and_identity_document(clc: ClcFixture, instance: str) -> None:
    with as_instance(clc, instance) as http:
        assert http.get("/latest/user-data").content == USER_DATA
        doc = json.loads(http.get("/latest/dynamic/instance-identity/document").text)
        assert doc["instanceId"] == instance
        assert doc["accountId"] == clc.alice.account_id
        assert doc["region"] == clc.config.region


def test_imdsv2_tokens(clc: ClcFixture, instance: str) -> None:
    with as_instance(clc, instance) as http:
        token = http.put(
            "/latest/api/token", headers={"x-aws-ec2-metadata-token-ttl-seconds": "60"}
        ).text
        ok = http.get("/latest/meta-data/instance-id", headers={"x-aws-ec2-metadata-token": token})
        assert ok.status_code == 200 and ok.text == instance
        bad = http.get("/latest/meta-data/instance-id", headers={"x-aws-ec2-metadata-token": "x"})
        assert bad.status_code == 401
        assert http.put("/latest/api/token").status_code == 400
        forwarded = http.put(
            "/latest/api/token",
            headers={"x-aws-ec2-metadata-token-ttl-seconds": "60", "x-forwarded-for": "1.2.3.4"},
        )
        assert forwarded.status_code == 403
    # A token of one instance is no good for another.
    with as_instance(clc, "i-00000000000000000") as other:
        stolen = other.get(
            "/latest/meta-data/instance-id", headers={"x-aws-ec2-metadata-token": token}
        )
        assert stolen.status_code in (401, 404)


def test_the_nodes_proxy_may_ask_too(clc: ClcFixture, instance: str) -> None:
    """SYSTEM/STATIC modes: the NC's proxy signs with the NC's key (eucalypt.nc.metadata)."""
    with as_instance(clc, instance, component="nc") as http:
        assert http.get("/latest/meta-data/instance-id").text == instance
        assert http.get("/latest/meta-data/local-ipv4").text == "10.1.0.5"


def test_only_the_cc_or_nc_may_ask(clc: ClcFixture, instance: str) -> None:
    assert (
        httpx.get(
            f"{clc.url}/latest/meta-data/instance-id", headers={"x-eucalypt-instance-id": instance}
        ).status_code
        == 403
    )
    for other in ("walrus", "clc"):
        with as_instance(clc, instance, component=other) as http:
            assert http.get("/latest/meta-data/instance-id").status_code == 403
    # The instance header must be signed: a header added after signing is refused.
    cred = ComponentKeys.load(clc.config.keys_dir).credential("cc")
    with httpx.Client(
        base_url=clc.url, auth=HttpxSigV4Auth(cred, region=clc.config.region, service="eucalypt")
    ) as http:
        req = http.build_request("GET", "/latest/meta-data/instance-id")
        signed = next(http.auth.auth_flow(req))  # type: ignore[union-attr]
        signed.headers["x-eucalypt-instance-id"] = instance
        assert http.send(signed, auth=None).status_code == 403


def test_imdsv2_tokens_whatever_bytes_their_mac_holds(clc: ClcFixture, instance: str) -> None:
    """A token is payload ":" 32-byte HMAC; a MAC that holds a ":" byte (about one token
    in eight) must verify like any other."""
    with as_instance(clc, instance) as http:
        for ttl in range(60, 124):  # distinct expiries: distinct MACs
            token = http.put(
                "/latest/api/token", headers={"x-aws-ec2-metadata-token-ttl-seconds": str(ttl)}
            ).text
            got = http.get(
                "/latest/meta-data/instance-id", headers={"x-aws-ec2-metadata-token": token}
            )
            assert got.status_code == 200, token
