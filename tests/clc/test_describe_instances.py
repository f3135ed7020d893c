"""DescribeInstances over instances written straight into the CLC's database.

Filters on plain columns with exact values are answered by the database; the same
filters with wildcards are matched on the rendered items. Both must agree, as must the
visibility rules (terminated instances drop out of listings after an hour but stay
reachable by id) and the errors.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import botocore.exceptions
import pytest

from eucalypt.clc import identity
from eucalypt.clc.app import create_app, open_database
from eucalypt.clc.models import Instance, SecurityGroup, Tag
from eucalypt.cli.init import initialise
from eucalypt.config import ClcConfig, Config
from tests.clc.conftest import ClcFixture, _make_account
from tests.support.servers import free_port, serve_in_thread

STATES = ["pending", "running", "running", "shutting-down", "stopped", "terminated"]


def _iid(n: int) -> str:
    return f"i-{n:017x}"


@pytest.fixture(scope="module")
def carol(clc: ClcFixture) -> tuple[identity.KeyInfo, dict[str, Any]]:
    """An account holding 5 reservations x 4 instances, plus two long-terminated ones."""
    key = _make_account(clc.config, "carol-describe")
    account = key.account_id
    now = datetime.now(UTC)
    facts: dict[str, Any] = {"ids": [], "old": [_iid(900), _iid(901)]}

    def fill(s: Any) -> None:
        for name in ("default", "web"):
            s.add(SecurityGroup(id=f"sg-carol{name}", account_id=account, name=name))
        n = 0
        for r in range(5):
            groups = "sg-caroldefault" if r % 2 else "sg-caroldefault,sg-carolweb"
            for k in range(4):
                state = STATES[n % len(STATES)]
                s.add(
                    Instance(
                        id=_iid(n),
                        reservation_id=f"r-{r:017x}",
                        account_id=account,
                        image_id="emi-00000000000000001" if k % 2 else "emi-00000000000000002",
                        instance_type="t1.micro" if n % 3 else "m1.small",
                        zone="zone-1" if r < 3 else "zone-2",
                        state=state,
                        state_reason="User initiated" if state == "terminated" else "",
                        group_ids=groups,
                        launch_index=k,
                        private_ip=f"10.0.{r}.{k + 2}",
                        launch_time=now - timedelta(minutes=30) + timedelta(seconds=n),
                        terminated_at=now - timedelta(minutes=5) if state == "terminated" else None,
                    )
                )
                if k == 0:
                    s.add(Tag(resource_id=_iid(n), key="Name", value=f"web{r}", account_id=account))
                facts["ids"].append(_iid(n))
                n += 1
        for i, old in enumerate(facts["old"]):
            s.add(
                Instance(
                    id=old,
                    reservation_id="r-00000000000000900",
                    account_id=account,
                    image_id="emi-00000000000000001",
                    instance_type="t1.micro",
                    zone="zone-1",
                    state="terminated",
                    group_ids="sg-caroldefault",
                    launch_index=i,
                    launch_time=now - timedelta(hours=3),
                    terminated_at=now - timedelta(hours=2),
                )
            )

    db = open_database(clc.config)
    try:
        db.run_sync(fill)
    finally:
        db.dispose()
    return key, facts


def _ids(reply: dict[str, Any]) -> list[str]:
    return [i["InstanceId"] for r in reply["Reservations"] for i in r["Instances"]]


def _describe(clc: ClcFixture, key: identity.KeyInfo, **kwargs: Any) -> dict[str, Any]:
    reply: dict[str, Any] = clc.client(key).describe_instances(**kwargs)
    return reply


def test_listing_leaves_out_long_terminated_but_ids_reach_them(clc: ClcFixture, carol) -> None:  # type: ignore[no-untyped-def]
    key, facts = carol
    listed = _ids(_describe(clc, key))
    assert listed == facts["ids"]  # launch order; the two terminated 2 h ago are gone
    assert _ids(_describe(clc, key, InstanceIds=facts["old"])) == facts["old"]
    reservations = _describe(clc, key)["Reservations"]
    assert [len(r["Instances"]) for r in reservations] == [4] * 5
    assert [g["GroupName"] for g in reservations[0]["Groups"]] == ["default", "web"]
    recent = [i for r in reservations for i in r["Instances"] if i["State"]["Name"] == "terminated"]
    assert recent and all(i["StateReason"]["Message"] == "User initiated" for i in recent)


@pytest.mark.parametrize(
    ("name", "exact", "pattern"),
    [
        ("instance-state-name", ["running"], ["runn?ng"]),
        ("instance-state-name", ["running", "stopped"], ["runn*", "stop*"]),
        ("instance-type", ["m1.small"], ["m1.*"]),
        ("image-id", ["emi-00000000000000002"], ["emi-*2"]),
        ("availability-zone", ["zone-2"], ["zone-?2", "*-2"]),
        ("reservation-id", ["r-00000000000000001"], ["r-*1"]),
        ("instance-id", [_iid(3), _iid(7)], ["?" + _iid(3)[1:], "*" + _iid(7)[2:]]),
        ("instance-id", ["i-does-not-exist"], ["i-does-not-*"]),
        ("tag:Name", ["web1"], ["w?b1"]),
        ("tag:Name", ["web0", "web4"], ["*0", "*4"]),
        ("tag:Name", ["no-such-name"], ["no-such-*"]),
        ("tag:Nope", ["web1"], ["web?"]),
        ("tag-key", ["Name"], ["Na*"]),
        ("tag-value", ["web2", "web3"], ["web2*", "web3*"]),
    ],
)
def test_exact_filters_match_as_their_wildcard_twins(  # type: ignore[no-untyped-def]
    clc: ClcFixture, carol, name: str, exact: list[str], pattern: list[str]
) -> None:
    key, _ = carol
    by_sql = _describe(clc, key, Filters=[{"Name": name, "Values": exact}])
    by_match = _describe(clc, key, Filters=[{"Name": name, "Values": pattern}])
    assert by_sql == {**by_match, "ResponseMetadata": by_sql["ResponseMetadata"]}
    for inst in (i for r in by_sql["Reservations"] for i in r["Instances"]):
        if name == "instance-state-name":
            assert inst["State"]["Name"] in exact


def test_filters_combine_with_each_other_and_with_instance_ids(clc: ClcFixture, carol) -> None:  # type: ignore[no-untyped-def]
    key, facts = carol
    filters = [
        {"Name": "instance-state-name", "Values": ["running"]},
        {"Name": "tag:Name", "Values": ["web*"]},
    ]
    got = _ids(_describe(clc, key, Filters=filters))
    assert got and all(facts["ids"].index(i) % 4 == 0 for i in got)
    # Named instances that the filters leave out are simply not listed...
    named = facts["ids"][:4]
    got = _ids(_describe(clc, key, InstanceIds=named, Filters=filters[:1]))
    assert set(got) < set(named)
    # ...but every named one must exist.
    with pytest.raises(botocore.exceptions.ClientError) as err:
        _describe(clc, key, InstanceIds=[*named, "i-0000000000000ffff"], Filters=filters[:1])
    assert err.value.response["Error"]["Code"] == "InvalidInstanceID.NotFound"


def test_owner_id_filter_and_other_accounts(clc: ClcFixture, carol) -> None:  # type: ignore[no-untyped-def]
    key, facts = carol
    mine = _ids(_describe(clc, key, Filters=[{"Name": "owner-id", "Values": [key.account_id]}]))
    assert mine == facts["ids"]
    assert not _describe(clc, key, Filters=[{"Name": "owner-id", "Values": ["000000000000"]}])[
        "Reservations"
    ]
    # Another account neither lists nor filters its way to carol's instances.
    other = clc.client(clc.bob).describe_instances(
        Filters=[{"Name": "instance-id", "Values": facts["ids"][:3]}]
    )
    assert other["Reservations"] == []


def test_unknown_filter_is_an_error_even_with_nothing_to_match(clc: ClcFixture) -> None:
    for key in (clc.alice, clc.admin):
        with pytest.raises(botocore.exceptions.ClientError) as err:
            clc.client(key).describe_instances(
                Filters=[{"Name": "no-such-filter", "Values": ["x"]}]
            )
        assert err.value.response["Error"]["Code"] == "InvalidParameterValue"


def test_pages_over_filtered_reservations(clc: ClcFixture, carol) -> None:  # type: ignore[no-untyped-def]
    key, _ = carol
    filters = [{"Name": "availability-zone", "Values": ["zone-1"]}]
    everything = _describe(clc, key, Filters=filters)["Reservations"]
    pages, token = [], None
    while True:
        kwargs: dict[str, Any] = {"Filters": filters, "MaxResults": 5}
        if token:
            kwargs["NextToken"] = token
        reply = _describe(clc, key, **kwargs)
        pages += reply["Reservations"]
        token = reply.get("NextToken")
        if not token:
            break
    assert [r["ReservationId"] for r in pages] == [r["ReservationId"] for r in everything]
    assert len(everything) == 3


# --------------------------------------------------------------------------- at scale

#: More instances than one tag query's chunk of ids (``TAG_QUERY_CHUNK``), in
#: reservations of 100, each instance tagged with its own number.
MANY = 2_500
PER_RESERVATION = 100


@pytest.fixture(scope="module")
def crowd(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[ClcFixture, identity.KeyInfo]]:
    """A CLC of its own (the shared one's admin listings stay small) holding ``MANY``
    instances of one account, written straight into its database."""
    data_dir: Path = tmp_path_factory.mktemp("clc-crowd")
    Config(data_dir=data_dir, clc=ClcConfig(port=free_port())).save()
    result = initialise(data_dir)
    config = result.config
    key = _make_account(config, "crowd")
    other = _make_account(config, "bystander")
    now = datetime.now(UTC)

    def fill(s: Any) -> None:
        s.add(SecurityGroup(id="sg-crowddefault", account_id=key.account_id, name="default"))
        for n in range(MANY):
            r, k = divmod(n, PER_RESERVATION)
            s.add(
                Instance(
                    id=_iid(0x10000 + n),
                    reservation_id=f"r-{0x10000 + r:017x}",
                    account_id=key.account_id,
                    image_id="emi-00000000000000001",
                    instance_type="t1.micro",
                    zone="zone-1" if r % 2 else "zone-2",
                    state="running" if n % 10 else "pending",
                    group_ids="sg-crowddefault",
                    launch_index=k,
                    private_ip=f"10.{r}.{k // 250}.{k % 250 + 2}",
                    launch_time=now - timedelta(hours=1) + timedelta(milliseconds=n),
                )
            )
            s.add(
                Tag(resource_id=_iid(0x10000 + n), key="n", value=str(n), account_id=key.account_id)
            )
            if n % 7 == 0:
                s.add(
                    Tag(
                        resource_id=_iid(0x10000 + n),
                        key="seventh",
                        value="yes",
                        account_id=key.account_id,
                    )
                )
        # Another account's instance, tagged alike: never listed for ``key``.
        s.add(
            Instance(
                id=_iid(0x20000),
                reservation_id="r-00000000000020000",
                account_id=other.account_id,
                image_id="emi-00000000000000001",
                instance_type="t1.micro",
                zone="zone-1",
                state="running",
                group_ids="",
                launch_time=now,
            )
        )
        s.add(Tag(resource_id=_iid(0x20000), key="n", value="7", account_id=other.account_id))

    db = open_database(config)
    try:
        db.run_sync(fill)
    finally:
        db.dispose()
    with serve_in_thread(create_app(config), config.clc.port) as url:
        yield (
            ClcFixture(config=config, url=url, admin=result.admin, alice=key, bob=other),
            key,
        )


def _tag(instance: dict[str, Any], key: str) -> str | None:
    return next((t["Value"] for t in instance.get("Tags", []) if t["Key"] == key), None)


def test_full_listing_at_scale(crowd) -> None:  # type: ignore[no-untyped-def]
    clc, key = crowd
    reply = _describe(clc, key)
    assert "NextToken" not in reply  # no MaxResults: everything in one answer, as EC2
    reservations = reply["Reservations"]
    assert len(reservations) == MANY // PER_RESERVATION
    assert all(len(r["Instances"]) == PER_RESERVATION for r in reservations)
    instances = [i for r in reservations for i in r["Instances"]]
    assert [i["InstanceId"] for i in instances] == [_iid(0x10000 + n) for n in range(MANY)]
    # Every instance carries its own tags (read in one query for them all), keys in order.
    for n, inst in enumerate(instances):
        expected = [{"Key": "n", "Value": str(n)}]
        if n % 7 == 0:
            expected.append({"Key": "seventh", "Value": "yes"})
        assert inst["Tags"] == expected
        assert inst["SecurityGroups"] == [{"GroupId": "sg-crowddefault", "GroupName": "default"}]
    assert {r["OwnerId"] for r in reservations} == {key.account_id}


def test_pages_at_scale_join_up_to_the_full_listing(crowd) -> None:  # type: ignore[no-untyped-def]
    clc, key = crowd
    everything = _describe(clc, key)["Reservations"]
    paginator = clc.client(key).get_paginator("describe_instances")
    pages = list(paginator.paginate(PaginationConfig={"PageSize": 6}))
    assert len(pages) == -(-len(everything) // 6)
    assert [r for p in pages for r in p["Reservations"]] == everything


@pytest.mark.parametrize(
    ("filters", "expected"),
    [
        # A tag value that another account's instance has too.
        ([{"Name": "tag:n", "Values": ["7", "1234", "99999"]}], [7, 1234]),
        ([{"Name": "tag-key", "Values": ["seventh"]}], list(range(0, MANY, 7))),
        (
            [
                {"Name": "tag:seventh", "Values": ["yes"]},
                {"Name": "instance-state-name", "Values": ["pending"]},
            ],
            list(range(0, MANY, 70)),
        ),
        (
            [
                {"Name": "tag:n", "Values": [str(n) for n in range(1000, 1100)]},
                {"Name": "private-ip-address", "Values": ["10.10.0.*"]},
            ],
            list(range(1000, 1100)),
        ),
        (
            [{"Name": "instance-id", "Values": [_iid(0x10000 + n) for n in range(0, MANY, 2)]}],
            list(range(0, MANY, 2)),
        ),
        ([{"Name": "instance-id", "Values": [_iid(0x20000)]}], []),
    ],
)
def test_filters_at_scale(crowd, filters, expected) -> None:  # type: ignore[no-untyped-def]
    clc, key = crowd
    reply = _describe(clc, key, Filters=filters)
    instances = [i for r in reply["Reservations"] for i in r["Instances"]]
    assert [int(_tag(i, "n") or -1) for i in instances] == expected
    # Reservations keep only their matching instances, and no empty reservation shows.
    assert all(r["Instances"] for r in reply["Reservations"])


def test_many_instance_ids_at_scale(crowd) -> None:  # type: ignore[no-untyped-def]
    clc, key = crowd
    wanted = [_iid(0x10000 + n) for n in range(MANY - 1, 0, -3)]
    got = _ids(_describe(clc, key, InstanceIds=wanted))
    assert got == sorted(wanted)  # in launch order, whatever order they were asked in
    with pytest.raises(botocore.exceptions.ClientError) as err:
        _describe(clc, key, InstanceIds=[*wanted, _iid(0x20000)])
    assert err.value.response["Error"]["Code"] == "InvalidInstanceID.NotFound"
