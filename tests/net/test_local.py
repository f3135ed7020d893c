"""The single-host data plane (eucalypt.net.local): namespace, veth, routes, teardown.

Every test uses its own namespace (``eutest-<hex>``), host-side veth name
(``eut<hex>u``), a link network in 169.254/16 and a TEST-NET-2 pool that no
real install uses, and tears them down whatever happens. No packet leaves
loopback, the veth and the namespace.
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import socket
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from eucalypt.config import Config
from eucalypt.net.links import LinkInfo, read_links
from eucalypt.net.local import (
    DEFAULT_PUBLIC_POOL,
    LocalUplink,
    UplinkConflict,
    check_host_conflicts,
    ensure_local_dataplane,
    local_network_defaults,
    netns_exists,
    pool_cidrs,
    runtime_state_dir,
    teardown_local_dataplane,
    uplink_from_config,
)
from eucalypt.net.netns import socket_in_netns
from eucalypt.net.runner import CommandResult, CommandRunner, RecordingRunner
from tests.net.helpers import needs_root, run_async

LINK_NET = "169.254.201.0/30"
POOL = "198.51.100.128/28"


def test_local_network_defaults_make_a_single_host_managed_cloud(tmp_path: Path) -> None:
    config = Config(data_dir=tmp_path)
    local_network_defaults(config)
    cc, nc = config.cc, config.nc
    assert (cc.network_mode, cc.network_netns, nc.netns) == ("MANAGED", "eucalypt", "eucalypt")
    assert cc.local_uplink and cc.public_interface == "eupub0"
    assert cc.public_ips == [DEFAULT_PUBLIC_POOL]
    assert cc.vxlan_local == "" and cc.node_underlay == {} and cc.cluster_peers == []
    if os.geteuid() == 0:
        assert cc.network_state_dir == str(runtime_state_dir(tmp_path))
        assert cc.network_state_dir.startswith("/run/eucalypt/")
    up = uplink_from_config(config)
    assert up == LocalUplink(
        "eucalypt", "eucalypt0", "eupub0", "169.254.123.0/30", ("198.51.100.0/26",)
    )
    assert str(up.host_address) == "169.254.123.1/30"
    assert str(up.inside_address) == "169.254.123.2/30"
    # survives the TOML round trip
    config.save()
    again = Config.load(config.config_path)
    assert again.cc.local_uplink and again.nc.netns == "eucalypt"


def test_pool_cidrs_and_spec_validation() -> None:
    assert pool_cidrs(["198.51.100.10", "198.51.100.11", "198.51.100.16-198.51.100.23"]) == (
        "198.51.100.10/31",
        "198.51.100.16/29",
    )
    with pytest.raises(ValueError):
        LocalUplink(link_net="169.254.201.0/32")
    with pytest.raises(ValueError):
        LocalUplink(link_net="169.254.201.0/30", public_cidrs=("169.254.201.0/24",))
    with pytest.raises(ValueError):
        LocalUplink(host_end="a-name-longer-than-15")


class CannedRoutes:
    """A runner answering ``ip -j -4 route show`` with canned routes (nothing else runs)."""

    def __init__(self, routes: list[dict[str, Any]]) -> None:
        self.routes = routes

    async def run(
        self,
        argv: Sequence[str],
        *,
        input: str | None = None,
        netns: str | None = None,
        check: bool = True,
        readonly: bool = False,
        timeout: float | None = None,
    ) -> CommandResult:
        assert readonly and list(argv[:5]) == ["ip", "-j", "-4", "route", "show"]
        return CommandResult(tuple(argv), 0, json.dumps(self.routes), "")


def _link(name: str, *addrs: str) -> LinkInfo:
    return LinkInfo(name=name, kind="", up=True, master=None, data={}, addresses=set(addrs))


@run_async
async def test_pools_overlapping_the_hosts_networks_are_refused() -> None:
    spec = LocalUplink(netns="x", host_end="eut0", public_cidrs=("198.51.100.0/26",))
    lan = {"dst": "198.51.100.0/24", "dev": "eth0", "protocol": "kernel"}
    zeroconf = {"dst": "169.254.0.0/16", "dev": "eth0", "scope": "link"}
    default = {"dst": "default", "gateway": "192.0.2.1", "dev": "eth0"}
    ours = {"dst": "198.51.100.0/26", "dev": "eut0", "gateway": "169.254.123.2"}
    links = {"eth0": _link("eth0", "192.0.2.2/24"), "eut0": _link("eut0", "169.254.123.1/30")}
    await check_host_conflicts(CannedRoutes([default, zeroconf, ours]), spec, links)
    with pytest.raises(UplinkConflict, match=r"198\.51\.100\.0/24 via eth0"):
        await check_host_conflicts(CannedRoutes([default, lan]), spec, links)
    links["eth1"] = _link("eth1", "169.254.123.9/16")  # a zeroconf address is no conflict...
    await check_host_conflicts(CannedRoutes([]), spec, links)
    links["eth1"] = _link("eth1", "169.254.123.2/16")  # ...unless it is one of ours
    with pytest.raises(UplinkConflict, match="eth1"):
        await check_host_conflicts(CannedRoutes([]), spec, links)


# --------------------------------------------------------------------------- real namespaces


def _spec() -> LocalUplink:
    tag = secrets.token_hex(3)
    return LocalUplink(
        netns=f"eutest-{tag}", host_end=f"eut{tag}u", link_net=LINK_NET, public_cidrs=(POOL,)
    )


async def _route(runner: CommandRunner, *dst: str) -> list[dict[str, Any]]:
    res = await runner.run(["ip", "-j", "-4", "route", "show", *dst], readonly=True)
    routes: list[dict[str, Any]] = json.loads(res.stdout or "[]")
    return routes


async def _sysctl(runner: CommandRunner, key: str, netns: str | None = None) -> str:
    return (await runner.run(["sysctl", "-n", key], netns=netns)).stdout.strip()


def _accept_one(sock: socket.socket, seen: list[str]) -> threading.Thread:
    def serve() -> None:
        sock.setblocking(True)
        sock.settimeout(10)
        conn, peer = sock.accept()
        with conn:
            seen.append(peer[0])
            conn.sendall(b"hello from the namespace\n")

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    return t


@pytest.mark.netns
@needs_root
@run_async
async def test_ensure_is_idempotent_the_host_reaches_the_pool_and_teardown_leaves_nothing() -> None:
    spec = _spec()
    plain = CommandRunner()
    host_forward = await _sysctl(plain, "net.ipv4.ip_forward")
    try:
        rec = RecordingRunner(plain)
        await ensure_local_dataplane(rec, spec)
        assert rec.changes, "the first call builds everything"
        rec.clear()
        await ensure_local_dataplane(rec, spec)
        assert rec.changes == [], [c.argv for c in rec.changes]

        host = await read_links(plain)
        inside = await read_links(plain, spec.netns)
        assert host[spec.host_end].kind == "veth" and host[spec.host_end].up
        assert host[spec.host_end].addresses == {"169.254.201.1/30"}
        assert inside["eupub0"].kind == "veth" and inside["eupub0"].up
        assert inside["eupub0"].addresses == {"169.254.201.2/30"}
        assert inside["lo"].up
        (route,) = await _route(plain, POOL)
        assert (route["dev"], route["gateway"], route["prefsrc"]) == (
            spec.host_end,
            "169.254.201.2",
            "169.254.201.1",
        )
        assert await _sysctl(plain, "net.ipv4.ip_forward", spec.netns) == "1"
        assert await _sysctl(plain, "net.ipv4.ip_forward") == host_forward  # never the host's
        no_default = await plain.run(["ip", "-j", "route", "show", "default"], netns=spec.netns)
        assert json.loads(no_default.stdout) == []  # nothing leaves the namespace

        # A public address on the inside end (as the CC puts a mapped one), a server on it:
        # the host reaches it through the veth, from its end's address.
        pub = "198.51.100.130"
        await plain.run(["ip", "addr", "add", f"{pub}/32", "dev", "eupub0"], netns=spec.netns)
        sock = socket_in_netns(spec.netns, pub, 8022)
        seen: list[str] = []
        server = _accept_one(sock, seen)

        def connect() -> bytes:
            with socket.create_connection((pub, 8022), timeout=5) as c:
                return c.recv(100)

        try:
            assert await asyncio.to_thread(connect) == b"hello from the namespace\n"
            server.join(5)
        finally:
            sock.close()
        assert seen == ["169.254.201.1"]

        # the CC's public /32 is left alone; drift (a lost route, a stray address) is repaired
        await plain.run(["ip", "route", "del", POOL])
        await plain.run(["ip", "addr", "add", "10.99.0.1/24", "dev", "eupub0"], netns=spec.netns)
        rec.clear()
        await ensure_local_dataplane(rec, spec)
        assert {c.argv[:3] for c in rec.changes} == {
            ("ip", "route", "replace"),
            ("ip", "addr", "del"),
        }
        inside = await read_links(plain, spec.netns)
        assert inside["eupub0"].addresses == {"169.254.201.2/30", f"{pub}/32"}
        assert len(await _route(plain, POOL)) == 1

        await teardown_local_dataplane(plain, spec)
        assert not netns_exists(spec.netns)
        assert spec.host_end not in await read_links(plain)
        assert await _route(plain, POOL) == []
        await teardown_local_dataplane(plain, spec)  # twice: nothing left to do
    finally:
        await teardown_local_dataplane(plain, spec)


@pytest.mark.netns
@needs_root
@run_async
async def test_a_conflicting_pool_changes_nothing() -> None:
    plain = CommandRunner()
    routes = await _route(plain)
    lan = next(
        (r for r in routes if r.get("dst") not in (None, "default") and "/" in r["dst"]), None
    )
    if lan is None:
        pytest.skip("the host has no network route to collide with")
    spec = LocalUplink(
        netns=f"eutest-{secrets.token_hex(3)}", host_end="eutconflict", link_net=LINK_NET,
        public_cidrs=(lan["dst"],),
    )  # fmt: skip
    rec = RecordingRunner(plain)
    try:
        with pytest.raises(UplinkConflict):
            await ensure_local_dataplane(rec, spec)
        assert rec.changes == []
        assert not netns_exists(spec.netns)
    finally:
        await teardown_local_dataplane(plain, spec)
