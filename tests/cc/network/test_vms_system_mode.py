"""SYSTEM mode with a real guest VM: its metadata comes from the NODE, not the CC.

The test builds a site and a node out of network namespaces::

    site ── lan0 ═ up0 ── eucabr0 (node, 10.79.0.2/24) ── tap<id> ── QEMU guest
    10.79.0.1/24: the site's router and DHCP (dnsmasq)

and runs the real services: the CC app in SYSTEM mode (``cc.bridge`` =
eucabr0: it only picks the MAC) and an NC app (qemu; taps and QEMU in the
node's namespace). The site's dnsmasq leases the guest its address and router;
neither the CC nor the site answers 169.254.169.254. The guest's init reads
its instance id and SSH key from http://169.254.169.254 at boot, which only
works if the NC intercepts it on the bridge (eucalypt.nc.metadata) and its
proxy forwards it, signed with the NC's key, to the stand-in for the CLC's
metadata service (which answers nothing else). The test then

* reads the guest's READY line (instance-id from IMDS, address from the site)
  and logs into it with the key it got from IMDS;
* fetches its instance id inside the guest, also with a forged
  ``X-Eucalypt-Instance-Id`` header (ignored);
* stops the NC (the guest keeps running): the node's tables go; starts a new NC,
  which adopts the guest and puts them back; the guest reads its metadata again;
* terminates through the CC: no table, tap or proxy of the NC is left.

Everything stays inside the namespaces (and 127.0.0.1); torn down after.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TypeVar

import pytest

from eucalypt.cc.api import CcClient, InstanceNetworkRequest, LaunchSpec, RunInstancesRequest
from eucalypt.cc.app import create_app as create_cc
from eucalypt.cc.network.base import instance_mac
from eucalypt.config import CcConfig, Config, NcConfig
from eucalypt.nc.api import BootImages, InstanceState
from eucalypt.nc.app import create_app as create_nc
from eucalypt.nc.endpoint import tap_name
from eucalypt.nc.metadata import table_name
from eucalypt.net.dnsmasq import DhcpHost, DhcpRange, Dnsmasq
from eucalypt.rpc import ComponentKeys
from tests.cc.network.test_vms_two_nodes import (
    SSH_ERROR,
    MetadataStandIn,
    kill_pid,
    serve_in_thread,
    ssh,
)
from tests.nc.conftest import ImageServer
from tests.nc.test_qemu_vm import (  # noqa: F401  (fixtures)
    READY,
    VM,
    alive,
    guest,
    nc_cache_dir,
    new_id,
    qemu_pids,
    vm_reaper,
    walrus,
)
from tests.net.helpers import Lab, needs_root
from tests.support.servers import free_port

TOOLS = ("qemu-system-x86_64", "qemu-img", "mke2fs", "ssh", "ssh-keygen", "nft", "dnsmasq")

pytestmark = [
    pytest.mark.slow,
    pytest.mark.netns,
    needs_root,
    pytest.mark.skipif(
        any(shutil.which(t) is None for t in TOOLS), reason=f"needs {', '.join(TOOLS)}"
    ),
    pytest.mark.timeout(1800),
]

OWNER = "000000000001"
BRIDGE = "eucabr0"
ROUTER, NODE_IP, GUEST_IP = "10.79.0.1", "10.79.0.2", "10.79.0.50"
BOOT_TIMEOUT = 900.0
_READY_RE = re.compile(rf"^{READY} instance-id=(\S+) ip=(\S+)", re.MULTILINE)
S = InstanceState
T = TypeVar("T")


async def build_site(lab: Lab) -> tuple[str, str]:
    site = await lab.netns("site")
    node = await lab.netns("node")
    await lab.sh(node, "ip", "link", "add", BRIDGE, "type", "bridge")
    await lab.sh(node, "ip", "addr", "add", f"{NODE_IP}/24", "dev", BRIDGE)
    await lab.sh(node, "ip", "link", "set", BRIDGE, "up")
    await lab.link(site, "lan0", node, "up0", addr_a=f"{ROUTER}/24")
    await lab.sh(node, "ip", "link", "set", "up0", "master", BRIDGE)
    return site, node


def cc_call(config: Config, fn: Callable[[CcClient], Awaitable[T]]) -> T:
    """One CC call as the CLC makes it."""
    clc = ComponentKeys.load(config.keys_dir).credential("clc")

    async def go() -> T:
        client = CcClient(config.cc.url, clc, region=config.region, timeout=120)
        try:
            return await fn(client)
        finally:
            await client.aclose()

    return asyncio.run(go())


def node_state(node: str) -> tuple[str, str]:
    """(``nft list tables``, ``ip -o link``) in the node's namespace."""
    tables = subprocess.run(
        ["ip", "netns", "exec", node, "nft", "list", "tables"],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    links = subprocess.run(
        ["ip", "-n", node, "-o", "link"], capture_output=True, text=True, check=True
    ).stdout
    return tables, links


def guest_sh(site: str, key: Path, command: str) -> str:
    """``command`` in the guest over ssh from the site (retried while ssh itself fails)."""
    out = None
    for _ in range(6):
        out = ssh(site, key, GUEST_IP, command)
        if out.returncode != SSH_ERROR:
            break
        time.sleep(3)
    assert out is not None and out.returncode == 0, (command, out and out.stderr)
    return out.stdout.strip()


def test_system_mode_guest_gets_its_metadata_from_the_node(
    tmp_path: Path,
    walrus: tuple[ImageServer, BootImages],  # noqa: F811
    nc_cache_dir: Path,  # noqa: F811
    vm_reaper: list[Path],  # noqa: F811
) -> None:
    _, images = walrus
    lab = Lab()
    md: MetadataStandIn | None = None
    dhcp: Dnsmasq | None = None
    try:
        site, node = asyncio.run(build_site(lab))
        iid = new_id()
        mac = instance_mac(iid)
        # The site's DHCP: the guest's lease and the site's router, nothing of eucalypt's.
        dhcp = Dnsmasq(lab.runner, "lan0", lab.dir / "site-dhcp", site)
        asyncio.run(
            dhcp.ensure([DhcpRange("site", "10.79.0.0/24", ROUTER)], [DhcpHost(mac, GUEST_IP)])
        )
        root = lab.dir / "cloud"
        key = tmp_path / "id_ed25519"
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
        keys = ComponentKeys.generate(Config(data_dir=root).keys_dir)
        # Answers only what the NC's proxy signed with the NC's key.
        md = MetadataStandIn(
            keys.store(["nc"]), key.with_suffix(".pub").read_text(), principal="component:nc"
        )
        nc = NcConfig(
            port=free_port(),
            hypervisor="qemu",
            netns=node,
            instances_dir=str(root / "nc" / "instances"),
            cache_dir=str(nc_cache_dir / "system-node"),
            monitor_seconds=1.0,
            metadata_port=free_port(),
            metadata_upstream=md.url,
        )
        vm_reaper.append(Path(nc.instances_dir))
        config = Config(
            data_dir=root,
            nc=nc,
            cc=CcConfig(
                port=free_port(),
                nodes=[nc.url],
                poll_seconds=1.0,
                network_mode="SYSTEM",
                bridge=BRIDGE,
            ),
        )
        name = table_name(nc.metadata_port)

        with serve_in_thread(create_cc(config), config.cc.port):
            with serve_in_thread(create_nc(config), nc.port):
                launch = LaunchSpec(
                    instance_id=iid, owner_id=OWNER, vm=VM, images=images,
                    network=InstanceNetworkRequest(network="default", owner_id=OWNER),
                )  # fmt: skip
                deadline = time.monotonic() + 30  # until the CC has polled the new NC
                while True:
                    result = cc_call(
                        config, lambda c: c.run_instances(RunInstancesRequest(instances=[launch]))
                    ).results[0]
                    if result.ok or time.monotonic() > deadline:
                        break
                    time.sleep(1)
                assert result.ok, (result.error_code, result.error_message)
                assert result.instance is not None
                assert result.instance.network.node_metadata
                assert result.instance.network.mac == mac

                t0 = time.monotonic()
                while True:
                    console = cc_call(config, lambda c: c.get_console_output(iid)).output
                    found = _READY_RE.findall(console)
                    if found:
                        break
                    assert time.monotonic() - t0 < BOOT_TIMEOUT, console[-3000:]
                    time.sleep(2)
                print(f"\n[system] RunInstances -> {READY} in {time.monotonic() - t0:.0f} s")
                # The id the guest read from 169.254.169.254, the address the site gave.
                assert found[-1] == (iid, GUEST_IP), console[-3000:]
                assert (iid, GUEST_IP) in md.seen
                assert md.refused == 0

                # Its SSH key came from IMDS too: we log in with it.
                assert guest_sh(site, key, "hostname") == iid
                url = "http://169.254.169.254/latest/meta-data/instance-id"
                wget = f"wget -q -O - {url}"
                assert guest_sh(site, key, wget) == iid
                forged = f"wget -q -O - --header 'X-Eucalypt-Instance-Id: i-0000ffff' {url}"
                assert guest_sh(site, key, forged) == iid
                tables, links = node_state(node)
                assert f"table bridge {name}" in tables and f"table ip {name}" in tables
                assert tap_name(iid) in links
                seen = cc_call(config, lambda c: c.describe_instances([iid])).instances[0]
                qemu_pid = seen.instance.pid
                assert qemu_pid is not None and alive(qemu_pid)

            # The NC stopped; the guest runs on, the node's tables are gone.
            tables, _ = node_state(node)
            assert name not in tables
            assert alive(qemu_pid)

            # A new NC adopts the guest and serves its metadata again.
            with serve_in_thread(create_nc(config), nc.port):
                tables, _ = node_state(node)
                assert f"table bridge {name}" in tables and f"table ip {name}" in tables
                assert guest_sh(site, key, wget) == iid
                deadline = time.monotonic() + 60  # the CC sees the node again
                while True:
                    seen = cc_call(config, lambda c: c.describe_instances([iid])).instances[0]
                    if seen.instance.state == S.RUNNING and seen.instance.pid == qemu_pid:
                        break
                    assert time.monotonic() < deadline, seen
                    time.sleep(1)

                done = cc_call(config, lambda c: c.terminate_instances([iid]))
                assert {i.instance.state for i in done.instances} == {S.TERMINATED}
                assert not alive(qemu_pid)
                tables, links = node_state(node)
                assert name not in tables, tables
                assert tap_name(iid) not in links
                assert not lab_connects(node, nc.metadata_port)
    finally:
        if md is not None:
            md.close()
        if dhcp is not None:
            with contextlib.suppress(Exception):
                asyncio.run(dhcp.stop())
        for d in vm_reaper:
            for pid in qemu_pids(d):
                kill_pid(pid)
        asyncio.run(lab.close())


def lab_connects(netns: str, port: int) -> bool:
    probe = "import socket,sys; socket.create_connection(('127.0.0.1', int(sys.argv[1])), 2)"
    argv = ["ip", "netns", "exec", netns, sys.executable, "-c", probe, str(port)]
    return subprocess.run(argv, capture_output=True).returncode == 0
