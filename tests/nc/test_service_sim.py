"""The NC's API over HTTP with the sim driver: resources, capacity, access, lifecycle, scale."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from eucalypt.auth.credentials import ChainCredentialStore, Credential, StaticCredentialStore
from eucalypt.config import Config
from eucalypt.nc.api import InstanceState, NcClient, VmSpec
from eucalypt.nc.app import create_app
from eucalypt.nc.hypervisors import DRIVERS, SimDriver, make_driver
from eucalypt.nc.hypervisors.sim import CONSOLE_LINE
from eucalypt.rpc import ComponentKeys, RemoteError
from tests.nc.conftest import Nc, nc_config, run_request
from tests.support.servers import serve_in_thread

S = InstanceState
ADMIN = Credential(
    access_key="AKIDADMINUSER0001",
    secret_key="admin-secret",
    account_id="000000000000",
    user_name="admin",
    is_admin=True,
)
USER = Credential(access_key="AKIDPLAINUSER0001", secret_key="user-secret", user_name="bob")
SMALL = VmSpec(name="m1.small", cores=1, memory_mib=512, disk_gib=2)


def sim_config(tmp_path: Path, **nc: object) -> Config:
    nc = {
        "hypervisor": "sim",
        "sim_boot_seconds": 0.0,
        "sim_cores": 8,
        "sim_memory_mib": 8192,
        "sim_disk_gib": 100,
        "reserve_cores": 1,
        "reserve_memory_mib": 1024,
        **nc,
    }
    return nc_config(tmp_path, **nc)


@pytest.fixture
def sim_nc(tmp_path: Path) -> Iterator[Nc]:
    config = sim_config(tmp_path)
    keys = ComponentKeys.load(config.keys_dir)
    # Cloud administrators reach the NC through a credential store that knows them.
    store = ChainCredentialStore(keys.store(["cc", "clc"]), StaticCredentialStore([ADMIN, USER]))
    with serve_in_thread(create_app(config, credentials=store), config.nc.port) as url:
        yield Nc(url, config)


def test_registry_builds_drivers_by_name(tmp_path: Path) -> None:
    config = sim_config(tmp_path)
    assert set(DRIVERS) == {"qemu", "sim"}
    assert make_driver("sim", config).name == "sim"
    assert make_driver("qemu", config).name == "qemu"
    with pytest.raises(ValueError, match="libvirt"):
        make_driver("libvirt", config)


def test_describe_resource_counts_reserve_and_instances(sim_nc: Nc) -> None:
    res = sim_nc.call(lambda c: c.describe_resource())
    assert res.hypervisor == "sim"
    r = res.resources
    assert (r.cores_total, r.memory_mib_total, r.disk_gib_total) == (7, 7168, 100)
    assert (r.cores_free, r.memory_mib_free, r.disk_gib_free) == (7, 7168, 100)
    for i in range(3):
        sim_nc.run(run_request(f"i-r{i}", vm=SMALL))
    r = sim_nc.call(lambda c: c.describe_resource()).resources
    assert (r.cores_free, r.memory_mib_free, r.disk_gib_free) == (4, 7168 - 3 * 512, 94)
    sim_nc.terminate("i-r0")
    r = sim_nc.call(lambda c: c.describe_resource()).resources
    assert (r.cores_free, r.memory_mib_free, r.disk_gib_free) == (5, 7168 - 2 * 512, 96)


def test_insufficient_capacity_is_refused(sim_nc: Nc) -> None:
    big = VmSpec(name="m1.large", cores=2, memory_mib=2048, disk_gib=10)
    for i in range(3):
        sim_nc.run(run_request(f"i-big{i}", vm=big))
    with pytest.raises(RemoteError) as err:
        sim_nc.run(run_request("i-big3", vm=big))  # 3 cores left but only 1024 MiB
    assert err.value.code == "InsufficientCapacity"
    assert "memory" in err.value.message
    assert [i.instance_id for i in sim_nc.describe()] == ["i-big0", "i-big1", "i-big2"]
    huge = VmSpec(name="huge", cores=64, memory_mib=64, disk_gib=1)
    with pytest.raises(RemoteError) as err:
        sim_nc.run(run_request("i-huge", vm=huge))
    assert err.value.code == "InsufficientCapacity"


def test_only_the_cc_and_admins_may_call(sim_nc: Nc) -> None:
    assert sim_nc.call(lambda c: c.describe_resource()).hypervisor == "sim"
    admin = Nc(sim_nc.url, sim_nc.config, caller=ADMIN)
    admin.run(run_request("i-byadmin"))
    assert admin.one("i-byadmin").state == S.RUNNING
    for caller, code in (
        ("clc", "AccessDenied"),
        ("walrus", "AuthFailure"),
        (USER, "AccessDenied"),
        (Credential(access_key="AKIDNOBODY", secret_key="x"), "AuthFailure"),
    ):
        other = Nc(sim_nc.url, sim_nc.config, caller=caller)
        with pytest.raises(RemoteError) as err:
            other.run(run_request("i-intruder"))
        assert err.value.code == code
        with pytest.raises(RemoteError):
            other.terminate("i-byadmin")
    assert [i.instance_id for i in sim_nc.describe()] == ["i-byadmin"]


def test_lifecycle_console_reboot_and_errors(sim_nc: Nc) -> None:
    info = sim_nc.run(run_request("i-life"))
    assert info.state in (S.PENDING, S.RUNNING)
    assert sim_nc.run(run_request("i-life")).instance_id == "i-life"  # idempotent retry
    sim_nc.wait_state("i-life", {S.RUNNING})
    assert sim_nc.console("i-life") == CONSOLE_LINE.format(id="i-life")
    assert sim_nc.call(lambda c: c.reboot_instance("i-life")).instance.state == S.RUNNING
    done = sim_nc.terminate("i-life")
    assert (done.state, done.reason) == (S.TERMINATED, "")
    assert sim_nc.terminate("i-life").state == S.TERMINATED  # idempotent
    assert "simulated" in sim_nc.console("i-life")  # kept after terminate
    with pytest.raises(RemoteError) as err:
        sim_nc.call(lambda c: c.reboot_instance("i-life"))
    assert err.value.code == "IncorrectInstanceState"
    with pytest.raises(RemoteError) as err:
        sim_nc.terminate("i-nosuch")
    assert (err.value.code, err.value.status) == ("InvalidInstanceID.NotFound", 404)
    with pytest.raises(RemoteError) as err:
        sim_nc.run(run_request("../../etc"))
    assert err.value.code == "InvalidParameterValue"


def test_pending_until_the_simulated_boot_ends(tmp_path: Path) -> None:
    config = sim_config(tmp_path, sim_boot_seconds=1.0)
    with serve_in_thread(create_app(config), config.nc.port) as url:
        nc = Nc(url, config)
        assert nc.run(run_request("i-slow")).state == S.PENDING
        assert nc.one("i-slow").state == S.PENDING
        nc.wait_state("i-slow", {S.RUNNING}, timeout=10)
        # terminating a pending instance cancels its launch
        nc.run(run_request("i-slow2"))
        assert nc.terminate("i-slow2").state == S.TERMINATED
        time.sleep(1.2)
        assert nc.one("i-slow2").state == S.TERMINATED


def test_hundreds_of_sim_instances(tmp_path: Path) -> None:
    n = 300
    config = sim_config(tmp_path, sim_cores=n + 1, sim_memory_mib=n * 256 + 1024)
    with serve_in_thread(create_app(config), config.nc.port) as url:
        nc = Nc(url, config)
        tiny = VmSpec(name="t1.micro", cores=1, memory_mib=256, disk_gib=0)

        async def run_all(c: NcClient) -> None:
            sem = asyncio.Semaphore(16)

            async def one(i: int) -> None:
                async with sem:
                    await c.run_instance(run_request(f"i-{i:08x}", vm=tiny))

            await asyncio.gather(*(one(i) for i in range(n)))

        started = time.monotonic()
        nc.call(run_all)
        ran = time.monotonic() - started
        deadline = time.monotonic() + 60
        while sum(i.state == S.RUNNING for i in nc.describe()) < n:
            assert time.monotonic() < deadline
            time.sleep(0.1)
        res = nc.call(lambda c: c.describe_resource()).resources
        assert (res.cores_free, res.memory_mib_free) == (0, 0)
        with pytest.raises(RemoteError) as err:
            nc.run(run_request("i-onemore", vm=tiny))
        assert err.value.code == "InsufficientCapacity"

        async def terminate_all(c: NcClient) -> None:
            sem = asyncio.Semaphore(16)

            async def one(i: int) -> None:
                async with sem:
                    await c.terminate_instance(f"i-{i:08x}")

            await asyncio.gather(*(one(i) for i in range(n)))

        started = time.monotonic()
        nc.call(terminate_all)
        terminated = time.monotonic() - started
        states = {i.state for i in nc.describe()}
        assert states == {S.TERMINATED}
        assert list(Path(config.nc.instances_dir).iterdir()) == []
        print(f"\n[sim] {n} RunInstance calls in {ran:.2f} s, {n} terminates in {terminated:.2f} s")


def test_sim_instances_are_gone_after_an_nc_restart(tmp_path: Path) -> None:
    config = sim_config(tmp_path)
    with serve_in_thread(create_app(config), config.nc.port) as url:
        Nc(url, config).run(run_request("i-ephemeral"))
        Nc(url, config).wait_state("i-ephemeral", {S.RUNNING})
    driver = SimDriver(boot_seconds=0)
    with serve_in_thread(create_app(config, driver=driver), config.nc.port) as url:
        info = Nc(url, config).one("i-ephemeral")
        assert info.state == S.TERMINATED
        assert "NC was down" in info.reason
    assert list(Path(config.nc.instances_dir).iterdir()) == []
