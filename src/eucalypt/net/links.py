"""Links as desired state: bridges, VXLAN devices (with static FDB peers), addresses.

Reads the host with ``ip -j`` and ``bridge -j`` (read-only commands), then
changes only what differs, with idempotent ``ip``/``bridge`` commands.

VXLAN here replaces the paper's VLAN tag: one VNI per isolated network.
Broadcast and unknown-unicast frames are sent to every peer listed in the
device's FDB under the all-zero MAC (head-end replication: no multicast
needed on the underlay); known MACs are learned from received frames.
"""

from __future__ import annotations

import ipaddress
import json
from dataclasses import dataclass, field
from typing import Any

from eucalypt.net.runner import Runner

ZERO_MAC = "00:00:00:00:00:00"
VXLAN_PORT = 4789


@dataclass(frozen=True)
class Bridge:
    """A bridge we own; ``addresses`` (IPv4 CIDRs, e.g. ``10.128.0.1/24``) are exactly its own."""

    name: str
    addresses: tuple[str, ...] = ()


@dataclass(frozen=True)
class Vxlan:
    """A VXLAN device we own, enslaved to ``master``, flooding to ``peers`` (underlay IPs)."""

    name: str
    vni: int
    master: str | None = None
    peers: tuple[str, ...] = ()
    port: int = VXLAN_PORT
    local: str | None = None
    dev: str | None = None


@dataclass(frozen=True)
class HostAddresses:
    """Addresses we own on a device we don't own (public IPs on the public interface).

    Every IPv4 address of ``dev`` inside one of ``pool`` is ours: present if
    listed in ``addresses``, removed otherwise; others are never touched.
    """

    dev: str
    pool: tuple[str, ...]
    addresses: tuple[str, ...] = ()


@dataclass
class LinkInfo:
    name: str
    kind: str
    up: bool
    master: str | None
    data: dict[str, Any]
    addresses: set[str] = field(default_factory=set)


def _parse_links(links: list[dict[str, Any]], addrs: list[dict[str, Any]]) -> dict[str, LinkInfo]:
    out: dict[str, LinkInfo] = {}
    for link in links:
        info = link.get("linkinfo", {})
        out[link["ifname"]] = LinkInfo(
            name=link["ifname"],
            kind=info.get("info_kind", ""),
            up="UP" in link.get("flags", []),
            master=link.get("master"),
            data=info.get("info_data", {}),
        )
    for a in addrs:
        if a.get("ifname") in out:
            out[a["ifname"]].addresses = {
                f"{i['local']}/{i['prefixlen']}"
                for i in a.get("addr_info", [])
                if i.get("family") == "inet"
            }
    return out


async def read_links(runner: Runner, netns: str | None = None) -> dict[str, LinkInfo]:
    """Every link of the namespace with its kind, flags, master and IPv4 addresses."""
    links = await runner.run(["ip", "-j", "-d", "link", "show"], netns=netns, readonly=True)
    addrs = await runner.run(["ip", "-j", "addr", "show"], netns=netns, readonly=True)
    return _parse_links(json.loads(links.stdout or "[]"), json.loads(addrs.stdout or "[]"))


async def read_fdb_peers(runner: Runner, dev: str, netns: str | None = None) -> set[str]:
    """Underlay IPs of the all-zero (flooding) FDB entries of a VXLAN device."""
    res = await runner.run(["bridge", "-j", "fdb", "show", "dev", dev], netns=netns, readonly=True)
    return {
        e["dst"] for e in json.loads(res.stdout or "[]") if e.get("mac") == ZERO_MAC and "dst" in e
    }


async def _ip(runner: Runner, netns: str | None, *args: str) -> None:
    await runner.run(["ip", *args], netns=netns)


async def _ensure_up(runner: Runner, name: str, have: LinkInfo | None, netns: str | None) -> None:
    if have is None or not have.up:
        await _ip(runner, netns, "link", "set", name, "up")


async def _ensure_addresses(
    runner: Runner, dev: str, want: set[str], have: set[str], netns: str | None
) -> None:
    for addr in sorted(have - want):
        await _ip(runner, netns, "addr", "del", addr, "dev", dev)
    for addr in sorted(want - have):
        await _ip(runner, netns, "addr", "add", addr, "dev", dev)


async def ensure_bridge(
    runner: Runner, br: Bridge, have: LinkInfo | None, netns: str | None = None
) -> None:
    """Create the bridge if missing, bring it up, give it exactly its addresses."""
    if have is not None and have.kind != "bridge":
        await _ip(runner, netns, "link", "del", br.name)
        have = None
    if have is None:
        await _ip(runner, netns, "link", "add", br.name, "type", "bridge")
    await _ensure_addresses(
        runner, br.name, set(br.addresses), have.addresses if have else set(), netns
    )
    await _ensure_up(runner, br.name, have, netns)


def _vxlan_matches(vx: Vxlan, have: LinkInfo) -> bool:
    d = have.data
    return (
        have.kind == "vxlan"
        and d.get("id") == vx.vni
        and d.get("port") == vx.port
        and d.get("local") == vx.local
        and (vx.dev is None or d.get("link") == vx.dev)
    )


async def ensure_vxlan(
    runner: Runner, vx: Vxlan, have: LinkInfo | None, netns: str | None = None
) -> None:
    """Create (or recreate, if its VNI/port/local differ) the device; set master and peers."""
    if have is not None and not _vxlan_matches(vx, have):
        await _ip(runner, netns, "link", "del", vx.name)
        have = None
    if have is None:
        argv = ["link", "add", vx.name, "type", "vxlan", "id", str(vx.vni)]
        argv += ["dstport", str(vx.port)]
        if vx.local:
            argv += ["local", vx.local]
        if vx.dev:
            argv += ["dev", vx.dev]
        await _ip(runner, netns, *argv)
    if vx.master and (have is None or have.master != vx.master):
        await _ip(runner, netns, "link", "set", vx.name, "master", vx.master)
    current = await read_fdb_peers(runner, vx.name, netns) if have is not None else set()
    for peer in sorted(current - set(vx.peers)):
        await runner.run(
            ["bridge", "fdb", "del", ZERO_MAC, "dev", vx.name, "dst", peer], netns=netns
        )
    for peer in sorted(set(vx.peers) - current):
        await runner.run(
            ["bridge", "fdb", "append", ZERO_MAC, "dev", vx.name, "dst", peer], netns=netns
        )
    await _ensure_up(runner, vx.name, have, netns)


async def delete_link(runner: Runner, name: str, netns: str | None = None) -> None:
    """Delete a link; succeeds when it is already gone."""
    links = await read_links(runner, netns)
    if name in links:
        await _ip(runner, netns, "link", "del", name)


def _in_pool(addr: str, pool: tuple[str, ...]) -> bool:
    ip = ipaddress.ip_interface(addr).ip
    return any(ip in ipaddress.ip_network(p, strict=False) for p in pool)


async def ensure_host_addresses(
    runner: Runner, want: HostAddresses, have: LinkInfo | None, netns: str | None = None
) -> None:
    if have is None:
        if want.addresses:
            raise ValueError(f"device {want.dev} does not exist")
        return
    owned = {a for a in have.addresses if _in_pool(a, want.pool)}
    await _ensure_addresses(runner, want.dev, set(want.addresses), owned, netns)
