"""A CC restart keeps running instances' network: soft state rebuilt from the NCs.

Instances are namespaces (``topology.py``). The "NC view" handed to a new
network manager is what each NC stores for its instances: the NetworkSpec
the CC gave at launch (asked again here with ``prepare``, which keeps an
instance's endpoint). The CLC's part after a restart is played by
:class:`Clc`, which re-pushes exactly as ``eucalypt.clc.netsync.NetworkSync.
reconcile`` does: groups the CC does not show, then mappings it lacks.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from ipaddress import IPv4Network
from pathlib import Path
from typing import Any, TypeVar

import pytest

from eucalypt.cc.api import CcClient, InstanceNetworkRequest, LaunchSpec, RunInstancesRequest
from eucalypt.cc.netapi import (
    AssignAddressRequest,
    EnsureNetworkRequest,
    IngressRule,
    SetIngressRulesRequest,
)
from eucalypt.cc.network import FoundEndpoint
from eucalypt.cc.network.managed import ManagedNetwork
from eucalypt.config import CcConfig, Config, NcConfig
from eucalypt.nc.api import BootImages, InstanceState, NetworkSpec
from eucalypt.nc.app import create_app as create_nc
from eucalypt.nc.endpoint import Endpoints
from eucalypt.net.links import read_links
from eucalypt.net.runner import CommandResult, CommandRunner, RecordingRunner
from eucalypt.rpc import ComponentKeys
from tests.cc.network.topology import Cluster, build_cluster, launch_spec
from tests.nc.conftest import ImageServer, Nc
from tests.nc.test_netns import (
    MetadataService,
    _launch,
    cleanup_single_host,
    ns_links,
    single_host_config,
    ssh,
)
from tests.nc.test_qemu_vm import (  # noqa: F401  (fixtures)
    READY,
    VM,
    guest,
    nc_cache_dir,
    new_id,
    vm_reaper,
    wait_console,
    walrus,
)
from tests.net.helpers import Lab, needs_root, run_async
from tests.support.servers import free_port, serve_in_thread, wait_http

pytestmark = [pytest.mark.netns, needs_root]

T = TypeVar("T")
S = InstanceState

OWNER = "111122223333"
PUB = "198.51.100.10"
PUB2 = "198.51.100.11"


def tcp_rule(port: int, *, cidr: str | None = None, group: str | None = None) -> IngressRule:
    return IngressRule(protocol="tcp", from_port=port, to_port=port, cidr=cidr, source_group=group)


@dataclass
class Clc:
    """The CLC's database (groups, their VNIs, address mappings) and its re-push."""

    groups: dict[str, list[IngressRule]]
    vnis: dict[str, int] = field(default_factory=dict)
    addresses: dict[str, str] = field(default_factory=dict)  # public IP -> instance

    async def push(self, m: ManagedNetwork, group: str) -> None:
        info = await m.ensure_network(group, OWNER, f"name-{group}", vni=self.vnis.get(group))
        assert info.vni is not None
        self.vnis.setdefault(group, info.vni)
        await m.set_ingress_rules(group, self.groups[group])

    async def reconcile(self, m: ManagedNetwork) -> None:
        have = m.describe([])
        present = {n.group_id for n in have.networks}
        for group in self.groups:
            if group not in present:
                await self.push(m, group)
        current = {a.public_ip: a.instance_id for a in have.addresses}
        for public_ip, instance_id in self.addresses.items():
            if public_ip in current and current[public_ip] != instance_id:
                await m.assign_address(instance_id, public_ip)


@dataclass
class Running:
    cl: Cluster
    clc: Clc
    placed: dict[str, tuple[str, str]]  # instance -> (group, node URL)
    vms: dict[str, tuple[str, str]]  # instance -> (namespace, address)

    def vm(self, iid: str) -> str:
        return self.vms[iid][0]

    def ip(self, iid: str) -> str:
        return self.vms[iid][1]

    async def nc_view(self) -> list[FoundEndpoint]:
        """What the NCs report: each instance's NetworkSpec as the CC gave it."""
        found = []
        for iid, (group, url) in self.placed.items():
            spec = await self.cl.manager.prepare(launch_spec(iid, group, OWNER), url)
            assert spec.network_id == group and spec.private_ip == self.ip(iid)
            wire = NetworkSpec.model_validate_json(spec.model_dump_json())  # as stored
            found.append(FoundEndpoint(iid, url, wire, OWNER))
        return found

    async def connectivity(self) -> dict[str, bool]:
        lab, out = self.cl.lab, self.cl.outside
        assert out is not None
        a1, a2, b1 = (self.vm(i) for i in ("i-000a1", "i-000a2", "i-000b1"))
        return {
            "same group ping": await lab.ping(a1, self.ip("i-000a2")),
            "same group tcp": await lab.tcp(a1, self.ip("i-000a2"), 8080) == "a2",
            "other group by rule": await lab.tcp(a1, self.ip("i-000b1"), 8080) == "b1",
            "public address": await lab.tcp(out, PUB, 8080) == "a2",
            "outgoing from public": await lab.tcp(a2, "198.51.100.2", 9090) == PUB,
            "dhcp": await lab.dhcp(b1) == self.ip("i-000b1"),
        }


async def running_cluster(lab: Lab, mode: str = "MANAGED") -> Running:
    """Two groups on two nodes; sg-a open on 8080 to everyone, sg-b to sg-a; a2 public."""
    cl = await build_cluster(lab, mode=mode)
    clc = Clc(
        groups={
            "sg-a": [tcp_rule(8080, cidr="0.0.0.0/0")],
            "sg-b": [tcp_rule(8080, group="sg-a")],
        }
    )
    for group in clc.groups:
        await clc.push(cl.manager, group)
    n1, n2 = cl.urls
    placed = {"i-000a1": ("sg-a", n1), "i-000a2": ("sg-a", n2), "i-000b1": ("sg-b", n2)}
    vms = {iid: await cl.launch(iid, group, url) for iid, (group, url) in placed.items()}
    run = Running(cl, clc, placed, vms)
    await lab.serve(run.vm("i-000a2"), 8080, "a2")
    await lab.serve(run.vm("i-000b1"), 8080, "b1")
    assert cl.outside is not None
    await lab.serve(cl.outside, 9090, "@client")
    await cl.manager.assign_address("i-000a2", PUB)
    clc.addresses[PUB] = "i-000a2"
    return run


async def host_view(lab: Lab, ns: str) -> tuple[list[str], dict[str, tuple[object, ...]]]:
    """Our iptables lines and links (kind, master, addresses) in ``ns``."""
    saved = (await lab.sh(ns, "iptables-save")).stdout
    ours = [line for line in saved.splitlines() if "EUCA" in line]
    links = await read_links(lab.runner, ns)
    return ours, {
        n: (i.kind, i.master, i.up, sorted(i.addresses))
        for n, i in links.items()
        if n.startswith(("eubr", "euvx", "pub0"))
    }


def gateway(ip: str) -> str:
    return str(IPv4Network(f"{ip}/24", strict=False).network_address + 1)


def dnsmasq_pids(state_dir: Path) -> dict[str, str]:
    return {p.stem: p.read_text().strip() for p in sorted(state_dir.glob("*.pid"))}


@pytest.mark.parametrize("mode", ["MANAGED", "MANAGED-NOVLAN"])
@run_async
async def test_graceful_restart_rebuilds_the_network_from_the_ncs_and_the_clc(mode: str) -> None:
    async with Lab() as lab:
        run = await running_cluster(lab, mode)
        cl = run.cl
        try:
            assert all((await run.connectivity()).values())
            found = await run.nc_view()
            before = cl.manager.describe([])

            await cl.manager.stop()
            # the CC's shutdown leaves nothing of its own behind
            rules, links = await host_view(lab, cl.cc)
            assert rules == [] and set(links) == {"pub0"}
            assert await lab.pids_in(cl.cc) == []
            assert await lab.tcp(cl.outside or "", PUB, 8080) is None
            # the nodes keep their side: one group's LAN across nodes still works
            assert await lab.tcp(run.vm("i-000a1"), run.ip("i-000a2"), 8080) == "a2"

            cl.manager = ManagedNetwork(cl.config, novlan=mode == "MANAGED-NOVLAN")
            await cl.manager.adopt(found)
            await cl.manager.start()
            # before the CLC says anything: gateways, VXLAN and fixed leases are back...
            a1 = run.vm("i-000a1")
            assert await lab.dhcp(a1) == run.ip("i-000a1")
            assert await lab.ping(a1, gateway(run.ip("i-000a1")))
            # ...not what only the CLC knows, and the adopted networks wait for it
            assert await lab.tcp(a1, run.ip("i-000b1"), 8080) is None
            waiting = cl.manager.describe([])
            assert waiting.networks == [] and all(a.instance_id is None for a in waiting.addresses)

            await run.clc.reconcile(cl.manager)
            assert all((await run.connectivity()).values())
            after = cl.manager.describe([])
            assert after.networks == before.networks  # ids, VNIs, subnets, rules, endpoints
            assert after.addresses == before.addresses
            # the CLC's next round finds nothing missing: the host is left alone
            rec = RecordingRunner(cl.manager.plane.runner)
            cl.manager.plane.runner = rec
            await run.clc.reconcile(cl.manager)
            assert rec.changes == []
        finally:
            await cl.manager.stop()
        rules, links = await host_view(lab, cl.cc)
        assert rules == [] and set(links) == {"pub0"}


@run_async
async def test_a_killed_cc_is_replaced_without_touching_the_host() -> None:
    async with Lab() as lab:
        run = await running_cluster(lab)
        cl = run.cl
        try:
            # b1 also had a public address, which the CLC released while the CC was down
            await cl.manager.assign_address("i-000b1", PUB2)
            assert all((await run.connectivity()).values())
            found = await run.nc_view()
            state_dir = Path(cl.config.cc.network_state_dir)
            host, pids = await host_view(lab, cl.cc), dnsmasq_pids(state_dir)
            assert pids

            # kill -9: the process's sockets (the metadata proxy) go, the host keeps the rest
            assert cl.manager.plane.metadata is not None
            await cl.manager.plane.metadata.stop()
            rec = RecordingRunner(CommandRunner())
            cl.manager = ManagedNetwork(cl.config, runner=rec, adoption_grace=4.0)
            await cl.manager.adopt(found)
            await cl.manager.start()
            assert rec.changes == [], [c.argv for c in rec.changes]
            # the CLC confirms what it has; nothing changes on the host either
            shown = cl.manager.describe([])
            assert shown.networks == [] and all(a.instance_id is None for a in shown.addresses)
            await run.clc.reconcile(cl.manager)
            assert rec.changes == [], [c.argv for c in rec.changes]
            assert await host_view(lab, cl.cc) == host  # no rule twice, no link changed
            assert dnsmasq_pids(state_dir) == pids  # dnsmasq not even restarted
            assert {n.group_id for n in cl.manager.describe([]).networks} == {"sg-a", "sg-b"}
            assert all((await run.connectivity()).values())

            # the address the CLC no longer maps goes after the grace period
            mapped = {a.public_ip: a.instance_id for a in cl.manager.describe([]).addresses}
            assert mapped[PUB] == "i-000a2" and mapped[PUB2] is None
            deadline = time.monotonic() + 10
            while PUB2 in " ".join((await host_view(lab, cl.cc))[0]):
                assert time.monotonic() < deadline, "the unconfirmed address stayed"
                await asyncio.sleep(0.2)
            pub0 = (await read_links(lab.runner, cl.cc))["pub0"].addresses
            assert f"{PUB2}/32" not in pub0 and f"{PUB}/32" in pub0
            assert await lab.tcp(cl.outside or "", PUB, 8080) == "a2"
        finally:
            await cl.manager.stop()
        rules, links = await host_view(lab, cl.cc)
        assert rules == [] and set(links) == {"pub0"}
        assert await lab.pids_in(cl.cc) == []


@run_async
async def test_a_spec_without_group_id_is_adopted_and_named_by_the_clcs_push() -> None:
    """Instances launched by a CC that did not record the group: kept under a
    placeholder, which the CLC's EnsureNetwork (same VNI) names."""
    async with Lab() as lab:
        run = await running_cluster(lab)
        cl = run.cl
        try:
            found = [
                FoundEndpoint(
                    f.instance_id, f.node_url, f.spec.model_copy(update={"network_id": None})
                )
                for f in await run.nc_view()
            ]
            await cl.manager.stop()
            cl.manager = ManagedNetwork(cl.config)
            await cl.manager.adopt(found)
            await cl.manager.start()
            assert await lab.dhcp(run.vm("i-000a1")) == run.ip("i-000a1")
            await run.clc.reconcile(cl.manager)
            nets = {n.group_id: n for n in cl.manager.describe([]).networks}
            assert set(nets) == {"sg-a", "sg-b"}
            assert {i.instance_id for i in nets["sg-a"].instances} == {"i-000a1", "i-000a2"}
            assert all((await run.connectivity()).values())
        finally:
            await cl.manager.stop()


# --------------------------------------------------------------------------- CC and NC on one host


@run_async
async def test_taps_go_back_on_the_bridges_a_restarted_cc_makes_anew() -> None:
    """CC and NC in one namespace (the single-host cloud): the CC's bridge is the
    instances'; the NC's monitor puts their taps back on it after a CC restart."""
    async with Lab() as lab:
        ns = await lab.netns("one")
        url = "http://127.0.0.1:8775"  # on loopback: no VXLAN peers
        config = Config(
            data_dir=lab.dir / "data",
            cc=CcConfig(
                network_mode="MANAGED",
                network_netns=ns,
                network_state_dir=str(lab.dir / "net"),
                nodes=[url],
            ),
        )
        calls: list[list[str]] = []

        class Recording(CommandRunner):
            async def run(self, argv: Sequence[str], **kw: Any) -> CommandResult:
                calls.append(list(argv))
                return await super().run(argv, **kw)

        # The taps' commands are recorded; the node network's run unrecorded.
        endpoints = Endpoints(Recording(), CommandRunner(), netns=ns)
        manager = ManagedNetwork(config)
        await manager.start()
        try:
            iid = "i-0000beef"
            spec = await manager.prepare(launch_spec(iid, "sg-1"), url)
            gateway = "10.128.0.1"
            # the "VM": its eth0's peer (vt1, in place of a tap) on the bridge
            vm = await lab.instance("vm", ns, spec.bridge or "", spec.mac)
            taps = {"vt1": spec}
            assert await lab.dhcp(vm) == spec.private_ip
            calls.clear()
            assert await endpoints.reattach(taps) == []
            assert calls == [["ip", "-n", ns, "-j", "link", "show"]]  # one read, nothing to do

            await manager.stop()
            assert (await read_links(lab.runner, ns))["vt1"].master is None
            manager = ManagedNetwork(config)
            await manager.adopt([FoundEndpoint(iid, url, spec)])
            await manager.start()
            assert (await read_links(lab.runner, ns))["vt1"].master is None  # a new bridge
            assert await endpoints.reattach(taps) == ["vt1"]
            assert await endpoints.reattach(taps) == []
            assert await lab.dhcp(vm) == spec.private_ip
            assert await lab.ping(vm, gateway)

            # the CC goes for good: the NC keeps its instance's LAN (its own bridge)...
            await manager.stop()
            assert await endpoints.reattach(taps) == ["vt1"]
            links = await read_links(lab.runner, ns)
            assert links["vt1"].master == "eubr1000" and links["euvx1000"].master == "eubr1000"
            # ...and a CC coming back takes that bridge as it is
            manager = ManagedNetwork(config)
            await manager.adopt([FoundEndpoint(iid, url, spec)])
            await manager.start()
            assert await endpoints.reattach(taps) == []
            assert await lab.dhcp(vm) == spec.private_ip
            assert await lab.ping(vm, gateway)
        finally:
            await manager.stop()


# --------------------------------------------------------------------------- the CC process


class CcProcess:
    """``eucalypt serve cc`` as its own process (stderr to a file), stopped by PID."""

    def __init__(self, config: Config, log: Path) -> None:
        self.config, self.log = config, log
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.log.open("ab") as err:
            self.proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "eucalypt",
                    "serve",
                    "cc",
                    "--config",
                    str(self.config.config_path),
                ],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=err,
            )
        try:
            wait_http(f"{self.config.cc.url}/healthz", timeout=30)
        except TimeoutError:
            raise AssertionError(self.log.read_text()[-3000:]) from None

    def signal(self, sig: int) -> None:
        assert self.proc is not None
        self.proc.send_signal(sig)
        self.proc.wait(timeout=30)
        self.proc = None

    def close(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.signal(signal.SIGKILL)


@run_async
async def test_a_cc_process_killed_and_started_again_keeps_its_instances_network() -> None:
    """Real processes: a CC killed with SIGKILL; the next one polls the NC (sim driver)
    before its first sync, which finds the host as it should be and changes nothing:
    the bridge is the same device, the rules are the same lines, dnsmasq runs on."""
    async with Lab() as lab:
        ns = await lab.netns("proc")
        nc_port = free_port()
        state_dir = lab.dir / "net"
        config = Config(
            data_dir=lab.dir / "data",
            cc=CcConfig(
                port=free_port(),
                nodes=[f"http://127.0.0.1:{nc_port}"],
                poll_seconds=0.5,
                network_mode="MANAGED",
                network_netns=ns,
                network_state_dir=str(state_dir),
            ),
            nc=NcConfig(port=nc_port, hypervisor="sim", monitor_seconds=0.5),
        )
        keys = ComponentKeys.generate(config.keys_dir)
        config.save()
        clc = keys.credential("clc")
        iid = "i-0000cafe"
        ssh = [IngressRule(protocol="tcp", from_port=22, to_port=22, cidr="0.0.0.0/0")]

        async def cc_call(fn: Callable[[CcClient], Awaitable[T]]) -> T:
            client = CcClient(config.cc.url, clc, region=config.region, timeout=30)
            try:
                return await fn(client)
            finally:
                await client.aclose()

        async def push_group() -> None:
            await cc_call(
                lambda c: c.ensure_network(EnsureNetworkRequest(group_id="sg-1", owner_id=OWNER))
            )
            await cc_call(
                lambda c: c.set_ingress_rules(SetIngressRulesRequest(group_id="sg-1", rules=ssh))
            )

        async def host() -> tuple[int, list[str], list[str], dict[str, str], str]:
            """The bridge (as a device: its ifindex), our rules, dnsmasq's pid and leases."""
            out = (await lab.sh(ns, "ip", "-j", "addr", "show", "dev", "eubr1000")).stdout
            bridge = json.loads(out)[0]
            addrs = [a["local"] for a in bridge["addr_info"] if a["family"] == "inet"]
            saved = (await lab.sh(ns, "iptables-save")).stdout
            rules = [line for line in saved.splitlines() if "EUCA" in line]
            return bridge["ifindex"], addrs, rules, dnsmasq_pids(state_dir), lease()

        def lease() -> str:
            return (state_dir / "eubr1000.hosts").read_text()

        cc = CcProcess(config, lab.dir / "cc.err")
        try:
            with serve_in_thread(create_nc(config), nc_port):
                cc.start()
                await push_group()
                spec = launch_spec(iid, "sg-1", OWNER)
                reply = await cc_call(
                    lambda c: c.run_instances(RunInstancesRequest(instances=[spec]))
                )
                result = reply.results[0]
                assert result.ok and result.instance, result.error_message
                net = result.instance.network
                assert net.network_id == "sg-1" and net.private_ip
                before = await host()
                assert before[1] == ["10.128.0.1"] and f"{net.mac},{net.private_ip}" in lease()
                assert any("--dport 22 -j ACCEPT" in line for line in before[2])

                cc.signal(signal.SIGKILL)
                cc.start()  # healthy = its lifespan (poll, adopt, first sync) is done
                assert await host() == before
                shown = await cc_call(lambda c: c.describe_networks())
                assert shown.networks == []  # so the CLC pushes the group again
                await push_group()
                assert await host() == before
                shown = await cc_call(lambda c: c.describe_networks())
                assert [i.instance_id for i in shown.networks[0].instances] == [iid]

                done = await cc_call(lambda c: c.terminate_instances([iid]))
                assert done.instances[0].instance.state == InstanceState.TERMINATED
                links = await read_links(lab.runner, ns)
                assert not [n for n in links if n.startswith(("eubr", "euvx"))]
                cc.signal(signal.SIGTERM)
            assert "EUCA" not in (await lab.sh(ns, "iptables-save")).stdout
            assert await lab.pids_in(ns) == []
        finally:
            cc.close()


# --------------------------------------------------------------------------- a real guest


@pytest.mark.slow
def test_a_guest_keeps_ssh_through_cc_kill_and_restart(
    tmp_path: Path,
    walrus: tuple[ImageServer, BootImages],  # noqa: F811
    nc_cache_dir: Path,  # noqa: F811
    vm_reaper: list[Path],  # noqa: F811
) -> None:
    """The single-host cloud (CC and NC share one namespace) with a real guest reached
    by ssh on its public address: a SIGKILLed CC is replaced without the guest noticing;
    after a clean CC stop (its bridge goes, the guest's tap is left off it) the NC's
    monitor and the next CC, with the CLC's re-push, bring ssh back."""
    for tool in ("qemu-system-x86_64", "qemu-img", "ssh", "ssh-keygen"):
        if shutil.which(tool) is None:
            pytest.skip(f"needs {tool}")
    _, images = walrus
    tag = secrets.token_hex(3)
    config = single_host_config(tmp_path / "data", nc_cache_dir, tag)
    ns = config.nc.netns
    vm_reaper.append(Path(config.nc.instances_dir))
    key = tmp_path / "id_ed25519"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    iid, public_ip = new_id(), "198.51.100.145"
    md = MetadataService(iid, key.with_suffix(".pub").read_text())
    config.cc.metadata_upstream = md.url
    config.save()
    clc = ComponentKeys.load(config.keys_dir).credential("clc")
    rule = IngressRule(protocol="tcp", from_port=22, to_port=22, cidr="0.0.0.0/0")
    owner = "000000000001"

    def cc_call(fn: Callable[[CcClient], Awaitable[T]]) -> T:
        async def go() -> T:
            client = CcClient(config.cc.url, clc, region=config.region, timeout=60)
            try:
                return await fn(client)
            finally:
                await client.aclose()

        return asyncio.run(go())

    def clc_push() -> None:
        """What the CLC's reconciliation sends a CC that lacks the group and mapping."""
        cc_call(lambda c: _launch_group(c, "sg-ssh", owner, rule))
        req = AssignAddressRequest(instance_id=iid, public_ip=public_ip)
        cc_call(lambda c: c.assign_address(req))

    def ssh_ok(timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while True:
            out = ssh(key, public_ip, "hostname")
            if out.returncode == 0 and out.stdout.strip() == iid:
                return True
            if time.monotonic() > deadline:
                return False
            time.sleep(1)

    def bridge() -> tuple[int, str | None]:
        links = ns_links(ns)
        return links["eubr1000"]["ifindex"], links[tap].get("master")

    cc = CcProcess(config, tmp_path / "cc.err")
    try:
        with cleanup_single_host(config):
            with serve_in_thread(create_nc(config), config.nc.port) as nc_url:
                cc.start()
                nc = Nc(nc_url, config)
                launch = LaunchSpec(
                    instance_id=iid, owner_id=owner, vm=VM, images=images,
                    network=InstanceNetworkRequest(network="sg-ssh", owner_id=owner),
                )  # fmt: skip
                result = cc_call(lambda c: _launch(c, launch, rule))
                assert result.ok, result.error_message
                info = nc.wait_state(iid, {S.RUNNING, S.TERMINATED}, timeout=300)
                assert info.state == S.RUNNING and info.tap, info.reason
                tap = info.tap
                wait_console(lambda: nc.console(iid), READY)
                req = AssignAddressRequest(instance_id=iid, public_ip=public_ip)
                cc_call(lambda c: c.assign_address(req))
                assert ssh_ok(60)
                before = bridge()
                assert before[1] == "eubr1000"

                # SIGKILL: the next CC finds everything in place and keeps it
                cc.signal(signal.SIGKILL)
                assert ssh_ok(0)  # no CC at all: the data plane carries on
                cc.start()
                assert bridge() == before and ssh_ok(0)
                clc_push()
                assert bridge() == before and ssh_ok(0)

                # a clean stop takes the CC's bridge (and the public address) away
                cc.signal(signal.SIGTERM)
                assert not ssh_ok(0)
                cc.start()
                clc_push()
                assert ssh_ok(30)  # the NC's monitor put the tap back on the bridge
                assert bridge()[1] == "eubr1000"
                console = nc.console(iid)
                assert console.count(READY) == 1  # the guest never rebooted

                done = cc_call(lambda c: c.terminate_instances([iid]))
                assert done.instances[0].instance.state == S.TERMINATED
                cc.signal(signal.SIGTERM)
            assert not [n for n in ns_links(ns) if n.startswith(("eubr", "euvx", "tap"))]
    finally:
        cc.close()
        md.close()


async def _launch_group(cc: CcClient, group: str, owner: str, rule: IngressRule) -> None:
    await cc.ensure_network(EnsureNetworkRequest(group_id=group, owner_id=owner))
    await cc.set_ingress_rules(SetIngressRulesRequest(group_id=group, rules=[rule]))
