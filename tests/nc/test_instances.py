"""The instance state table and the on-disk instance records."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from eucalypt.nc.api import TRANSITIONS, InstanceState, can_transition
from eucalypt.nc.errors import IncorrectInstanceState, InvalidParameter
from eucalypt.nc.instances import RECORD_FILE, InstanceRecord, InstanceStore, utcnow
from tests.nc.conftest import run_request

S = InstanceState


def test_ec2_state_codes() -> None:
    assert [(s.value, s.code) for s in S] == [
        ("pending", 0),
        ("running", 16),
        ("shutting-down", 32),
        ("terminated", 48),
        ("stopping", 64),
        ("stopped", 80),
    ]


def test_transition_table() -> None:
    assert can_transition(S.PENDING, S.RUNNING)
    assert can_transition(S.PENDING, S.SHUTTING_DOWN)  # a failed launch
    assert can_transition(S.RUNNING, S.SHUTTING_DOWN)
    assert can_transition(S.SHUTTING_DOWN, S.TERMINATED)
    assert not can_transition(S.RUNNING, S.PENDING)
    assert not can_transition(S.SHUTTING_DOWN, S.RUNNING)
    assert TRANSITIONS[S.TERMINATED] == frozenset()
    for state in S:
        assert can_transition(state, state)  # staying put is always allowed
        assert not can_transition(S.TERMINATED, state) or state == S.TERMINATED


def test_record_follows_the_table() -> None:
    now = utcnow()
    rec = InstanceRecord(request=run_request("i-00000001"), launched_at=now, updated_at=now)
    rec.transition(S.RUNNING)
    rec.transition(S.SHUTTING_DOWN, "qemu died")
    with pytest.raises(IncorrectInstanceState):
        rec.transition(S.RUNNING)
    rec.transition(S.TERMINATED)
    assert rec.info().state == S.TERMINATED
    assert rec.info().reason == "qemu died"


def test_records_round_trip_atomically_and_strays_are_reported(tmp_path: Path) -> None:
    store = InstanceStore(tmp_path)
    now = utcnow()
    rec = InstanceRecord(request=run_request("i-00000002"), launched_at=now, updated_at=now)

    async def go() -> None:
        await store.create(rec)
        rec.transition(S.RUNNING)
        rec.pid = 1234
        await store.save(rec)

    asyncio.run(go())
    (tmp_path / "i-garbage").mkdir()
    (tmp_path / "i-garbage" / RECORD_FILE).write_text("{not json")
    (tmp_path / "i-empty").mkdir()
    records, strays = store.load_all()
    assert [(r.instance_id, r.state, r.pid) for r in records] == [("i-00000002", S.RUNNING, 1234)]
    assert sorted(p.name for p in strays) == ["i-empty", "i-garbage"]
    doc = json.loads((tmp_path / "i-00000002" / RECORD_FILE).read_text())
    assert doc["state"] == "running"
    assert not list(tmp_path.glob("*/.*.tmp"))


@pytest.mark.parametrize("bad", ["../etc", "", "a/b", "i-" + "x" * 70, ".hidden"])
def test_instance_ids_must_be_path_safe(tmp_path: Path, bad: str) -> None:
    with pytest.raises(InvalidParameter):
        InstanceStore(tmp_path).workdir(bad)
