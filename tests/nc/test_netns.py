"""The NC with ``nc.netns``: taps, bridges and QEMU inside a network namespace.

The NC's own server stays in the host's namespace; what it plugs instances
into lives in the namespace. The last test is a whole single-host cloud as
``eucalypt.net.local.local_network_defaults`` configures it (with test names):
CC (MANAGED, data plane in the namespace, local uplink) and NC (qemu, taps in
the namespace) on the host's loopback, one real guest that gets its address
from the CC's dnsmasq, its metadata through the CC's proxy, and is reached by
``ssh`` from the host on its public address. Everything is torn down after.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import secrets
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from eucalypt.cc.api import CcClient, InstanceNetworkRequest, LaunchSpec, RunInstancesRequest
from eucalypt.cc.app import create_app as create_cc
from eucalypt.cc.netapi import (
    AssignAddressRequest,
    EnsureNetworkRequest,
    IngressRule,
    SetIngressRulesRequest,
)
from eucalypt.cc.network.managed import ManagedNetwork
from eucalypt.config import CcConfig, Config, NcConfig
from eucalypt.nc.api import BootImages, InstanceState, NetworkSpec
from eucalypt.nc.app import create_app as create_nc
from eucalypt.nc.endpoint import Endpoints
from eucalypt.nc.hypervisors.base import NicSpec
from eucalypt.nc.hypervisors.qemu import QemuDriver
from eucalypt.net.local import (
    local_network_defaults,
    netns_exists,
    runtime_state_dir,
    teardown_local_dataplane,
    uplink_from_config,
)
from eucalypt.net.runner import CommandRunner, RecordingRunner
from eucalypt.rpc import ComponentKeys
from tests.cc.network.topology import launch_spec
from tests.nc.conftest import ImageServer, Nc
from tests.nc.test_qemu_driver import spec as domain_spec
from tests.nc.test_qemu_vm import (  # noqa: F401  (fixtures)
    READY,
    VM,
    alive,
    guest,
    nc_cache_dir,
    new_id,
    qemu_pids,
    ready_line,
    vm_reaper,
    wait_console,
    walrus,
)
from tests.net.helpers import Lab, needs_root, run_async
from tests.support.servers import free_port, serve_in_thread

S = InstanceState


def ns_links(netns: str) -> dict[str, dict[str, Any]]:
    out = subprocess.run(
        ["ip", "-n", netns, "-d", "-j", "link", "show"], capture_output=True, text=True, check=True
    ).stdout
    return {link["ifname"]: link for link in json.loads(out)}


def host_links() -> set[str]:
    out = subprocess.run(["ip", "-j", "link", "show"], capture_output=True, text=True, check=True)
    return {link["ifname"] for link in json.loads(out.stdout)}


# --------------------------------------------------------------------------- command line


def test_qemu_runs_tap_domains_inside_the_netns(tmp_path: Path) -> None:
    if shutil.which("qemu-system-x86_64") is None:
        pytest.skip("no qemu")
    driver = QemuDriver(accel="tcg", probe_dir=tmp_path, netns="eucalypt")
    tap = NicSpec(mac="d0:0d:00:00:ca:fe", kind="tap", tap="tap0000cafe")
    argv = driver.command(domain_spec(tmp_path, tap), "tcg")
    assert argv[:4] == ["ip", "netns", "exec", "eucalypt"] and "qemu" in Path(argv[4]).name
    for kind in ("user", "none"):  # not on the namespace's network: stays in the NC's
        nic = NicSpec(mac="d0:0d:00:00:ca:fe", kind=kind)  # type: ignore[arg-type]
        assert argv[4] == driver.command(domain_spec(tmp_path, nic), "tcg")[0]
    config = Config(data_dir=tmp_path, nc=NcConfig(netns="eucalypt"))
    assert QemuDriver.from_config(config).netns == "eucalypt"


# --------------------------------------------------------------------------- taps, one netns


@pytest.mark.netns
@needs_root
@run_async
async def test_taps_join_the_ccs_bridge_in_one_netns_without_fighting_it() -> None:
    """CC and NC in one namespace: the CC's bridge eubr<vni> is the NC's; the NC's
    ensure_node_network changes nothing there, its release leaves the CC's bridge."""
    async with Lab() as lab:
        ns = await lab.netns("one")
        config = Config(
            data_dir=lab.dir / "data",
            cc=CcConfig(
                network_mode="MANAGED",
                network_netns=ns,
                network_state_dir=str(lab.dir / "net"),
                nodes=["http://127.0.0.1:8775"],  # on loopback: no VXLAN peers
            ),
        )
        manager = ManagedNetwork(config)
        await manager.start()
        try:
            iid = "i-0000beef"
            spec = await manager.prepare(launch_spec(iid, "sg-1"), config.cc.nodes[0])
            assert spec.bridge == "eubr1000" and spec.vni == 1000 and spec.vxlan_peers == []
            net_rec = RecordingRunner(CommandRunner())
            endpoints = Endpoints(CommandRunner(), net_rec, netns=ns)
            tap = await endpoints.create(iid, spec)
            assert tap == "tap0000beef"
            assert net_rec.changes == [], [c.argv for c in net_rec.changes]  # no fight
            links = ns_links(ns)
            assert links[tap]["master"] == "eubr1000" and "UP" in links[tap]["flags"]
            assert links[tap]["linkinfo"]["info_data"]["type"] == "tap"
            assert links["euvx1000"]["master"] == "eubr1000"
            assert not {tap, "eubr1000", "euvx1000"} & host_links()
            # the CC syncs again: the tap stays on its bridge
            await manager.ensure_network("sg-1", "111122223333", "renamed")
            assert ns_links(ns)[tap]["master"] == "eubr1000"

            await endpoints.delete(tap)
            await endpoints.release(spec)
            links = ns_links(ns)
            assert tap not in links and "eubr1000" in links  # the CC's gateway is on it
            await endpoints.delete(tap)  # twice: already gone
            await manager.release(iid)
            assert "eubr1000" not in ns_links(ns)
        finally:
            await manager.stop()


@pytest.mark.netns
@needs_root
@run_async
async def test_a_missing_netns_means_the_tap_is_gone_and_launches_fail_cleanly() -> None:
    from eucalypt.nc.errors import NetworkSetupError

    endpoints = Endpoints(CommandRunner(), netns=f"eutest-{secrets.token_hex(3)}-none")
    await endpoints.delete("tap0000beef")
    spec = NetworkSpec(mode="bridge", mac="d0:0d:00:00:be:ef", bridge="eubr1000", vni=1000)
    with pytest.raises(NetworkSetupError):
        await endpoints.create("i-0000beef", spec)


# --------------------------------------------------------------------------- a whole cloud


class MetadataService:
    """The CLC's metadata service as the guest needs it (IMDSv1), on 127.0.0.1."""

    def __init__(self, instance_id: str, public_key: str) -> None:
        files = {
            "/latest/meta-data/instance-id": instance_id,
            "/latest/meta-data/public-keys/0/openssh-key": public_key,
        }

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.0"

            def log_message(self, format: str, *args: object) -> None:
                pass

            def _send(self, code: int, body: bytes = b"") -> None:
                self.send_response(code)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_PUT(self) -> None:
                self._send(405)

            def do_GET(self) -> None:
                body = files.get(self.path)
                self._send(404) if body is None else self._send(200, body.encode())

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def single_host_config(data_dir: Path, cache_dir: Path, tag: str) -> Config:
    """``local_network_defaults`` with this test's own names, ports and addresses."""
    config = Config(data_dir=data_dir)
    local_network_defaults(config)
    ns = f"eutest-{tag}"
    config.cc.network_netns = config.nc.netns = ns
    config.cc.local_uplink_interface = f"eut{tag}v"
    config.cc.local_uplink_net = "169.254.202.0/30"
    config.cc.public_ips = ["198.51.100.144/28"]
    config.cc.network_state_dir = str(runtime_state_dir(data_dir))
    config.cc.port = free_port()
    config.cc.poll_seconds = 1.0
    config.nc.port = free_port()
    config.cc.nodes = [config.nc.url]
    config.nc.hypervisor = "qemu"
    config.nc.cache_dir = str(cache_dir)
    config.nc.monitor_seconds = 0.5
    ComponentKeys.generate(config.keys_dir)
    return config


def ssh(key: Path, host: str, command: str) -> subprocess.CompletedProcess[str]:
    argv = ["ssh", "-F", "/dev/null", "-i", str(key), "-o", "BatchMode=yes"]
    argv += ["-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null"]
    argv += ["-o", "ConnectTimeout=10", "-o", "LogLevel=ERROR", f"root@{host}", command]
    return subprocess.run(argv, capture_output=True, text=True, timeout=60)


@contextlib.contextmanager
def cleanup_single_host(config: Config) -> Iterator[None]:
    """Whatever happens: QEMUs and processes left in the namespace killed by PID, the
    uplink and the namespace deleted, dnsmasq's runtime directory removed."""
    ns = config.cc.network_netns
    try:
        yield
    finally:
        for pid in qemu_pids(Path(config.nc.instances_dir)):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        if netns_exists(ns):
            out = subprocess.run(["ip", "netns", "pids", ns], capture_output=True, text=True)
            for left in out.stdout.split():  # dnsmasq/QEMU that this test's CC/NC started
                with contextlib.suppress(ProcessLookupError):
                    os.kill(int(left), signal.SIGKILL)
        asyncio.run(teardown_local_dataplane(CommandRunner(), uplink_from_config(config)))
        state = Path(config.cc.network_state_dir)
        shutil.rmtree(state.parent, ignore_errors=True)
        with contextlib.suppress(OSError):
            state.parent.parent.rmdir()  # /run/eucalypt, when nothing else uses it


@pytest.mark.slow
@pytest.mark.netns
@needs_root
def test_single_host_cloud_guest_gets_dhcp_in_the_netns_and_ssh_from_the_host(
    tmp_path: Path,
    walrus: tuple[ImageServer, BootImages],  # noqa: F811
    nc_cache_dir: Path,  # noqa: F811
    vm_reaper: list[Path],  # noqa: F811
) -> None:
    for tool in ("qemu-system-x86_64", "qemu-img", "ssh", "ssh-keygen"):
        if shutil.which(tool) is None:
            pytest.skip(f"needs {tool}")
    _, images = walrus
    tag = secrets.token_hex(3)
    config = single_host_config(tmp_path / "data", nc_cache_dir, tag)
    ns, uplink = config.nc.netns, uplink_from_config(config)
    vm_reaper.append(Path(config.nc.instances_dir))
    key = tmp_path / "id_ed25519"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    iid, public_ip = new_id(), "198.51.100.145"
    md = MetadataService(iid, key.with_suffix(".pub").read_text())
    config.cc.metadata_upstream = md.url
    clc = ComponentKeys.load(config.keys_dir).credential("clc")

    async def cc_call(fn: Any) -> Any:
        client = CcClient(config.cc.url, clc, region=config.region, timeout=60)
        try:
            return await fn(client)
        finally:
            await client.aclose()

    try:
        with cleanup_single_host(config):
            with (
                serve_in_thread(create_nc(config), config.nc.port) as nc_url,
                serve_in_thread(create_cc(config), config.cc.port),
            ):
                assert netns_exists(ns) and uplink.host_end in host_links()
                nc = Nc(nc_url, config)
                rule = IngressRule(protocol="tcp", from_port=22, to_port=22, cidr="0.0.0.0/0")
                owner = "000000000001"
                launch = LaunchSpec(
                    instance_id=iid, owner_id=owner, vm=VM, images=images,
                    network=InstanceNetworkRequest(network="sg-ssh", owner_id=owner),
                )  # fmt: skip
                t0 = time.monotonic()
                result = asyncio.run(cc_call(lambda c: _launch(c, launch, rule)))
                assert result.ok, result.error_message
                info = nc.wait_state(iid, {S.RUNNING, S.TERMINATED}, timeout=300)
                assert info.state == S.RUNNING and info.pid is not None, info.reason

                # QEMU itself (not `ip`) is the recorded pid, and it runs in the namespace
                cmdline = Path(f"/proc/{info.pid}/cmdline").read_bytes().split(b"\0")
                assert b"qemu" in Path(cmdline[0].decode()).name.encode()
                in_ns = os.stat(f"/proc/{info.pid}/ns/net").st_ino
                assert in_ns == os.stat(f"/var/run/netns/{ns}").st_ino
                assert in_ns != os.stat("/proc/self/ns/net").st_ino
                tap = info.tap
                assert tap is not None
                link = ns_links(ns)[tap]
                assert link["master"] == "eubr1000" and "UP" in link["flags"]
                assert tap not in host_links()

                console, took = wait_console(lambda: nc.console(iid), READY)
                line = ready_line(console)
                assert f"instance-id={iid}" in line and "ip=10.128.0." in line, line
                print(
                    f"\n[single host] RunInstances -> {READY} {time.monotonic() - t0:.1f} s "
                    f"(running -> {READY} {took:.1f} s)"
                )

                asyncio.run(
                    cc_call(
                        lambda c: c.assign_address(
                            AssignAddressRequest(instance_id=iid, public_ip=public_ip)
                        )
                    )
                )
                deadline, out = time.monotonic() + 60, None
                while time.monotonic() < deadline:
                    out = ssh(key, public_ip, "hostname")
                    if out.returncode == 0:
                        break
                    time.sleep(2)
                assert out is not None and out.returncode == 0, out and out.stderr
                assert out.stdout.strip() == iid

                done = asyncio.run(cc_call(lambda c: c.terminate_instances([iid])))
                assert done.instances[0].instance.state == S.TERMINATED
                assert not alive(info.pid)
                assert tap not in ns_links(ns)
            # the CC stopped: its bridges, dnsmasq and public addresses are gone
            assert not [n for n in ns_links(ns) if n.startswith(("eubr", "euvx", "tap"))]
            asyncio.run(teardown_local_dataplane(CommandRunner(), uplink))
            assert not netns_exists(ns) and uplink.host_end not in host_links()
            routes = subprocess.run(
                ["ip", "-j", "route", "show", "198.51.100.144/28"],
                capture_output=True, text=True, check=True,
            ).stdout  # fmt: skip
            assert json.loads(routes) == []
    finally:
        md.close()


async def _launch(cc: CcClient, launch: LaunchSpec, rule: IngressRule) -> Any:
    group = launch.network.network
    await cc.ensure_network(EnsureNetworkRequest(group_id=group, owner_id=launch.owner_id))
    await cc.set_ingress_rules(SetIngressRulesRequest(group_id=group, rules=[rule]))
    reply = await cc.run_instances(RunInstancesRequest(instances=[launch]))
    return reply.results[0]
