"""RunInstances through the SRS, the CC and sim NCs, driven by boto3."""

from __future__ import annotations

import base64
import time
from concurrent.futures import ThreadPoolExecutor

import botocore.exceptions
import pytest

from tests.support.stack import IMAGE_ID, Stack, sim_stack


def wait_state(stack: Stack, ids: list[str], state: str, timeout: float = 30.0) -> dict[str, str]:
    ec2 = stack.ec2()
    deadline = time.monotonic() + timeout
    states: dict[str, str] = {}
    while time.monotonic() < deadline:
        res = ec2.describe_instances(InstanceIds=ids)["Reservations"]
        states = {i["InstanceId"]: i["State"]["Name"] for r in res for i in r["Instances"]}
        if all(s == state for s in states.values()):
            return states
        time.sleep(0.2)
    raise AssertionError(f"instances not {state} after {timeout}s: {states}")


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    # 25 t1.micro fit: 25 cores, 25 x 256 MiB.
    with sim_stack(tmp_path_factory.mktemp("stack"), cores=25, memory_mib=25 * 256) as s:
        yield s


def test_run_goes_pending_to_running_and_terminate(stack: Stack) -> None:
    ec2 = stack.ec2()
    res = ec2.run_instances(
        ImageId=IMAGE_ID,
        MinCount=2,
        MaxCount=2,
        InstanceType="t1.micro",
        TagSpecifications=[{"ResourceType": "instance", "Tags": [{"Key": "Name", "Value": "web"}]}],
    )
    ids = [i["InstanceId"] for i in res["Instances"]]
    assert res["ReservationId"].startswith("r-") and len(ids) == 2
    assert {i["State"]["Name"] for i in res["Instances"]} == {"pending"}
    assert [i["AmiLaunchIndex"] for i in res["Instances"]] == [0, 1]
    wait_state(stack, ids, "running")
    got = ec2.describe_instances(Filters=[{"Name": "tag:Name", "Values": ["web"]}])
    assert sorted(i["InstanceId"] for r in got["Reservations"] for i in r["Instances"]) == sorted(
        ids
    )
    status = ec2.describe_instance_status(InstanceIds=ids)["InstanceStatuses"]
    assert {s["InstanceState"]["Name"] for s in status} == {"running"}
    out = ec2.terminate_instances(InstanceIds=ids)["TerminatingInstances"]
    assert {o["PreviousState"]["Name"] for o in out} == {"running"}
    wait_state(stack, ids, "terminated")
    # Another account sees none of them.
    assert stack.ec2(stack.admin).describe_instances(InstanceIds=ids)["Reservations"]


def test_admission_never_overcommits(stack: Stack) -> None:
    """40 concurrent RunInstances of 1 against room for 25: exactly 25 run, 15 refused."""
    time.sleep(1.5)  # one CC poll after the earlier test's terminations
    ec2 = stack.ec2()

    def launch(_: int) -> str:
        try:
            r = ec2.run_instances(ImageId=IMAGE_ID, MinCount=1, MaxCount=1, InstanceType="t1.micro")
            return r["Instances"][0]["InstanceId"]
        except botocore.exceptions.ClientError as exc:
            return exc.response["Error"]["Code"]

    with ThreadPoolExecutor(max_workers=40) as pool:
        results = list(pool.map(launch, range(40)))
    started = [r for r in results if r.startswith("i-")]
    refused = [r for r in results if not r.startswith("i-")]
    assert len(started) == 25, results
    assert refused == ["InsufficientInstanceCapacity"] * 15
    wait_state(stack, started, "running")
    # No reservation leaked: the SRS holds nothing in flight, and the zone is full.
    zones = ec2.describe_availability_zones(ZoneNames=["verbose"])["AvailabilityZones"]
    micro = next(z for z in zones if z["ZoneName"] == "|- t1.micro")
    assert micro["State"].split()[0] == "0000"
    ec2.terminate_instances(InstanceIds=started)
    wait_state(stack, started, "terminated")


def test_min_max_count_semantics(stack: Stack) -> None:
    ec2 = stack.ec2()
    time.sleep(1.5)
    # MaxCount beyond room: as many as fit (25), MinCount satisfied.
    res = ec2.run_instances(ImageId=IMAGE_ID, MinCount=3, MaxCount=30, InstanceType="t1.micro")
    ids = [i["InstanceId"] for i in res["Instances"]]
    assert len(ids) == 25
    # MinCount beyond room: nothing starts.
    with pytest.raises(botocore.exceptions.ClientError) as err:
        ec2.run_instances(ImageId=IMAGE_ID, MinCount=1, MaxCount=1, InstanceType="t1.micro")
    assert err.value.response["Error"]["Code"] == "InsufficientInstanceCapacity"
    ec2.terminate_instances(InstanceIds=ids)
    wait_state(stack, ids, "terminated")


def test_bad_requests(stack: Stack) -> None:
    ec2 = stack.ec2()
    for kwargs, code in (
        ({"ImageId": "emi-0123456789abcdef0"}, "InvalidAMIID.NotFound"),
        ({"ImageId": "emi-nope"}, "InvalidAMIID.Malformed"),
        ({"ImageId": IMAGE_ID, "InstanceType": "x9.huge"}, "InvalidInstanceType"),
        ({"ImageId": IMAGE_ID, "KeyName": "no-such-key"}, "InvalidKeyPair.NotFound"),
        ({"ImageId": IMAGE_ID, "SecurityGroups": ["no-such-group"]}, "InvalidGroup.NotFound"),
        (
            {"ImageId": IMAGE_ID, "Placement": {"AvailabilityZone": "mars-1"}},
            "InvalidParameterValue",
        ),
    ):
        with pytest.raises(botocore.exceptions.ClientError) as err:
            ec2.run_instances(MinCount=1, MaxCount=1, **kwargs)
        assert err.value.response["Error"]["Code"] == code, kwargs
    with pytest.raises(botocore.exceptions.ClientError) as err:
        ec2.terminate_instances(InstanceIds=["i-00000000000000bad"])
    assert err.value.response["Error"]["Code"] == "InvalidInstanceID.NotFound"


def test_client_token_is_idempotent(stack: Stack) -> None:
    ec2 = stack.ec2()
    a = ec2.run_instances(ImageId=IMAGE_ID, MinCount=1, MaxCount=1, ClientToken="tok-1")
    b = ec2.run_instances(ImageId=IMAGE_ID, MinCount=1, MaxCount=1, ClientToken="tok-1")
    assert a["ReservationId"] == b["ReservationId"]
    ids = [i["InstanceId"] for i in a["Instances"]]
    ec2.terminate_instances(InstanceIds=ids)
    wait_state(stack, ids, "terminated")


def test_malformed_ids_and_parameter_combinations(stack: Stack) -> None:
    """EC2 tells a badly formed id (Malformed) from one that names nothing (NotFound)."""
    ec2 = stack.ec2()

    def fails(call, *args, **kwargs) -> str:  # type: ignore[no-untyped-def]
        with pytest.raises(botocore.exceptions.ClientError) as err:
            call(*args, **kwargs)
        return str(err.value.response["Error"]["Code"])

    for bad in ("bogus", "i-xyz!", "i-123"):
        assert fails(ec2.describe_instances, InstanceIds=[bad]) == "InvalidInstanceID.Malformed"
        assert fails(ec2.terminate_instances, InstanceIds=[bad]) == "InvalidInstanceID.Malformed"
    assert fails(ec2.describe_instances, InstanceIds=["i-1234abcd"]) == (
        "InvalidInstanceID.NotFound"
    )
    assert fails(ec2.describe_instance_status, InstanceIds=["x"]) == "InvalidInstanceID.Malformed"
    assert fails(ec2.get_console_output, InstanceId="x") == "InvalidInstanceID.Malformed"
    assert fails(ec2.describe_images, ImageIds=["bogus"]) == "InvalidAMIID.Malformed"
    assert fails(ec2.deregister_image, ImageId="bogus") == "InvalidAMIID.Malformed"
    assert fails(ec2.deregister_image, ImageId="emi-0123456789abcdef0") == (
        "InvalidAMIID.NotFound"
    )
    assert fails(ec2.associate_address, PublicIp="203.0.113.1", InstanceId="bogus") == (
        "InvalidInstanceID.Malformed"
    )
    ids = ["i-0123456789abcdef0"]
    assert fails(ec2.describe_instances, InstanceIds=ids, MaxResults=5) == (
        "InvalidParameterCombination"
    )
    assert fails(ec2.describe_instance_status, InstanceIds=ids, MaxResults=5) == (
        "InvalidParameterCombination"
    )


def test_user_data_must_be_base64_and_terminated_instances_do_not_reboot(stack: Stack) -> None:
    ec2 = stack.ec2()
    before = ec2.describe_instances()["Reservations"]
    # boto3 base64-encodes UserData itself; send a raw, undecodable value.
    client = stack.ec2()
    client.meta.events.register(
        "before-parameter-build.ec2.RunInstances",
        lambda params, **_: params.update(UserData="!!! not base64"),
    )
    with pytest.raises(botocore.exceptions.ClientError) as err:
        client.run_instances(ImageId=IMAGE_ID, MinCount=1, MaxCount=1, UserData="x")
    assert err.value.response["Error"]["Code"] == "InvalidParameterValue"
    assert ec2.describe_instances()["Reservations"] == before
    ids = [
        i["InstanceId"]
        for i in ec2.run_instances(ImageId=IMAGE_ID, MinCount=1, MaxCount=1, UserData="hi")[
            "Instances"
        ]
    ]
    attr = ec2.describe_instance_attribute(InstanceId=ids[0], Attribute="userData")
    assert base64.b64decode(attr["UserData"]["Value"]) == b"hi"
    ec2.terminate_instances(InstanceIds=ids)
    wait_state(stack, ids, "terminated")
    with pytest.raises(botocore.exceptions.ClientError) as err:
        ec2.reboot_instances(InstanceIds=ids)
    assert err.value.response["Error"]["Code"] == "IncorrectInstanceState"


def test_more_describe_instances_filters(stack: Stack) -> None:
    ec2 = stack.ec2()
    ids = [
        i["InstanceId"]
        for i in ec2.run_instances(ImageId=IMAGE_ID, MinCount=1, MaxCount=1)["Instances"]
    ]

    def found(name: str, *values: str) -> bool:
        got = ec2.describe_instances(
            InstanceIds=ids, Filters=[{"Name": name, "Values": list(values)}]
        )["Reservations"]
        return bool(got)

    assert found("tenancy", "default") and found("monitoring-state", "disabled")
    assert found("source-dest-check", "true") and found("hypervisor", "xen")
    assert found("virtualization-type", "hvm") and found("launch-time", "20*")
    assert not found("vpc-id", "vpc-*") and not found("subnet-id", "*")
    ec2.terminate_instances(InstanceIds=ids)
    wait_state(stack, ids, "terminated")
    assert found("state-reason-code", "*") and found("reason", "*")


def test_describe_instance_attribute_knows_every_ec2_attribute(stack: Stack) -> None:
    ec2 = stack.ec2()
    ids = [
        i["InstanceId"]
        for i in ec2.run_instances(ImageId=IMAGE_ID, MinCount=1, MaxCount=1)["Instances"]
    ]
    for attribute in [
        "instanceType",
        "kernel",
        "ramdisk",
        "userData",
        "disableApiTermination",
        "disableApiStop",
        "instanceInitiatedShutdownBehavior",
        "rootDeviceName",
        "blockDeviceMapping",
        "productCodes",
        "sourceDestCheck",
        "groupSet",
        "ebsOptimized",
        "sriovNetSupport",
        "enaSupport",
        "enclaveOptions",
    ]:
        got = ec2.describe_instance_attribute(InstanceId=ids[0], Attribute=attribute)
        assert got["InstanceId"] == ids[0], attribute
    for bad in ("abc", "Kernel", "userdata"):
        with pytest.raises(botocore.exceptions.ClientError) as err:
            ec2.describe_instance_attribute(InstanceId=ids[0], Attribute=bad)
        assert err.value.response["Error"]["Code"] == "InvalidParameterValue"
        assert err.value.response["Error"]["Message"] == (
            f"Value ({bad}) for parameter attribute is invalid. Unknown attribute."
        )
    ec2.terminate_instances(InstanceIds=ids)
    wait_state(stack, ids, "terminated")


def test_an_instance_no_node_reports_is_lost_the_others_stay(stack: Stack) -> None:
    """The CLC's sync: a running instance that no node of a healthy cluster has reported
    for five minutes is terminated as lost; instances the CC reports are left alone."""
    from datetime import UTC, datetime, timedelta

    from eucalypt.clc.app import open_database
    from eucalypt.clc.models import Instance

    ec2 = stack.ec2()
    kept = ec2.run_instances(ImageId=IMAGE_ID, MinCount=1, MaxCount=1, InstanceType="t1.micro")
    kept_id = kept["Instances"][0]["InstanceId"]
    wait_state(stack, [kept_id], "running")
    ghost = "i-0badc0ffee0000001"
    db = open_database(stack.config)
    try:
        def add(s: object) -> None:
            s.add(  # type: ignore[attr-defined]
                Instance(
                    id=ghost, reservation_id="r-0badc0ffee000001", account_id=stack.user.account_id,
                    image_id=IMAGE_ID, instance_type="t1.micro", zone="zone-1", state="running",
                    launch_time=datetime.now(UTC) - timedelta(minutes=10),
                )
            )

        db.run_sync(add)
    finally:
        db.dispose()
    states = wait_state(stack, [ghost], "terminated")
    assert states[ghost] == "terminated"
    gone = ec2.describe_instances(InstanceIds=[ghost])["Reservations"][0]["Instances"][0]
    assert "InstanceLost" in gone["StateReason"]["Message"]
    assert wait_state(stack, [kept_id], "running")[kept_id] == "running"
    ec2.terminate_instances(InstanceIds=[kept_id])
