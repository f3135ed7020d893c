"""dnsmasq with fixed leases, a node's bridge + VXLAN, sockets inside a namespace."""

from __future__ import annotations

import pytest

from eucalypt.net.dnsmasq import DhcpHost, DhcpRange, Dnsmasq
from eucalypt.net.links import read_fdb_peers, read_links
from eucalypt.net.netns import socket_in_netns
from eucalypt.net.node import NodeNetwork, ensure_node_network, release_node_network
from eucalypt.net.runner import RecordingRunner
from tests.net.helpers import Lab, needs_root, run_async

pytestmark = [pytest.mark.netns, needs_root]

M1, M2, M3 = "d0:0d:00:00:00:01", "d0:0d:00:00:00:02", "d0:0d:00:00:00:03"


@run_async
async def test_dnsmasq_hands_out_only_the_fixed_leases() -> None:
    async with Lab() as lab:
        srv = await lab.netns("srv")
        await lab.sh(srv, "ip", "link", "add", "br0", "type", "bridge")
        await lab.sh(srv, "ip", "addr", "add", "10.50.0.1/24", "dev", "br0")
        await lab.sh(srv, "ip", "link", "set", "br0", "up")
        vm1 = await lab.instance("vm1", srv, "br0", M1)
        vm2 = await lab.instance("vm2", srv, "br0", M2)
        vm3 = await lab.instance("vm3", srv, "br0", M3)

        dhcp = Dnsmasq(lab.runner, "br0", lab.dir / "dhcp", srv)
        ranges = [DhcpRange("n0", "10.50.0.0/24", "10.50.0.1", 1450)]
        await dhcp.ensure(ranges, [DhcpHost(M1, "10.50.0.7")])
        pid = dhcp.pid()
        assert pid is not None
        assert await lab.dhcp(vm1) == "10.50.0.7"
        assert await lab.dhcp(vm2) is None  # not listed: no lease

        # a new lease: same process, re-read on SIGHUP
        await dhcp.ensure(ranges, [DhcpHost(M1, "10.50.0.7"), DhcpHost(M2, "10.50.0.9")])
        assert dhcp.pid() == pid
        assert await lab.dhcp(vm2) == "10.50.0.9"
        route = (await lab.sh(vm2, "ip", "route", "show", "default")).stdout
        assert "via 10.50.0.1" in route
        assert await lab.dhcp(vm3) is None

        await dhcp.stop()
        assert dhcp.pid() is None
        assert pid not in await lab.pids_in(srv)


@run_async
async def test_node_network_links_nodes_over_vxlan() -> None:
    async with Lab() as lab:
        sw = await lab.netns("sw")
        await lab.sh(sw, "ip", "link", "add", "lan", "type", "bridge")
        await lab.sh(sw, "ip", "link", "set", "lan", "up")
        nodes = {}
        for i in (1, 2):
            ns = await lab.netns(f"nc{i}")
            await lab.link(ns, "eth0", sw, f"p{i}", addr_a=f"192.168.77.{10 + i}/24")
            await lab.sh(sw, "ip", "link", "set", f"p{i}", "master", "lan")
            nodes[i] = ns
        net1 = NodeNetwork(bridge="eubr4000", vni=4000, peers=("192.168.77.12",))
        net2 = NodeNetwork(bridge="eubr4000", vni=4000, peers=("192.168.77.11",))
        await ensure_node_network(lab.runner, net1, nodes[1])
        await ensure_node_network(lab.runner, net2, nodes[2])
        rec = RecordingRunner(lab.runner)
        await ensure_node_network(rec, net1, nodes[1])
        assert rec.changes == []

        a = await lab.instance("a", nodes[1], "eubr4000", M1)
        b = await lab.instance("b", nodes[2], "eubr4000", M2)
        await lab.sh(a, "ip", "addr", "add", "10.70.0.2/24", "dev", "eth0")
        await lab.sh(b, "ip", "addr", "add", "10.70.0.3/24", "dev", "eth0")
        assert await lab.ping(a, "10.70.0.3")

        # the peer list converges
        await ensure_node_network(lab.runner, NodeNetwork("eubr4000", 4000, ()), nodes[1])
        assert await read_fdb_peers(lab.runner, "euvx4000", nodes[1]) == set()
        await ensure_node_network(lab.runner, net1, nodes[1])

        # in use: kept; empty: removed
        assert not await release_node_network(lab.runner, net1, nodes[1])
        await lab.sh(nodes[1], "ip", "link", "del", "vt1")
        assert await release_node_network(lab.runner, net1, nodes[1])
        links = await read_links(lab.runner, nodes[1])
        assert "eubr4000" not in links and "euvx4000" not in links


@run_async
async def test_socket_in_netns_listens_inside_the_namespace() -> None:
    async with Lab() as lab:
        ns = await lab.netns("sock")
        sock = socket_in_netns(ns, "127.0.0.1", 9999)
        try:
            assert await lab.connects(ns, "127.0.0.1", 9999)
        finally:
            sock.close()
