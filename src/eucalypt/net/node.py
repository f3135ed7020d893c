"""What a node (NC host) needs for one instance network: a bridge and its VXLAN.

In the MANAGED modes each network is VNI ``n``: bridge ``eubr<n>`` with the
VXLAN device ``euvx<n>`` as a port, flooding to the CC and the cluster's
other nodes (static FDB entries, so no multicast is needed). Instance taps
join the bridge. In MANAGED-NOVLAN every network shares one VNI (one
bridge). In SYSTEM and STATIC modes the bridge is the site's and already
exists; nothing is created.

The NC calls :func:`ensure_node_network` before it adds an instance's tap
and :func:`release_node_network` after it removed one; both are idempotent.
Calls for the same bridge must not run concurrently (the NC serializes them).
"""

from __future__ import annotations

from dataclasses import dataclass

from eucalypt.net.links import (
    VXLAN_PORT,
    Vxlan,
    delete_link,
    ensure_vxlan,
    read_links,
)
from eucalypt.net.runner import Runner

BRIDGE_PREFIX = "eubr"
VXLAN_PREFIX = "euvx"
PEER_VXLAN_PREFIX = "eupx"  # CC to CC (cross-cluster networks)
LINK_PREFIXES = (BRIDGE_PREFIX, VXLAN_PREFIX, PEER_VXLAN_PREFIX)


def bridge_name(vni: int) -> str:
    return f"{BRIDGE_PREFIX}{vni}"


def vxlan_name(vni: int) -> str:
    return f"{VXLAN_PREFIX}{vni}"


def peer_vxlan_name(vni: int) -> str:
    return f"{PEER_VXLAN_PREFIX}{vni}"


@dataclass(frozen=True)
class NodeNetwork:
    """One network as a node sees it.

    ``vni`` None means the bridge is the site's (SYSTEM/STATIC) and must exist.
    ``peers`` are the underlay IPs (CC and other nodes) that flood traffic reaches.
    """

    bridge: str
    vni: int | None = None
    peers: tuple[str, ...] = ()
    port: int = VXLAN_PORT
    local: str | None = None


async def ensure_node_network(runner: Runner, net: NodeNetwork, netns: str | None = None) -> None:
    """Make the bridge (and its VXLAN port) exist and be up, with exactly ``net.peers``.

    Never touches the bridge's addresses (on a one-host cloud the CC's
    gateway address sits on the same bridge).
    """
    links = await read_links(runner, netns)
    have = links.get(net.bridge)
    if net.vni is None:
        if have is None:
            raise RuntimeError(f"bridge {net.bridge} does not exist on this node")
        return
    if have is None:
        await runner.run(["ip", "link", "add", net.bridge, "type", "bridge"], netns=netns)
    if have is None or not have.up:
        await runner.run(["ip", "link", "set", net.bridge, "up"], netns=netns)
    vx = Vxlan(
        name=vxlan_name(net.vni),
        vni=net.vni,
        master=net.bridge,
        peers=tuple(net.peers),
        port=net.port,
        local=net.local,
    )
    await ensure_vxlan(runner, vx, links.get(vx.name), netns)


async def release_node_network(runner: Runner, net: NodeNetwork, netns: str | None = None) -> bool:
    """Remove the network's bridge and VXLAN when no other port uses the bridge.

    Returns whether they were removed. Leaves them when a tap is still on
    the bridge, when the bridge has IPv4 addresses (a CC on the same host
    owns it) or when the bridge is the site's (``vni`` None).
    """
    if net.vni is None:
        return False
    links = await read_links(runner, netns)
    br = links.get(net.bridge)
    vx = vxlan_name(net.vni)
    if br is None:
        await delete_link(runner, vx, netns)
        return True
    ports = [n for n, i in links.items() if i.master == net.bridge and n != vx]
    if ports or br.addresses:
        return False
    if vx in links:
        await runner.run(["ip", "link", "del", vx], netns=netns)
    await runner.run(["ip", "link", "del", net.bridge], netns=netns)
    return True
