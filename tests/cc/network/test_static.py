"""STATIC mode: the listed MAC/IP pairs are handed out by DHCP and taken back."""

from __future__ import annotations

import json

import pytest

from eucalypt.cc.network.errors import NoFreeAddress
from eucalypt.cc.network.static import StaticNetwork
from eucalypt.config import CcConfig, Config
from tests.cc.network.topology import launch_spec, metadata_upstream
from tests.net.helpers import Lab, needs_root, run_async
from tests.support.servers import free_port

pytestmark = [pytest.mark.netns, needs_root]

PAIRS = {"d0:0d:5a:00:00:10": "10.77.0.10", "d0:0d:5a:00:00:11": "10.77.0.11"}


@run_async
async def test_static_pairs_are_handed_out_and_reclaimed() -> None:
    with metadata_upstream() as upstream:
        async with Lab() as lab:
            cc = await lab.netns("scc")
            nc = await lab.netns("snc")
            # the site LAN: a bridge on the CC host and one on the node, joined by a veth
            for ns in (cc, nc):
                await lab.sh(ns, "ip", "link", "add", "eucabr0", "type", "bridge")
                await lab.sh(ns, "ip", "link", "set", "eucabr0", "up")
            await lab.sh(cc, "ip", "addr", "add", "10.77.0.1/24", "dev", "eucabr0")
            await lab.link(cc, "lan0", nc, "lan0")
            await lab.sh(cc, "ip", "link", "set", "lan0", "master", "eucabr0")
            await lab.sh(nc, "ip", "link", "set", "lan0", "master", "eucabr0")
            config = Config(
                data_dir=lab.dir / "static",
                cc=CcConfig(
                    network_mode="STATIC",
                    network_netns=cc,
                    network_state_dir=str(lab.dir / "static-net"),
                    static_pairs=PAIRS,
                    static_subnet="10.77.0.0/24",
                    static_router="10.77.0.1",
                    metadata_upstream=upstream,
                ),
            )
            net = StaticNetwork(config)
            await net.start()
            try:
                node = "http://10.77.0.100:8775"
                s1 = await net.prepare(launch_spec("i-00001", "default"), node)
                s2 = await net.prepare(launch_spec("i-00002", "default"), node)
                assert {(s1.mac, s1.private_ip), (s2.mac, s2.private_ip)} == set(PAIRS.items())
                # the CC is the router (10.77.0.1 is its address): it serves the metadata
                assert not s1.node_metadata and not s2.node_metadata
                with pytest.raises(NoFreeAddress):
                    await net.prepare(launch_spec("i-00003", "default"), node)

                vm1 = await lab.instance("sv1", nc, "eucabr0", s1.mac)
                vm2 = await lab.instance("sv2", nc, "eucabr0", s2.mac)
                assert await lab.dhcp(vm1) == s1.private_ip
                assert await lab.dhcp(vm2) == s2.private_ip

                # the CC is the router: metadata reaches the proxy
                body = await lab.get(vm2, "http://169.254.169.254/latest/meta-data/local-ipv4")
                assert body is not None
                assert json.loads(body)["instance_id"] == "i-00002"

                # terminate: the pair goes back; its MAC gets no lease any more
                await net.release("i-00001")
                await lab.sh(vm1, "ip", "addr", "flush", "dev", "eth0")
                assert await lab.dhcp(vm1, tries=3) is None
                s3 = await net.prepare(launch_spec("i-00003", "default"), node)
                assert (s3.mac, s3.private_ip) == (s1.mac, s1.private_ip)
                assert await lab.dhcp(vm1) == s1.private_ip
            finally:
                await net.stop()
            saved = (await lab.sh(cc, "iptables-save")).stdout
            assert "EUCA" not in saved
            assert await lab.pids_in(cc) == []


@run_async
async def test_static_without_the_cc_as_router_asks_the_nodes_for_metadata() -> None:
    async with Lab() as lab:
        cc = await lab.netns("scc")
        await lab.sh(cc, "ip", "link", "add", "eucabr0", "type", "bridge")
        await lab.sh(cc, "ip", "addr", "add", "10.77.0.5/24", "dev", "eucabr0")
        await lab.sh(cc, "ip", "link", "set", "eucabr0", "up")
        config = Config(
            data_dir=lab.dir / "static",
            cc=CcConfig(
                network_mode="STATIC",
                network_netns=cc,
                network_state_dir=str(lab.dir / "static-net"),
                static_pairs=PAIRS,
                static_subnet="10.77.0.0/24",
                static_router="10.77.0.1",  # the site's router, not the CC
                metadata_port=free_port(),
            ),
        )
        net = StaticNetwork(config)
        await net.start()
        try:
            assert not net.cc_routes
            s1 = await net.prepare(launch_spec("i-00001", "default"), "http://10.77.0.100:8775")
            assert s1.node_metadata and s1.bridge == "eucabr0"
        finally:
            await net.stop()
