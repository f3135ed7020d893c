"""MANAGED mode with real packets between namespaces: isolation, rules, public addresses,
metadata, teardown."""

from __future__ import annotations

import json

import pytest

from eucalypt.auth.credentials import Credential
from eucalypt.cc.netapi import IngressRule
from eucalypt.net.links import read_links
from eucalypt.net.runner import RecordingRunner
from tests.cc.network.topology import build_cluster, launch_spec, metadata_upstream
from tests.net.helpers import Lab, needs_root, run_async

pytestmark = [pytest.mark.netns, needs_root]


def tcp_from_group(port: int, group: str) -> IngressRule:
    return IngressRule(protocol="tcp", from_port=port, to_port=port, source_group=group)


@run_async
async def test_groups_are_isolated_until_an_ingress_rule_allows_one_port() -> None:
    async with Lab() as lab:
        cl = await build_cluster(lab)
        try:
            n1, n2 = cl.urls
            a1, _ = await cl.launch("i-000a1", "sg-a", n1)
            a2, ip_a2 = await cl.launch("i-000a2", "sg-a", n2)
            b1, ip_b1 = await cl.launch("i-000b1", "sg-b", n2)
            await lab.serve(a2, 8080, "a2")
            await lab.serve(b1, 8080, "b1")
            await lab.serve(b1, 8081, "b1-other")

            # same group, different nodes: one LAN over VXLAN
            assert await lab.ping(a1, ip_a2)
            assert await lab.tcp(a1, ip_a2, 8080) == "a2"
            # different groups: routed by the CC, denied by default
            assert await lab.tcp(a1, ip_b1, 8080) is None
            assert not await lab.ping(a1, ip_b1)
            # and not on one link either: sg-b's address is not on sg-a's LAN
            nets = cl.manager.describe([]).networks
            assert len({n.vni for n in nets}) == 2 and len({n.subnet for n in nets}) == 2

            await cl.manager.set_ingress_rules("sg-b", [tcp_from_group(8080, "sg-a")])
            assert await lab.tcp(a1, ip_b1, 8080) == "b1"
            assert await lab.tcp(a1, ip_b1, 8081) is None
            assert not await lab.ping(a1, ip_b1)
            assert await lab.tcp(b1, ip_a2, 8080) is None  # sg-a allows nothing in

            # pushing the same rules again changes nothing on the host
            rec = RecordingRunner(cl.manager.plane.runner)
            cl.manager.plane.runner = rec
            await cl.manager.set_ingress_rules("sg-b", [tcp_from_group(8080, "sg-a")])
            assert rec.changes == []

            # revoking cuts the running instances off again
            await cl.manager.set_ingress_rules("sg-b", [])
            assert await lab.tcp(a1, ip_b1, 8080) is None
            assert await lab.tcp(a1, ip_a2, 8080) == "a2"
        finally:
            await cl.manager.stop()


@run_async
async def test_public_address_metadata_and_clean_shutdown() -> None:
    with metadata_upstream() as upstream:
        async with Lab() as lab:
            key = Credential("AKCCTEST", "secret", principal="component:cc")
            cl = await build_cluster(lab, upstream=upstream, credential=key)
            try:
                n1, _ = cl.urls
                assert cl.outside is not None
                a1, ip_a1 = await cl.launch("i-000a1", "sg-a", n1)
                await lab.serve(a1, 8080, "a1")
                await lab.serve(cl.outside, 9090, "@client")
                pub = "198.51.100.10"

                mapping = await cl.manager.assign_address("i-000a1", pub)
                assert mapping.private_ip == ip_a1
                # the address answers, but sg-a lets nothing in yet
                assert await lab.tcp(cl.outside, pub, 8080) is None
                everyone = IngressRule(
                    protocol="tcp", from_port=8080, to_port=8080, cidr="0.0.0.0/0"
                )
                await cl.manager.set_ingress_rules("sg-a", [everyone])
                assert await lab.tcp(cl.outside, pub, 8080) == "a1"
                # outgoing traffic leaves with the public address (SNAT)
                assert await lab.tcp(a1, "198.51.100.2", 9090) == pub

                # metadata: the proxy names the instance to the CLC
                body = await lab.get(a1, "http://169.254.169.254/latest/meta-data/instance-id")
                assert body is not None
                told = json.loads(body)
                assert told["instance_id"] == "i-000a1"
                assert told["instance_ip"] == ip_a1
                assert told["path"] == "/latest/meta-data/instance-id"
                assert told["signed"]  # by the CC's component key

                await cl.manager.unassign_address(pub)
                assert await lab.tcp(cl.outside, pub, 8080) is None
                links = await read_links(lab.runner, cl.cc)
                assert f"{pub}/32" not in links["pub0"].addresses
                # without a public address the instance goes out masqueraded
                assert await lab.tcp(a1, "198.51.100.2", 9090) == "198.51.100.1"

                # terminate: the lease, the address and the network's links go
                await cl.manager.release("i-000a1")
                links = await read_links(lab.runner, cl.cc)
                assert not [n for n in links if n.startswith(("eubr", "euvx"))]
                saved = (await lab.sh(cl.cc, "iptables-save")).stdout
                assert "EUCA-GROUP-" not in saved and ip_a1 not in saved and pub not in saved
            finally:
                await cl.manager.stop()
            # shutdown: no chain, link, address or process of ours is left
            saved = (await lab.sh(cl.cc, "iptables-save")).stdout
            assert "EUCA" not in saved
            links = await read_links(lab.runner, cl.cc)
            assert not [n for n in links if n.startswith(("eubr", "euvx", "eupx"))]
            assert links["pub0"].addresses == {"198.51.100.1/24"}
            assert await lab.pids_in(cl.cc) == []


@run_async
async def test_novlan_isolates_by_subnet_and_iptables() -> None:
    async with Lab() as lab:
        cl = await build_cluster(lab, mode="MANAGED-NOVLAN")
        try:
            n1, n2 = cl.urls
            a1, _ = await cl.launch("i-000a1", "sg-a", n1)
            a2, ip_a2 = await cl.launch("i-000a2", "sg-a", n2)
            b1, ip_b1 = await cl.launch("i-000b1", "sg-b", n2)
            nets = cl.manager.describe([]).networks
            assert len({n.bridge for n in nets}) == 1  # one shared link
            assert len({n.subnet for n in nets}) == 2
            await lab.serve(a2, 8080, "a2")
            await lab.serve(b1, 8080, "b1")
            await lab.serve(b1, 8081, "b1-other")
            assert await lab.tcp(a1, ip_a2, 8080) == "a2"
            assert await lab.tcp(a1, ip_b1, 8080) is None
            await cl.manager.set_ingress_rules("sg-b", [tcp_from_group(8080, "sg-a")])
            assert await lab.tcp(a1, ip_b1, 8080) == "b1"
            assert await lab.tcp(a1, ip_b1, 8081) is None
            await cl.manager.set_ingress_rules("sg-b", [])
            assert await lab.tcp(a1, ip_b1, 8080) is None
        finally:
            await cl.manager.stop()


@run_async
async def test_cross_cluster_group_shares_one_lan() -> None:
    async with Lab() as lab:
        c1 = await build_cluster(
            lab,
            "c1",
            node_count=1,
            underlay="192.168.100",
            extra={"cluster_peers": ["172.31.0.2"], "cluster_index": 0, "cluster_count": 2},
        )
        c2 = await build_cluster(
            lab,
            "c2",
            node_count=1,
            underlay="192.168.101",
            extra={"cluster_peers": ["172.31.0.1"], "cluster_index": 1, "cluster_count": 2},
        )
        try:
            await lab.link(c1.cc, "wan0", c2.cc, "wan0", "172.31.0.1/30", "172.31.0.2/30")
            # the CLC gives the group the same VNI and subnet in both clusters
            for cl in (c1, c2):
                await cl.manager.ensure_network(
                    "sg-x", "111122223333", "web", vni=5000, subnet="10.128.7.0/24"
                )
            x1, ip1 = await c1.launch("i-000x1", "sg-x", c1.urls[0])
            x2, ip2 = await c2.launch("i-000x2", "sg-x", c2.urls[0])
            assert ip1 != ip2
            await lab.serve(x2, 8080, "x2")
            assert await lab.ping(x1, ip2)
            assert await lab.tcp(x1, ip2, 8080) == "x2"
            # another group in cluster 2 stays out of reach
            y2, ip_y2 = await c2.launch("i-000y2", "sg-y", c2.urls[0])
            await lab.serve(y2, 8080, "y2")
            assert await lab.tcp(x1, ip_y2, 8080) is None
        finally:
            await c1.manager.stop()
            await c2.manager.stop()


@run_async
async def test_concurrent_launches_share_data_plane_syncs() -> None:
    """The launches of one RunInstances (concurrent prepares) are applied by one or two
    syncs, not one each, and every instance still gets its lease and its LAN."""
    import asyncio

    async with Lab() as lab:
        cl = await build_cluster(lab)
        try:
            n1, n2 = cl.urls
            await cl.launch("i-000a0", "sg-a", n1)  # the network exists before the batch
            before = cl.manager.syncs
            ids = [f"i-000b{i}" for i in range(6)]
            urls = [(n1, n2)[i % 2] for i in range(len(ids))]
            pairs = list(zip(ids, urls, strict=True))
            specs = await asyncio.gather(
                *(cl.manager.prepare(launch_spec(iid, "sg-a"), u) for iid, u in pairs)
            )
            got = [await cl.attach(i, u, sp) for (i, u), sp in zip(pairs, specs, strict=True)]
            assert 1 <= cl.manager.syncs - before <= 2, cl.manager.syncs - before
            ips = [ip for _, ip in got]
            assert len(set(ips)) == len(ids)
            # all on one LAN across both nodes
            assert await lab.ping(got[0][0], ips[1])
            assert await lab.ping(got[-1][0], ips[0])
        finally:
            await cl.manager.stop()
