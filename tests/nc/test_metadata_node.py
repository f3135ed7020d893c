"""SYSTEM-mode metadata served by the node (eucalypt.nc.metadata), in namespaces.

The test builds a site and a node out of network namespaces::

    site ── lan0 ═ up0 ── eucabr0 (node, 10.78.0.2/24) ── tap<id1> ═ eth0  instance 1
    10.78.0.1/24                                       ╚─ tap<id2> ═ eth0  instance 2
    router + the site's dnsmasq (fixed leases)

The instances are namespaces whose ``eth0`` carries the MAC the CC chose and
whose veth peer on the node is named and plugged like the NC's tap. Each gets
its address from the SITE's DHCP and routes through the SITE's router: the
node's only part is its nftables tables and its metadata proxy, which forwards
to a stand-in for the CLC's metadata service (on loopback, in the test's own
namespace) that echoes the instance id and address it was told.
"""

from __future__ import annotations

import json
import logging
import sys

import pytest

from eucalypt.nc.api import NetworkSpec
from eucalypt.nc.endpoint import tap_name
from eucalypt.nc.metadata import Guarded, NodeMetadata, metadata_tables, table_name
from eucalypt.net import nftables
from eucalypt.net.dnsmasq import DhcpHost, DhcpRange, Dnsmasq
from eucalypt.net.runner import RecordingRunner
from eucalypt.rpc import ComponentKeys
from tests.cc.network.topology import metadata_upstream
from tests.net.helpers import Lab, needs_root, run_async
from tests.support.servers import free_port

pytestmark = [pytest.mark.netns, needs_root]

BRIDGE = "eucabr0"
ROUTER, NODE_IP = "10.78.0.1", "10.78.0.2"
ID1, ID2 = "i-0000a001", "i-0000a002"
MAC1, MAC2 = "d0:0d:7e:00:00:01", "d0:0d:7e:00:00:02"
LEASES = {MAC1: "10.78.0.11", MAC2: "10.78.0.12"}
MD_URL = "http://169.254.169.254/latest/meta-data/instance-id"


def spec(mac: str) -> NetworkSpec:
    return NetworkSpec(mode="bridge", mac=mac, bridge=BRIDGE, node_metadata=True)


async def site_and_node(lab: Lab, *, node_address: bool = True) -> tuple[str, str]:
    """The site (router, DHCP) and the node with the site bridge (with an address)."""
    site = await lab.netns("site")
    node = await lab.netns("node")
    await lab.sh(node, "ip", "link", "add", BRIDGE, "type", "bridge")
    await lab.sh(node, "ip", "link", "set", BRIDGE, "up")
    if node_address:
        await lab.sh(node, "ip", "addr", "add", f"{NODE_IP}/24", "dev", BRIDGE)
    await lab.link(site, "lan0", node, "up0", addr_a=f"{ROUTER}/24")
    await lab.sh(node, "ip", "link", "set", "up0", "master", BRIDGE)
    return site, node


async def instance(lab: Lab, node: str, instance_id: str, mac: str) -> str:
    """A namespace standing in for the VM: eth0 with ``mac``, its peer the NC's tap."""
    ns = await lab.netns(instance_id.removeprefix("i-"))
    tap = tap_name(instance_id)
    await lab.link(ns, "eth0", node, tap)
    await lab.sh(ns, "ip", "link", "set", "eth0", "down")
    await lab.sh(ns, "ip", "link", "set", "eth0", "address", mac)
    await lab.sh(ns, "ip", "link", "set", "eth0", "up")
    await lab.sh(node, "ip", "link", "set", tap, "master", BRIDGE)
    return ns


async def get(lab: Lab, ns: str, url: str = MD_URL, **headers: str) -> dict[str, object] | None:
    """GET ``url`` from ``ns`` with ``headers``: the echoed JSON, or None (no answer)."""
    code = (
        "import json,sys,urllib.request as u\n"
        "o=u.build_opener(u.ProxyHandler({}))\n"
        "r=u.Request(sys.argv[1],headers=json.loads(sys.argv[2]))\n"
        "sys.stdout.write(o.open(r,timeout=4).read().decode())\n"
    )
    res = await lab.sh(ns, sys.executable, "-c", code, url, json.dumps(headers), check=False)
    return json.loads(res.stdout) if res.returncode == 0 else None


async def tables(lab: Lab, node: str) -> str:
    return (await lab.sh(node, "nft", "list", "tables")).stdout


@run_async
async def test_node_serves_each_instance_its_own_metadata() -> None:
    with metadata_upstream() as upstream:
        async with Lab() as lab:
            cred = ComponentKeys.generate(lab.dir / "keys").credential("nc")
            site, node = await site_and_node(lab)
            dhcp = Dnsmasq(lab.runner, "lan0", lab.dir / "site-dhcp", site)
            await dhcp.ensure(
                [DhcpRange("site", "10.78.0.0/24", ROUTER)],
                [DhcpHost(m, ip) for m, ip in LEASES.items()],
            )
            vm1 = await instance(lab, node, ID1, MAC1)
            vm2 = await instance(lab, node, ID2, MAC2)
            assert await lab.dhcp(vm1) == LEASES[MAC1]
            assert await lab.dhcp(vm2) == LEASES[MAC2]
            assert await lab.ping(vm1, ROUTER)  # the site's router, through the node's bridge

            # Before the NC takes part, nothing answers 169.254.169.254 (the router has no IMDS).
            assert await get(lab, vm1) is None

            port = free_port()
            runner = RecordingRunner()
            md = NodeMetadata(
                port=port, upstream=upstream, credential=cred, netns=node, runner=runner
            )
            try:
                await md.add(ID1, tap_name(ID1), spec(MAC1))
                await md.add(ID2, tap_name(ID2), spec(MAC2))

                # Each instance gets its own id, by the MAC behind its address.
                for vm, iid, mac in ((vm1, ID1, MAC1), (vm2, ID2, MAC2)):
                    got = await get(lab, vm)
                    assert got is not None
                    assert got == {
                        "path": "/latest/meta-data/instance-id",
                        "instance_id": iid,
                        "instance_ip": LEASES[mac],
                        "signed": True,
                    }
                # A header sent by the guest is ignored: still its own id.
                spoof = await get(lab, vm1, **{"X-Eucalypt-Instance-Id": ID2})
                assert spoof is not None and spoof["instance_id"] == ID1

                # The proxy port takes only what the bridge handed up: not a site host,
                # nor an instance connecting to the node's address directly.
                assert not await lab.connects(site, NODE_IP, port)
                assert not await lab.connects(vm1, NODE_IP, port)

                # What the node holds, read back: both taps pinned and redirected.
                name = table_name(port)
                bridge_rules = (await lab.sh(node, "nft", "list", "table", "bridge", name)).stdout
                for iid, mac in ((ID1, MAC1), (ID2, MAC2)):
                    tap = tap_name(iid)
                    assert f'iifname "{tap}" ether saddr != {mac} drop' in bridge_rules
                    assert f'iifname "{tap}" arp saddr ether != {mac} drop' in bridge_rules
                ip_rules = (await lab.sh(node, "nft", "list", "table", "ip", name)).stdout
                assert f"redirect to :{port}" in ip_rules

                # Applying again changes nothing (only read-only commands run).
                runner.clear()
                await md.sync()
                assert runner.changes == []
                assert runner.commands  # it did look

                # Instance 1 takes instance 2's MAC: its frames are dropped, and it
                # never gets instance 2's metadata.
                await lab.sh(vm1, "ip", "link", "set", "eth0", "address", MAC2)
                assert await get(lab, vm1) is None
                await lab.sh(vm1, "ip", "link", "set", "eth0", "address", MAC1)
                # Instance 1 takes instance 2's address: the node's replies go to MAC2
                # (instance 2, which resets them) or, once the node learns MAC1 for it,
                # instance 1 is answered as itself. Never as instance 2.
                await lab.sh(vm1, "ip", "addr", "flush", "dev", "eth0")
                await lab.sh(vm1, "ip", "addr", "add", f"{LEASES[MAC2]}/24", "dev", "eth0")
                await lab.sh(vm1, "ip", "route", "add", "default", "via", ROUTER)
                taken = await get(lab, vm1)
                assert taken is None or taken["instance_id"] == ID1, taken
                await lab.sh(vm1, "ip", "addr", "flush", "dev", "eth0")
                await lab.sh(vm2, "ip", "addr", "flush", "dev", "eth0")
                await lab.sh(node, "ip", "neigh", "flush", "dev", BRIDGE)
                assert await lab.dhcp(vm1) == LEASES[MAC1]
                assert await lab.dhcp(vm2) == LEASES[MAC2]

                # Terminate instance 1: its rules go, instance 2 keeps its metadata.
                await md.remove(ID1)
                after = (await lab.sh(node, "nft", "list", "table", "bridge", name)).stdout
                assert tap_name(ID1) not in after and tap_name(ID2) in after
                assert await get(lab, vm1) is None  # to the site's router, which has no IMDS
                got2 = await get(lab, vm2)
                assert got2 is not None and got2["instance_id"] == ID2

                # An NC restart: the old NC went without cleaning up; the new one adopts
                # instance 2 only, and its tables are exactly the old ones.
                md._serving = False  # the old proxy's socket stays until it stops below
                await md.proxy.stop()
                restarted = NodeMetadata(port=port, upstream=upstream, credential=cred, netns=node)
                await restarted.adopt([(ID2, tap_name(ID2), spec(MAC2))])
                assert (await lab.sh(node, "nft", "list", "table", "bridge", name)).stdout == after
                got2 = await get(lab, vm2)
                assert got2 is not None and got2["instance_id"] == ID2

                # Terminate the last: nothing of ours is left, the proxy is gone.
                await restarted.remove(ID2)
                assert name not in await tables(lab, node)
                assert not await lab.connects(node, "127.0.0.1", port)
                assert await get(lab, vm2) is None
                assert await lab.ping(vm2, ROUTER)  # the site's network is untouched
                await restarted.close()
            finally:
                await md.close()
            assert name not in await tables(lab, node)
            await dhcp.stop()


@run_async
async def test_shutdown_removes_the_tables_and_a_bare_bridge_is_reported(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with metadata_upstream() as upstream:
        async with Lab() as lab:
            _, node = await site_and_node(lab, node_address=False)
            await instance(lab, node, ID1, MAC1)
            port = free_port()
            md = NodeMetadata(port=port, upstream=upstream, netns=node)
            with caplog.at_level(logging.WARNING, logger="eucalypt.nc.metadata"):
                await md.add(ID1, tap_name(ID1), spec(MAC1))
            assert any(
                "no IPv4 address" in r.getMessage() and getattr(r, "bridge", "") == BRIDGE
                for r in caplog.records
            ), caplog.records
            assert table_name(port) in await tables(lab, node)
            await md.close()  # NC shutdown
            assert table_name(port) not in await tables(lab, node)
            assert not await lab.connects(node, "127.0.0.1", port)


def test_render_matches_what_nft_lists() -> None:
    """The rendering is nft's own listing (so the read-back comparison is textual)."""
    state = metadata_tables(
        [Guarded(ID1, "tapa001", MAC1.upper(), BRIDGE)],
        {BRIDGE: "aa:bb:cc:dd:ee:ff"},
        8780,
    )
    text = nftables.render(state)
    assert "ether saddr != d0:0d:7e:00:00:01 drop" in text  # MACs as nft prints them
    assert (
        'iifname "tapa001" ip daddr 169.254.169.254 tcp dport 80 meta mark set 0x45554d44 '
        "ether daddr set aa:bb:cc:dd:ee:ff meta pkttype set host"
    ) in text
    assert 'iifname "eucabr0" meta mark 0x45554d44 ip daddr 169.254.169.254 tcp dport 80 ' in text
    assert metadata_tables([], {}, 8780).tables == ()
