"""The instance's network endpoint: a tap device on the host bridge the CC named.

The CC owns the virtual network (bridges, VXLAN, DHCP, iptables); the NC only
plugs each instance into it, as the paper's NC "creates a new endpoint in the
virtual network overlay". Every command goes through the injected runner.

With ``netns`` (``nc.netns``) every tap, bridge and VXLAN device is made
inside that network namespace (``ip -n <netns> ...``), where the QEMUs that
use the taps run too; the NC itself stays in the host's namespace.

Tap names are derived from the instance id (``tap`` + the id's hex part, or a
hash of the id when that does not fit Linux's 15 characters), so a restarted
NC, or a cleanup after a crash, finds the same device again.

A running instance's tap outlives its bridge: when a CC on the same host
stops, its bridges go and their taps are left without a master; when it
starts again it makes the bridges anew, empty. :meth:`Endpoints.reattach`
(the NC's monitor, every round) puts such taps back: one ``ip -j link show``
when nothing is amiss.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import re
from collections import defaultdict
from collections.abc import Mapping

from eucalypt.nc.api import NetworkSpec
from eucalypt.nc.errors import NetworkSetupError
from eucalypt.net import runner as netrunner
from eucalypt.net.node import (
    NodeNetwork,
    ensure_node_network,
    release_node_network,
    vxlan_name,
)

log = logging.getLogger("eucalypt.nc.endpoint")

IFNAMSIZ = 15  # usable characters of a Linux interface name
_PLAIN = re.compile(r"^[a-z0-9]+$")
_MISSING = ("Cannot find device", "does not exist")
_NO_NETNS = "Cannot open network namespace"  # with "No such file": its taps are gone too


def tap_name(instance_id: str) -> str:
    """``tap<id without "i-">`` when that fits 15 characters, else ``tap<12 hex of sha256>``."""
    rest = instance_id.removeprefix("i-").lower()
    name = f"tap{rest}"
    if len(name) <= IFNAMSIZ and _PLAIN.match(rest):
        return name
    return "tap" + hashlib.sha256(instance_id.encode()).hexdigest()[: IFNAMSIZ - 3]


def node_network(network: NetworkSpec) -> NodeNetwork | None:
    """The bridge (and, in MANAGED mode, the VXLAN) the spec's tap joins."""
    if network.mode != "bridge" or not network.bridge:
        return None
    return NodeNetwork(
        bridge=network.bridge,
        vni=network.vni,
        peers=tuple(network.vxlan_peers),
        port=network.vxlan_port,
    )


class Endpoints:
    """Creates and deletes instances' tap devices, and the node's side of their network.

    In MANAGED mode the first instance of a network on this node creates the
    network's bridge and VXLAN device (``eucalypt.net.node``); the last one
    to leave removes them. Changes to one bridge are serialised.
    """

    def __init__(
        self,
        runner: netrunner.Runner,
        net_runner: netrunner.Runner | None = None,
        *,
        netns: str | None = None,
    ) -> None:
        self._runner = runner
        self._net = net_runner or runner
        self.netns = netns or None
        self._locks: defaultdict[str, asyncio.Lock] = defaultdict(asyncio.Lock)

    async def _run(self, argv: list[str]) -> netrunner.CommandResult:
        """Run ``argv``; the caller reads the result (``.ok``, ``.check()``)."""
        return await self._runner.run(argv, check=False)

    def _ip(self, *args: str) -> list[str]:
        """``ip ARGS``, in the endpoints' namespace when there is one."""
        return ["ip", "-n", self.netns, *args] if self.netns else ["ip", *args]

    async def create(self, instance_id: str, network: NetworkSpec) -> str | None:
        """Make the endpoint ``network`` asks for; return the tap's name (None: no tap).

        ``bridge`` mode: ``ip tuntap add dev <tap> mode tap`` then ``ip link set
        <tap> master <bridge> up``. A tap left by an earlier attempt is replaced.
        On failure the tap is deleted and :class:`NetworkSetupError` raised.
        """
        if network.mode != "bridge":
            return None
        if not network.bridge:
            raise NetworkSetupError("bridge mode needs a bridge name")
        tap = tap_name(instance_id)
        await self.delete(tap)
        net = node_network(network)
        async with self._locks[network.bridge]:
            try:
                if net is not None and net.vni is not None:
                    await ensure_node_network(self._net, net, self.netns)
                (await self._run(self._ip("tuntap", "add", "dev", tap, "mode", "tap"))).check()
                up = self._ip("link", "set", tap, "master", network.bridge, "up")
                (await self._run(up)).check()
            except (netrunner.CommandError, RuntimeError) as exc:
                await self.delete(tap)
                raise NetworkSetupError(
                    f"cannot put tap {tap} on bridge {network.bridge}: {exc}"
                ) from exc
        log.info(
            "tap created", extra={"instance_id": instance_id, "tap": tap, "bridge": network.bridge}
        )
        return tap

    async def reattach(self, taps: Mapping[str, NetworkSpec]) -> list[str]:
        """Put each running instance's tap (name -> its spec) back on its bridge.

        A tap is fixed when it is not on its bridge or is down: when the bridge
        is missing or down or (MANAGED) its VXLAN port is gone, the node network
        is made again first (``ensure_node_network``); then ``ip link set <tap>
        master <bridge> up``. Returns the taps fixed; a missing tap or a failure is
        logged (its instance needs a restart, or the next round tries again).
        """
        wanted = {t: n for t, n in taps.items() if n.mode == "bridge" and n.bridge}
        if not wanted:
            return []
        listing = await self._run(self._ip("-j", "link", "show"))
        if not listing.ok:
            log.warning("cannot list links", extra={"error": listing.stderr.strip()})
            return []
        links = {link["ifname"]: link for link in json.loads(listing.stdout or "[]")}

        def up(name: str) -> bool:
            return name in links and "UP" in links[name].get("flags", [])

        fixed: list[str] = []
        for tap, network in sorted(wanted.items()):
            bridge = network.bridge or ""
            if tap not in links:
                log.warning("tap missing", extra={"tap": tap, "bridge": bridge})
                continue
            vx = vxlan_name(network.vni) if network.vni is not None else None
            # Only a missing or broken network is made again (a CC on this host owns it too).
            net_ok = up(bridge) and (vx is None or links.get(vx, {}).get("master") == bridge)
            if net_ok and links[tap].get("master") == bridge and up(tap):
                continue
            async with self._locks[bridge]:
                try:
                    net = node_network(network)
                    if not net_ok and net is not None and net.vni is not None:
                        # Not for a tap that a terminate has just deleted: its release
                        # (after this lock) would find the bridge it removed made again.
                        if not (await self._run(self._ip("link", "show", "dev", tap))).ok:
                            continue
                        await ensure_node_network(self._net, net, self.netns)
                    up_cmd = self._ip("link", "set", tap, "master", bridge, "up")
                    (await self._run(up_cmd)).check()
                except (netrunner.CommandError, RuntimeError) as exc:
                    log.warning(
                        "cannot put tap back on its bridge",
                        extra={"tap": tap, "bridge": bridge, "error": str(exc)},
                    )
                    continue
            log.info("tap put back on its bridge", extra={"tap": tap, "bridge": bridge})
            fixed.append(tap)
        return fixed

    async def release(self, network: NetworkSpec) -> None:
        """After a tap is gone: remove the network's bridge and VXLAN if nothing uses them."""
        net = node_network(network)
        if net is None or net.vni is None:
            return
        async with self._locks[net.bridge]:
            try:
                await release_node_network(self._net, net, self.netns)
            except netrunner.CommandError as exc:
                log.warning(
                    "network release failed", extra={"bridge": net.bridge, "error": str(exc)}
                )

    async def delete(self, tap: str) -> None:
        """``ip link del dev <tap>``; succeeds when the tap is already gone."""
        result = await self._run(self._ip("link", "del", "dev", tap))
        if result.ok:
            log.info("tap deleted", extra={"tap": tap})
            return
        if any(m in result.stderr for m in _MISSING):
            return
        if _NO_NETNS in result.stderr and "No such file" in result.stderr:
            return
        result.check()
