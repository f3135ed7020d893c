"""Reconciliation at NC start, against a driver whose domains outlive the NC.

The driver double stands in for a hypervisor (the OS boundary): its domains
are entries in a dict shared by two NodeService objects, as QEMU processes are
shared by two NC processes. The real thing (QEMU, kill -9) is in test_qemu_vm.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from eucalypt.nc.api import InstanceState
from eucalypt.nc.cache import ImageCache
from eucalypt.nc.endpoint import Endpoints
from eucalypt.nc.hypervisors.base import DomainInfo, DomainSpec, HostResources
from eucalypt.nc.instances import RECORD_FILE, InstanceRecord, utcnow
from eucalypt.nc.service import NodeParts, NodeService, NodeSettings
from tests.nc.conftest import FakeIp, run_request

S = InstanceState


class LastingDriver:
    """Domains in a dict that survives the service; ``kill`` stops one 'outside the NC'."""

    name = "lasting"
    simulated = True

    def __init__(self) -> None:
        self.domains: dict[str, int] = {}
        self.destroyed: list[str] = []
        self._next_pid = 1000

    async def spawn(self, spec: DomainSpec) -> DomainInfo:
        self._next_pid += 1
        self.domains[spec.instance_id] = self._next_pid
        return DomainInfo(spec.instance_id, True, self._next_pid)

    async def destroy(self, instance_id: str, workdir: Path) -> None:
        self.destroyed.append(instance_id)
        self.domains.pop(instance_id, None)

    async def reboot(self, instance_id: str, workdir: Path) -> None:
        pass

    async def info(self, instance_id: str, workdir: Path) -> DomainInfo:
        pid = self.domains.get(instance_id)
        return DomainInfo(instance_id, pid is not None, pid, "" if pid else "killed by a test")

    async def list(self, instances_dir: Path) -> list[DomainInfo]:
        return [DomainInfo(i, True, p) for i, p in self.domains.items()]

    async def console_output(self, instance_id: str, workdir: Path, limit: int) -> bytes:
        return b""

    def host_resources(self, instances_dir: Path) -> HostResources:
        return HostResources(cores=16, memory_mib=16384, disk_gib=100)


def make_service(tmp_path: Path, driver: LastingDriver, ip: FakeIp) -> NodeService:
    settings = NodeSettings(
        node_name="test", hypervisor=driver.name, instances_dir=tmp_path / "instances",
        monitor_seconds=0,
    )  # fmt: skip
    parts = NodeParts(
        driver=driver,
        cache=ImageCache(tmp_path / "cache", 2**30),
        endpoints=Endpoints(ip),
        runner=ip,
    )
    return NodeService(settings, parts)


def test_restart_adopts_live_domains_and_cleans_the_rest(tmp_path: Path) -> None:
    driver, ip = LastingDriver(), FakeIp()
    instances = tmp_path / "instances"

    async def before_restart() -> None:
        svc = make_service(tmp_path, driver, ip)
        await svc.start()
        for iid in ("i-keep", "i-killed", "i-shutting"):
            await svc.run_instance(run_request(iid))
        while any(i.state != S.RUNNING for i in await svc.describe_instances([])):
            await asyncio.sleep(0.01)
        await svc.close()  # the NC goes away; its domains do not

    asyncio.run(before_restart())
    pid_keep = driver.domains["i-keep"]
    # While the NC is down: one domain dies, one instance was half terminated,
    # one launch was cut short, and one directory has no record at all.
    del driver.domains["i-killed"]
    doc = json.loads((instances / "i-shutting" / RECORD_FILE).read_text())
    doc["state"] = "shutting-down"
    doc["reason"] = "terminated by request"
    (instances / "i-shutting" / RECORD_FILE).write_text(json.dumps(doc))
    now = utcnow()
    cut = InstanceRecord(request=run_request("i-cut"), launched_at=now, updated_at=now)
    (instances / "i-cut").mkdir()
    (instances / "i-cut" / RECORD_FILE).write_text(cut.model_dump_json())
    (instances / "i-stray").mkdir()
    (instances / "i-stray" / "root.qcow2").write_bytes(b"junk")
    driver.domains["i-orphan"] = 4242  # a domain the NC has no record of

    async def after_restart() -> dict[str, tuple[S, str, int | None]]:
        svc = make_service(tmp_path, driver, ip)
        await svc.start()
        try:
            infos = await svc.describe_instances([])
            return {i.instance_id: (i.state, i.reason, i.pid) for i in infos}
        finally:
            await svc.close()

    got = asyncio.run(after_restart())
    assert got["i-keep"] == (S.RUNNING, "", pid_keep)
    assert got["i-killed"][0] == S.TERMINATED
    assert "stopped while the NC was down: killed by a test" in got["i-killed"][1]
    assert got["i-shutting"][:2] == (S.TERMINATED, "terminated by request")
    assert got["i-cut"][0] == S.TERMINATED
    assert "cut short" in got["i-cut"][1]
    assert "i-stray" not in got
    assert sorted(p.name for p in instances.iterdir()) == ["i-keep"]
    assert set(driver.domains) == {"i-keep"}
    assert "i-orphan" in driver.destroyed and "i-stray" in driver.destroyed


def test_domain_stopping_outside_the_nc_is_reported_terminated(tmp_path: Path) -> None:
    driver, ip = LastingDriver(), FakeIp()

    async def go() -> tuple[S, str, bool]:
        svc = make_service(tmp_path, driver, ip)
        await svc.start()
        try:
            await svc.run_instance(run_request("i-victim"))
            while (await svc.describe_instances(["i-victim"]))[0].state != S.RUNNING:
                await asyncio.sleep(0.01)
            del driver.domains["i-victim"]
            info = (await svc.describe_instances(["i-victim"]))[0]
            return info.state, info.reason, (tmp_path / "instances" / "i-victim").exists()
        finally:
            await svc.close()

    state, reason, files = asyncio.run(go())
    assert state == S.TERMINATED
    assert reason == "stopped outside the NC's control: killed by a test"
    assert not files
