"""Pure parts of the CC network: address layout, public pool, firewall rendering, API types."""

from __future__ import annotations

from ipaddress import IPv4Address, IPv4Network

import pytest
from pydantic import ValidationError

from eucalypt.cc.netapi import IngressRule
from eucalypt.cc.network.addresses import Layout, parse_pool, pool_cidrs
from eucalypt.cc.network.firewall import FirewallPlan, NetView, ingress_rules, managed_iptables
from eucalypt.net.iptables import render


def test_layout_slices_subnets_between_clusters() -> None:
    one = Layout(IPv4Network("10.128.0.0/16"), 24)
    assert one.subnet(3) == IPv4Network("10.128.3.0/24")
    assert one.index_of(IPv4Network("10.128.3.0/24")) == 3
    assert one.gateway(one.subnet(0)) == IPv4Address("10.128.0.1")
    assert one.host_slice(one.subnet(0))[0] == IPv4Address("10.128.0.2")
    a = Layout(IPv4Network("10.128.0.0/16"), 24, 0, 2)
    b = Layout(IPv4Network("10.128.0.0/16"), 24, 1, 2)
    net = a.subnet(7)
    assert a.gateway(net) != b.gateway(net)
    sa, sb = set(a.host_slice(net)), set(b.host_slice(net))
    assert not sa & sb
    assert a.gateway(net) not in sa | sb and b.gateway(net) not in sa | sb
    assert all(
        ip in net and ip not in (net.network_address, net.broadcast_address) for ip in sa | sb
    )


def test_public_pool_forms() -> None:
    pool = parse_pool(["198.51.100.10-198.51.100.12", "198.51.100.16/31", "198.51.100.30"])
    assert [str(p) for p in pool] == [
        "198.51.100.10",
        "198.51.100.11",
        "198.51.100.12",
        "198.51.100.16",
        "198.51.100.17",
        "198.51.100.30",
    ]
    assert pool_cidrs(pool) == (
        "198.51.100.10/31",
        "198.51.100.12/32",
        "198.51.100.16/31",
        "198.51.100.30/32",
    )


def test_ingress_rule_validation() -> None:
    with pytest.raises(ValidationError):
        IngressRule(protocol="tcp", from_port=22, to_port=22)
    with pytest.raises(ValidationError):
        IngressRule(protocol="tcp", from_port=22, to_port=22, cidr="0.0.0.0/0", source_group="sg-1")
    with pytest.raises(ValidationError):
        IngressRule(protocol="tcp", from_port=90, to_port=80, cidr="0.0.0.0/0")
    assert IngressRule(protocol="-1", cidr="10.1.2.3/8").cidr == "10.0.0.0/8"


def test_group_chain_rules() -> None:
    groups = {"sg-a": IPv4Network("10.128.0.0/24")}
    rules = (
        IngressRule(protocol="tcp", from_port=22, to_port=22, source_group="sg-a"),
        IngressRule(protocol="tcp", from_port=22, to_port=22, source_group="sg-a"),
        IngressRule(protocol="udp", from_port=1000, to_port=2000, cidr="192.0.2.0/24"),
        IngressRule(protocol="icmp", from_port=8, to_port=-1, cidr="0.0.0.0/0"),
        IngressRule(protocol="tcp", from_port=0, to_port=65535, cidr="192.0.2.9/32"),
        IngressRule(protocol="-1", source_group="sg-unknown"),
    )
    assert ingress_rules(rules, groups) == [
        "-s 10.128.0.0/24 -p tcp -m tcp --dport 22 -j ACCEPT",
        "-s 192.0.2.0/24 -p udp -m udp --dport 1000:2000 -j ACCEPT",
        "-p icmp -m icmp --icmp-type 8 -j ACCEPT",
        "-s 192.0.2.9/32 -p tcp -j ACCEPT",
        "-j DROP",
    ]


def test_firewall_render_is_deterministic() -> None:
    def plan(order: int) -> FirewallPlan:
        nets = [
            NetView(0, IPv4Network("10.128.0.0/24"), "eubr1000"),
            NetView(1, IPv4Network("10.128.1.0/24"), "eubr1001"),
        ]
        nat = [
            (IPv4Address("198.51.100.11"), IPv4Address("10.128.1.2")),
            (IPv4Address("198.51.100.10"), IPv4Address("10.128.0.2")),
        ]
        return FirewallPlan(
            private_range=IPv4Network("10.128.0.0/16"),
            networks=tuple(nets[::order]),
            group_subnets={},
            nat=tuple(sorted(nat)),
            metadata_port=8779,
            public_interface="pub0",
        )

    text = render(managed_iptables(plan(1)))
    assert text == render(managed_iptables(plan(-1)))
    assert "-A EUCA-FORWARD -d 10.128.1.0/24 -j EUCA-GROUP-1" in text
    assert "-A EUCA-PREROUTING -d 198.51.100.10/32 -j DNAT --to-destination 10.128.0.2" in text
    assert "-A EUCA-POSTROUTING -s 10.128.0.2/32 -j SNAT --to-source 198.51.100.10" in text
    assert (
        "-A EUCA-PREROUTING -d 169.254.169.254/32 -i eubr1000 -p tcp -m tcp --dport 80 "
        "-j REDIRECT --to-ports 8779" in text
    )
