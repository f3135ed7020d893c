"""Zones and the meta-zone `any`: the emptiest cluster first, overflow across clusters."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator

import botocore.exceptions
import pytest

from tests.support.stack import IMAGE_ID, Stack, sim_stack


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    # Two zones of one node each: room for 3 t1.micro per zone.
    with sim_stack(tmp_path_factory.mktemp("zones"), clusters=2, cores=3, memory_mib=3 * 256) as s:
        time.sleep(1.0)  # first polls
        yield s


def zones_of(stack: Stack, ids: list[str]) -> Counter[str]:
    res = stack.ec2().describe_instances(InstanceIds=ids)["Reservations"]
    return Counter(i["Placement"]["AvailabilityZone"] for r in res for i in r["Instances"])


def test_zones_listed_and_explicit_zone(stack: Stack) -> None:
    ec2 = stack.ec2()
    names = [z["ZoneName"] for z in ec2.describe_availability_zones()["AvailabilityZones"]]
    assert names == ["zone-1", "zone-2"]
    ids = [
        i["InstanceId"]
        for i in ec2.run_instances(
            ImageId=IMAGE_ID,
            MinCount=1,
            MaxCount=1,
            InstanceType="t1.micro",
            Placement={"AvailabilityZone": "zone-2"},
        )["Instances"]
    ]
    assert zones_of(stack, ids) == {"zone-2": 1}
    ec2.terminate_instances(InstanceIds=ids)
    time.sleep(1.5)


def test_any_fills_the_emptiest_and_overflows(stack: Stack) -> None:
    ec2 = stack.ec2()
    first = [
        i["InstanceId"]
        for i in ec2.run_instances(
            ImageId=IMAGE_ID,
            MinCount=1,
            MaxCount=1,
            InstanceType="t1.micro",
            Placement={"AvailabilityZone": "zone-1"},
        )["Instances"]
    ]
    time.sleep(1.0)
    # zone-1 has 2 free, zone-2 has 3: `any` puts 3 in zone-2 and overflows 2 into zone-1.
    ids = [
        i["InstanceId"]
        for i in ec2.run_instances(
            ImageId=IMAGE_ID,
            MinCount=5,
            MaxCount=5,
            InstanceType="t1.micro",
            Placement={"AvailabilityZone": "any"},
        )["Instances"]
    ]
    assert zones_of(stack, ids) == {"zone-2": 3, "zone-1": 2}
    # Both zones are full now: one more is refused even with `any`.
    with pytest.raises(botocore.exceptions.ClientError) as err:
        ec2.run_instances(
            ImageId=IMAGE_ID,
            MinCount=1,
            MaxCount=1,
            InstanceType="t1.micro",
            Placement={"AvailabilityZone": "any"},
        )
    assert err.value.response["Error"]["Code"] == "InsufficientInstanceCapacity"
    ec2.terminate_instances(InstanceIds=first + ids)
