"""Security groups through boto3 against a real CLC."""

from __future__ import annotations

import botocore.exceptions
import pytest

from tests.clc.conftest import ClcFixture


def code(err: pytest.ExceptionInfo[botocore.exceptions.ClientError]) -> str:
    return str(err.value.response["Error"]["Code"])


def test_default_group_exists_and_cannot_be_deleted(clc: ClcFixture) -> None:
    ec2 = clc.client(clc.bob)
    groups = ec2.describe_security_groups(GroupNames=["default"])["SecurityGroups"]
    assert len(groups) == 1
    perms = groups[0]["IpPermissions"]
    assert perms[0]["IpProtocol"] == "-1"
    assert perms[0]["UserIdGroupPairs"][0]["GroupId"] == groups[0]["GroupId"]
    with pytest.raises(botocore.exceptions.ClientError) as err:
        ec2.delete_security_group(GroupName="default")
    assert code(err) == "CannotDelete"


def test_create_authorize_revoke_delete(clc: ClcFixture) -> None:
    ec2 = clc.client(clc.alice)
    gid = ec2.create_security_group(GroupName="web", Description="web servers")["GroupId"]
    assert gid.startswith("sg-")
    ec2.authorize_security_group_ingress(
        GroupId=gid,
        IpPermissions=[
            {
                "IpProtocol": "tcp",
                "FromPort": 22,
                "ToPort": 22,
                "IpRanges": [{"CidrIp": "10.0.0.0/8"}, {"CidrIp": "192.168.1.7/32"}],
            },
            {
                "IpProtocol": "icmp",
                "FromPort": -1,
                "ToPort": -1,
                "UserIdGroupPairs": [{"GroupName": "default"}],
            },
        ],
    )
    # The legacy flat form (euca2ools, old boto) works too.
    ec2.authorize_security_group_ingress(
        GroupName="web", IpProtocol="tcp", FromPort=80, ToPort=80, CidrIp="0.0.0.0/0"
    )
    group = ec2.describe_security_groups(GroupIds=[gid])["SecurityGroups"][0]
    by_port = {(p["IpProtocol"], p.get("FromPort")): p for p in group["IpPermissions"]}
    assert sorted(r["CidrIp"] for r in by_port[("tcp", 22)]["IpRanges"]) == [
        "10.0.0.0/8",
        "192.168.1.7/32",
    ]
    assert by_port[("tcp", 80)]["IpRanges"] == [{"CidrIp": "0.0.0.0/0"}]
    assert by_port[("icmp", -1)]["UserIdGroupPairs"][0]["GroupName"] == "default"

    with pytest.raises(botocore.exceptions.ClientError) as err:
        ec2.authorize_security_group_ingress(
            GroupId=gid, IpProtocol="tcp", FromPort=80, ToPort=80, CidrIp="0.0.0.0/0"
        )
    assert code(err) == "InvalidPermission.Duplicate"

    ec2.revoke_security_group_ingress(
        GroupId=gid, IpProtocol="tcp", FromPort=80, ToPort=80, CidrIp="0.0.0.0/0"
    )
    group = ec2.describe_security_groups(GroupIds=[gid])["SecurityGroups"][0]
    assert ("tcp", 80) not in {(p["IpProtocol"], p.get("FromPort")) for p in group["IpPermissions"]}
    with pytest.raises(botocore.exceptions.ClientError) as err:
        ec2.revoke_security_group_ingress(
            GroupId=gid, IpProtocol="tcp", FromPort=80, ToPort=80, CidrIp="0.0.0.0/0"
        )
    assert code(err) == "InvalidPermission.NotFound"

    filtered = ec2.describe_security_groups(
        Filters=[{"Name": "ip-permission.from-port", "Values": ["22"]}]
    )["SecurityGroups"]
    assert [g["GroupId"] for g in filtered] == [gid]

    ec2.delete_security_group(GroupId=gid)
    with pytest.raises(botocore.exceptions.ClientError) as err:
        ec2.describe_security_groups(GroupIds=[gid])
    assert code(err) == "InvalidGroup.NotFound"


def test_bad_rules_are_refused_and_nothing_is_stored(clc: ClcFixture) -> None:
    ec2 = clc.client(clc.alice)
    gid = ec2.create_security_group(GroupName="strict", Description="x")["GroupId"]
    for perm, expected in (
        (
            {
                "IpProtocol": "gre",
                "FromPort": 1,
                "ToPort": 1,
                "IpRanges": [{"CidrIp": "1.2.3.4/32"}],
            },
            "InvalidParameterValue",
        ),
        (
            {
                "IpProtocol": "tcp",
                "FromPort": 90,
                "ToPort": 80,
                "IpRanges": [{"CidrIp": "1.2.3.4/32"}],
            },
            "InvalidParameterValue",
        ),
        (
            {
                "IpProtocol": "tcp",
                "FromPort": 80,
                "ToPort": 80,
                "IpRanges": [{"CidrIp": "300.1.1.1/8"}],
            },
            "InvalidParameterValue",
        ),
    ):
        with pytest.raises(botocore.exceptions.ClientError) as err:
            ec2.authorize_security_group_ingress(
                GroupId=gid,
                IpPermissions=[
                    {
                        "IpProtocol": "tcp",
                        "FromPort": 443,
                        "ToPort": 443,
                        "IpRanges": [{"CidrIp": "10.0.0.0/8"}],
                    },
                    perm,
                ],
            )
        assert code(err) == expected
    # The good permission in the same failed request was not stored either.
    group = ec2.describe_security_groups(GroupIds=[gid])["SecurityGroups"][0]
    assert group["IpPermissions"] == []


def test_duplicate_and_isolation_between_accounts(clc: ClcFixture) -> None:
    alice, bob = clc.client(clc.alice), clc.client(clc.bob)
    gid = alice.create_security_group(GroupName="private", Description="x")["GroupId"]
    with pytest.raises(botocore.exceptions.ClientError) as err:
        alice.create_security_group(GroupName="private", Description="x")
    assert code(err) == "InvalidGroup.Duplicate"
    bob.create_security_group(GroupName="private", Description="same name, other account")
    with pytest.raises(botocore.exceptions.ClientError) as err:
        bob.delete_security_group(GroupId=gid)
    assert code(err) == "InvalidGroup.NotFound"
    # The admin sees every account's groups.
    admin_ids = {
        g["GroupId"] for g in clc.client(clc.admin).describe_security_groups()["SecurityGroups"]
    }
    assert gid in admin_ids


def test_group_referenced_by_another_cannot_be_deleted(clc: ClcFixture) -> None:
    ec2 = clc.client(clc.alice)
    src = ec2.create_security_group(GroupName="src", Description="x")["GroupId"]
    dst = ec2.create_security_group(GroupName="dst", Description="x")["GroupId"]
    ec2.authorize_security_group_ingress(
        GroupId=dst,
        IpPermissions=[
            {
                "IpProtocol": "tcp",
                "FromPort": 5432,
                "ToPort": 5432,
                "UserIdGroupPairs": [{"GroupId": src}],
            }
        ],
    )
    with pytest.raises(botocore.exceptions.ClientError) as err:
        ec2.delete_security_group(GroupId=src)
    assert code(err) == "InvalidGroup.InUse"


def test_tags_on_groups(clc: ClcFixture) -> None:
    ec2 = clc.client(clc.alice)
    gid = ec2.create_security_group(GroupName="tagged", Description="x")["GroupId"]
    ec2.create_tags(
        Resources=[gid], Tags=[{"Key": "env", "Value": "prod"}, {"Key": "x", "Value": ""}]
    )
    got = ec2.describe_tags(Filters=[{"Name": "resource-id", "Values": [gid]}])["Tags"]
    assert {(t["Key"], t["Value"]) for t in got} == {("env", "prod"), ("x", "")}
    assert got[0]["ResourceType"] == "security-group"
    assert [
        g["GroupId"]
        for g in ec2.describe_security_groups(Filters=[{"Name": "tag:env", "Values": ["prod"]}])[
            "SecurityGroups"
        ]
    ] == [gid]
    ec2.delete_tags(Resources=[gid], Tags=[{"Key": "env", "Value": "staging"}])  # value mismatch
    assert len(ec2.describe_tags(Filters=[{"Name": "resource-id", "Values": [gid]}])["Tags"]) == 2
    ec2.delete_tags(Resources=[gid], Tags=[{"Key": "env"}])
    assert len(ec2.describe_tags(Filters=[{"Name": "resource-id", "Values": [gid]}])["Tags"]) == 1
    with pytest.raises(botocore.exceptions.ClientError) as err:
        clc.client(clc.bob).create_tags(Resources=[gid], Tags=[{"Key": "k", "Value": "v"}])
    assert code(err) == "InvalidGroup.NotFound"


def test_describe_instance_types(clc: ClcFixture) -> None:
    ec2 = clc.client(clc.alice)
    types = ec2.describe_instance_types(InstanceTypes=["m1.small"])["InstanceTypes"]
    assert types[0]["VCpuInfo"]["DefaultVCpus"] == 1
    assert types[0]["MemoryInfo"]["SizeInMiB"] == 512
    all_types = ec2.describe_instance_types()["InstanceTypes"]
    assert {t["InstanceType"] for t in all_types} == {v.name for v in clc.config.vm_types}
    with pytest.raises(botocore.exceptions.ClientError) as err:
        ec2.describe_instance_types(InstanceTypes=["z9.enormous"])
    assert code(err) == "InvalidInstanceType"


def test_ec2_validation_of_groups_and_rules(clc: ClcFixture) -> None:
    """What peer EC2 suites check: codes for bad input, nothing stored after a failure."""
    ec2 = clc.client(clc.bob)
    with pytest.raises(botocore.exceptions.ClientError) as err:
        ec2.create_security_group(GroupName="no-desc", Description="")
    assert code(err) == "MissingParameter"
    names = [g["GroupName"] for g in ec2.describe_security_groups()["SecurityGroups"]]
    assert "no-desc" not in names
    gid = ec2.create_security_group(GroupName="checked", Description="d")["GroupId"]
    for cidr in ("123.123.123.123", "banana", "300.1.1.1/32"):
        with pytest.raises(botocore.exceptions.ClientError) as err:
            ec2.authorize_security_group_ingress(
                GroupId=gid, IpProtocol="tcp", FromPort=80, ToPort=80, CidrIp=cidr
            )
        assert code(err) == "InvalidParameterValue", cidr
    assert ec2.describe_security_groups(GroupIds=[gid])["SecurityGroups"][0]["IpPermissions"] == []
    with pytest.raises(botocore.exceptions.ClientError) as err:
        ec2.describe_security_groups(GroupIds=[gid], MaxResults=5)
    assert code(err) == "InvalidParameterCombination"


def test_rule_descriptions_are_kept_and_do_not_change_rule_identity(clc: ClcFixture) -> None:
    ec2 = clc.client(clc.bob)
    gid = ec2.create_security_group(GroupName="described", Description="d")["GroupId"]
    src = ec2.create_security_group(GroupName="described-src", Description="d")["GroupId"]
    out = ec2.authorize_security_group_ingress(
        GroupId=gid,
        IpPermissions=[
            {
                "IpProtocol": "tcp",
                "FromPort": 27017,
                "ToPort": 27018,
                "IpRanges": [
                    {"CidrIp": "1.2.3.4/32", "Description": "austin"},
                    {"CidrIp": "2.3.4.5/32"},
                ],
                "UserIdGroupPairs": [{"GroupId": src, "Description": "peers"}],
            }
        ],
    )
    assert [r["Description"] for r in out["SecurityGroupRules"]] == ["austin", "", "peers"]
    perm = ec2.describe_security_groups(GroupIds=[gid])["SecurityGroups"][0]["IpPermissions"][0]
    assert perm["IpRanges"] == [
        {"CidrIp": "1.2.3.4/32", "Description": "austin"},
        {"CidrIp": "2.3.4.5/32"},
    ]
    assert perm["UserIdGroupPairs"][0]["Description"] == "peers"
    # Revoking names the rule without its description.
    ec2.revoke_security_group_ingress(
        GroupId=gid,
        IpPermissions=[
            {
                "IpProtocol": "tcp",
                "FromPort": 27017,
                "ToPort": 27018,
                "IpRanges": [{"CidrIp": "1.2.3.4/32"}, {"CidrIp": "2.3.4.5/32"}],
                "UserIdGroupPairs": [{"GroupId": src}],
            }
        ],
    )
    assert ec2.describe_security_groups(GroupIds=[gid])["SecurityGroups"][0]["IpPermissions"] == []
