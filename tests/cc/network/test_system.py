"""SYSTEM mode: the CC picks the MAC and asks the node to serve the instance's metadata."""

from __future__ import annotations

import asyncio

from eucalypt.cc.network.base import instance_mac
from eucalypt.cc.network.system import SystemNetwork
from eucalypt.config import CcConfig, Config
from tests.cc.network.topology import launch_spec


def test_system_specs_ask_the_node_for_metadata() -> None:
    net = SystemNetwork(Config(cc=CcConfig(network_mode="SYSTEM", bridge="br-site")))
    spec = asyncio.run(net.prepare(launch_spec("i-0000a001", "sg-1"), "http://n1:8775"))
    assert spec.mode == "bridge" and spec.bridge == "br-site"
    assert spec.mac == instance_mac("i-0000a001")
    assert spec.node_metadata  # the CC never sees its 169.254.169.254 traffic
    assert spec.vni is None and spec.private_ip is None  # the site's DHCP addresses it
