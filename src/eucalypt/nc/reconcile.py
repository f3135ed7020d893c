"""What an NC finds at start: its instances on disk against the hypervisor's domains.

Instances may start and stop outside the NC's control (the paper), and the
NC itself may have been killed. At start it reads every instance record and
asks the driver which domains run, then decides per instance:

============================  ===================  =====================================
record state                  domain               outcome
============================  ===================  =====================================
running / pending             running              adopted (running, same pid)
running                       gone                 cleaned up, terminated with a reason
pending                       gone                 cleaned up, terminated (launch cut)
shutting-down / terminated    any                  cleanup finished, terminated
(no readable record)          any                  stray: domain destroyed, dir removed
============================  ===================  =====================================

This module only decides; the service carries the outcome out with the same
teardown it uses everywhere.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from eucalypt.nc.api import InstanceState
from eucalypt.nc.hypervisors.base import Hypervisor
from eucalypt.nc.instances import InstanceRecord, InstanceStore, is_instance_id


@dataclass
class Reconciled:
    adopted: list[InstanceRecord] = field(default_factory=list)
    # Records to tear down, with the reason they end up terminated.
    dead: list[tuple[InstanceRecord, str]] = field(default_factory=list)
    # Instance directories without a usable record (their domain, if any, must go too).
    strays: list[Path] = field(default_factory=list)


async def reconcile(store: InstanceStore, driver: Hypervisor) -> Reconciled:
    """Decide the fate of every instance found under ``store.root`` (see the table)."""
    records, strays = store.load_all()
    out = Reconciled(strays=list(strays))
    known = {r.instance_id for r in records}
    for record in records:
        workdir = store.workdir(record.instance_id)
        if record.state in (InstanceState.SHUTTING_DOWN, InstanceState.TERMINATED):
            out.dead.append((record, record.reason or "terminated"))
            continue
        info = await driver.info(record.instance_id, workdir)
        if info.running:
            if record.state == InstanceState.PENDING:
                record.transition(InstanceState.RUNNING)
            record.pid = info.pid
            out.adopted.append(record)
        elif record.state == InstanceState.PENDING:
            out.dead.append((record, "the launch was cut short by an NC restart"))
        else:
            why = info.reason or "the domain is gone"
            out.dead.append((record, f"stopped while the NC was down: {why}"))
    for domain in await driver.list(store.root):
        if domain.instance_id not in known and is_instance_id(domain.instance_id):
            path = store.root / domain.instance_id
            if path not in out.strays:
                out.strays.append(path)
    return out
