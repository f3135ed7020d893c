"""Key pairs through boto3 against a real CLC."""

from __future__ import annotations

import base64
import hashlib
import subprocess
from pathlib import Path

import botocore.exceptions
import pytest
from cryptography.hazmat.primitives import serialization

from tests.clc.conftest import ClcFixture


def code(err: pytest.ExceptionInfo[botocore.exceptions.ClientError]) -> str:
    return str(err.value.response["Error"]["Code"])


def test_create_returns_private_key_matching_fingerprint(clc: ClcFixture) -> None:
    ec2 = clc.client(clc.alice)
    made = ec2.create_key_pair(KeyName="k1")
    key = serialization.load_pem_private_key(made["KeyMaterial"].encode(), None)
    pkcs8 = key.private_bytes(
        serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    digest = hashlib.sha1(pkcs8).hexdigest()
    assert made["KeyFingerprint"] == ":".join(digest[i : i + 2] for i in range(0, 40, 2))
    described = ec2.describe_key_pairs(KeyNames=["k1"], IncludePublicKey=True)["KeyPairs"]
    assert described[0]["KeyPairId"] == made["KeyPairId"]
    pub = (
        key.public_key()
        .public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
        .decode()
    )
    assert described[0]["PublicKey"] == pub
    with pytest.raises(botocore.exceptions.ClientError) as err:
        ec2.create_key_pair(KeyName="k1")
    assert code(err) == "InvalidKeyPair.Duplicate"


def test_import_openssh_key_has_ec2_md5_fingerprint(clc: ClcFixture, tmp_path: Path) -> None:
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "rsa", "-b", "2048", "-N", "", "-f", str(tmp_path / "id")],
        check=True,
    )
    pub = (tmp_path / "id.pub").read_bytes()
    ec2 = clc.client(clc.alice)
    got = ec2.import_key_pair(KeyName="imported", PublicKeyMaterial=pub)
    # EC2's fingerprint of an imported RSA key: MD5 of the DER public key.
    der = serialization.load_ssh_public_key(pub).public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    md5 = hashlib.md5(der).hexdigest()
    assert got["KeyFingerprint"] == ":".join(md5[i : i + 2] for i in range(0, 32, 2))
    for bad in (b"ssh-rsa not-base64!!", b"garbage", b"", DSA_PUBLIC_KEY):
        with pytest.raises(botocore.exceptions.ClientError) as err:
            ec2.import_key_pair(KeyName="bad", PublicKeyMaterial=bad)
        assert code(err) == "InvalidKeyPair.Format", bad
        assert err.value.response["Error"]["Message"] == (
            "Key is not in valid OpenSSH public key format"
        )
    assert "bad" not in [k["KeyName"] for k in ec2.describe_key_pairs()["KeyPairs"]]


# EC2 imports RSA and ED25519 keys only.
DSA_PUBLIC_KEY = (
    b"ssh-dss AAAAB3NzaC1kc3MAAACBAJ0aXctVwbN6VB81gpo8R7DUk8zXRjZvrkg8Y8vEGt63gklpNJNsLXtEUXkl"
    b"5D4c0nD2FZO1rJNqFoeOQOCoGSfclHvt9w4yPl/lUEtb3Qtj1j80MInETHr19vaSunRk5R+M+8YH+LLcdYdz7Mij"
    b"uGey02mbi0H9K5nUIcuLMArVAAAAFQD0RDvsObRWBlnaW8645obZBM86jwAAAIBNZwf3B4krIzAwVfkMHLDSdAvs"
    b"7lOWE7o8SJLzr9t4a9HhYp9SLbMzJ815KWfidEYV2+s4ZaPCfcZ1GENFRbE8rixz5eMAjEUXEPMJkblDZTHzMsH9"
    b"6z2cOCQZ0vfOmgznsf18Uf725pqo9OqAioEsTJjX8jtI2qNPEBU0uhMSZQAAAIBBMGhDu5CWPUlS2QG7vzmzw81X"
    b"asmHE/s2YPDRbolkriwlunpgwZhCscoQP8HFHY+DLUVvUb+GZwBmFt4l1uHl03bffsm7UIHtCBYERr9Nx0u20ldf"
    b"hkgB1lhaJb5o0ZJ3pmJ38KChfyHe5EUcqRdEFo89Mp72VI2Z6UHyL175RA== dsa@example"
)


def test_create_and_import_echo_tags_and_list_in_creation_order(
    clc: ClcFixture, tmp_path: Path
) -> None:
    ec2 = clc.client(clc.bob)
    tags = [{"ResourceType": "key-pair", "Tags": [{"Key": "order", "Value": "z"}]}]
    first = ec2.create_key_pair(KeyName="zz-first", TagSpecifications=tags)
    assert first["Tags"] == [{"Key": "order", "Value": "z"}]
    assert "Tags" not in ec2.create_key_pair(KeyName="plain")
    second = ec2.create_key_pair(KeyName="aa-second", TagSpecifications=tags)
    got = ec2.describe_key_pairs(Filters=[{"Name": "tag-key", "Values": ["order"]}])["KeyPairs"]
    assert [k["KeyPairId"] for k in got] == [first["KeyPairId"], second["KeyPairId"]]
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(tmp_path / "ed")], check=True
    )
    imported = ec2.import_key_pair(
        KeyName="imported-tagged",
        PublicKeyMaterial=(tmp_path / "ed.pub").read_bytes(),
        TagSpecifications=tags,
    )
    assert imported["Tags"] == [{"Key": "order", "Value": "z"}]


def test_ed25519_and_filters_and_tags(clc: ClcFixture) -> None:
    ec2 = clc.client(clc.alice)
    made = ec2.create_key_pair(
        KeyName="edkey",
        KeyType="ed25519",
        TagSpecifications=[{"ResourceType": "key-pair", "Tags": [{"Key": "team", "Value": "x"}]}],
    )
    assert "OPENSSH PRIVATE KEY" in made["KeyMaterial"]
    got = ec2.describe_key_pairs(Filters=[{"Name": "tag:team", "Values": ["x"]}])["KeyPairs"]
    assert [k["KeyName"] for k in got] == ["edkey"]
    assert got[0]["KeyType"] == "ed25519"
    blob = base64.b64decode(
        ec2.describe_key_pairs(KeyNames=["edkey"], IncludePublicKey=True)["KeyPairs"][0][
            "PublicKey"
        ].split()[1]
    )
    assert got[0]["KeyFingerprint"].rstrip("=") == base64.b64encode(
        hashlib.sha256(blob).digest()
    ).decode().rstrip("=")


def test_accounts_see_only_their_own_keys(clc: ClcFixture) -> None:
    clc.client(clc.alice).create_key_pair(KeyName="alice-only")
    bob = clc.client(clc.bob)
    assert "alice-only" not in [k["KeyName"] for k in bob.describe_key_pairs()["KeyPairs"]]
    with pytest.raises(botocore.exceptions.ClientError) as err:
        bob.describe_key_pairs(KeyNames=["alice-only"])
    assert code(err) == "InvalidKeyPair.NotFound"
    # Bob deleting "alice-only" deletes nothing of Alice's.
    bob.delete_key_pair(KeyName="alice-only")
    assert clc.client(clc.alice).describe_key_pairs(KeyNames=["alice-only"])["KeyPairs"]


def test_delete(clc: ClcFixture) -> None:
    ec2 = clc.client(clc.alice)
    ec2.create_key_pair(KeyName="doomed")
    ec2.delete_key_pair(KeyName="doomed")
    with pytest.raises(botocore.exceptions.ClientError):
        ec2.describe_key_pairs(KeyNames=["doomed"])
    ec2.delete_key_pair(KeyName="never-existed")  # succeeds, as in EC2
