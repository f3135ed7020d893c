"""Instance metadata on the node: SYSTEM mode (and STATIC without the CC as router).

In these modes an instance's tap joins the site's bridge and the site's
router carries its traffic: the CC never sees a request to 169.254.169.254,
so the NC, which knows exactly which tap and MAC belong to which instance,
answers it. For every instance whose spec asks for it
(``NetworkSpec.node_metadata``) the NC keeps two nftables tables (one
``nft -f`` transaction, :mod:`eucalypt.net.nftables`) in its namespace
(``nc.netns``, else the host's)::

    table bridge eucalypt_nc_md_<port>       # on the instances' bridge ports
      chain prerouting (filter, priority dstnat)
        iifname "<tap>" ether saddr != <mac> drop          # the tap is pinned
        iifname "<tap>" arp saddr ether != <mac> drop      # to its MAC
        iifname "<tap>" ip daddr 169.254.169.254 tcp dport 80
            meta mark set 0x45554d44 ether daddr set <bridge MAC> meta pkttype set host
    table ip eucalypt_nc_md_<port>
      chain prerouting (nat, priority dstnat)
        iifname "<bridge>" meta mark 0x45554d44 ip daddr 169.254.169.254 tcp dport 80
            redirect to :<port>
      chain input (filter)
        tcp dport <port> meta mark != 0x45554d44 drop

The bridge rule hands the instance's metadata frames (addressed to its router's
MAC) to the node's own IP stack instead of forwarding them; the nat rule
redirects them to the NC's metadata proxy (:class:`eucalypt.net.metadata.MetadataProxy`)
on ``nc.metadata_port``; the proxy port takes nothing but such marked
connections (not a site host, nor an instance connecting to it directly).
No br_netfilter is needed.

Who is asking: the connection's source address → the MAC the node's reply went
to (the bridge's neighbour table, filled during the handshake) → the instance
with that MAC, which must also be the MAC the bridge learned on that
instance's tap. As each tap only carries frames (and ARP) with its own MAC, an
instance cannot make the node's replies go to another instance's MAC and still
complete the handshake. Headers sent by the guest are never trusted; the proxy
forwards to the CLC with ``X-Eucalypt-Instance-Id``/``-Ip`` signed with the
NC's component key.

The reply goes from the bridge's own address: the bridge must hold an IPv4
address on the instances' LAN (as the paper's SYSTEM mode with br0 carrying
the node's address). The NC logs a warning for a bridge without one.

The tables follow the instances: re-rendered after each launch and
terminate, checked every monitor round (the bridge's MAC can change when
ports come and go), restored for adopted instances after an NC restart, and
deleted with the last instance and at NC shutdown (the proxy stops with them).
"""

from __future__ import annotations

import asyncio
import json
import logging
from dataclasses import dataclass

from eucalypt.auth.credentials import Credential
from eucalypt.nc.api import NetworkSpec
from eucalypt.net import nftables
from eucalypt.net.metadata import MetadataProxy
from eucalypt.net.nftables import NftChain, NftState, NftTable
from eucalypt.net.runner import CommandRunner, Runner

log = logging.getLogger("eucalypt.nc.metadata")

METADATA_IP = "169.254.169.254"
MARK = "0x45554d44"  # "EUMD": frames the bridge rule handed to the metadata proxy
_UNUSABLE = {"FAILED", "INCOMPLETE", "NOARP"}


def table_name(port: int) -> str:
    """One table name per NC (two NCs in one namespace have different ports)."""
    return f"eucalypt_nc_md_{port}"


@dataclass(frozen=True)
class Guarded:
    """An instance whose metadata this node serves."""

    instance_id: str
    tap: str
    mac: str
    bridge: str


@dataclass(frozen=True)
class BridgeInfo:
    mac: str | None
    ipv4: tuple[str, ...]


def metadata_tables(guarded: list[Guarded], bridge_macs: dict[str, str], port: int) -> NftState:
    """The NC's whole nftables state for ``guarded`` (pure: no host access)."""
    name = table_name(port)
    owned = (("bridge", name), ("ip", name))
    if not guarded:
        return NftState(owned=owned)
    bridge_rules: list[str] = []
    for g in sorted(guarded, key=lambda g: g.tap):
        mac = g.mac.lower()
        hand_up = f"meta mark set {MARK}"
        if g.bridge in bridge_macs:
            hand_up += f" ether daddr set {bridge_macs[g.bridge].lower()}"
        hand_up += " meta pkttype set host"
        bridge_rules += [
            f'iifname "{g.tap}" ether saddr != {mac} drop',
            f'iifname "{g.tap}" arp saddr ether != {mac} drop',
            f'iifname "{g.tap}" ip daddr {METADATA_IP} tcp dport 80 {hand_up}',
        ]
    redirects = [
        f'iifname "{b}" meta mark {MARK} ip daddr {METADATA_IP} tcp dport 80 redirect to :{port}'
        for b in sorted({g.bridge for g in guarded})
    ]
    return NftState(
        owned=owned,
        tables=(
            NftTable(
                "bridge",
                name,
                (
                    NftChain(
                        "prerouting",
                        "type filter hook prerouting priority dstnat; policy accept;",
                        tuple(bridge_rules),
                    ),
                ),
            ),
            NftTable(
                "ip",
                name,
                (
                    NftChain(
                        "prerouting",
                        "type nat hook prerouting priority dstnat; policy accept;",
                        tuple(redirects),
                    ),
                    NftChain(
                        "input",
                        "type filter hook input priority filter; policy accept;",
                        (f"tcp dport {port} meta mark != {MARK} drop",),
                    ),
                ),
            ),
        ),
    )


class NodeMetadata:
    """The node's metadata interception for its instances, and the proxy behind it."""

    def __init__(
        self,
        *,
        port: int,
        upstream: str,
        credential: Credential | None = None,
        region: str = "eucalypt-1",
        netns: str | None = None,
        runner: Runner | None = None,
    ) -> None:
        self.port = port
        self.netns = netns or None
        self.run = runner or CommandRunner()
        self.proxy = MetadataProxy(
            self.lookup, upstream, port, netns=self.netns, credential=credential, region=region
        )
        self.guarded: dict[str, Guarded] = {}
        self._lock = asyncio.Lock()
        self._serving = False
        self._touched = False  # whether tables of ours may be on the host
        self._warned: set[str] = set()

    # ------------------------------------------------------------------ instances
    async def add(self, instance_id: str, tap: str, network: NetworkSpec) -> None:
        """Serve ``instance_id``'s metadata on ``tap``; raises when the host refuses."""
        if not network.bridge:
            raise ValueError("node metadata needs the tap's bridge")
        g = Guarded(instance_id, tap, network.mac.lower(), network.bridge)
        async with self._lock:
            self.guarded[instance_id] = g
            try:
                await self._sync()
            except Exception:
                self.guarded.pop(instance_id, None)
                await self._sync_quietly()
                raise
        log.info("metadata served on the node", extra={"instance_id": instance_id, "tap": tap})

    async def adopt(self, found: list[tuple[str, str, NetworkSpec]]) -> None:
        """After an NC restart: the rules for every adopted instance (and only those)."""
        async with self._lock:
            for instance_id, tap, network in found:
                if network.bridge:
                    self.guarded[instance_id] = Guarded(
                        instance_id, tap, network.mac.lower(), network.bridge
                    )
            await self._sync()

    async def remove(self, instance_id: str) -> None:
        """Stop serving ``instance_id`` (idempotent); the last one takes the tables along."""
        async with self._lock:
            g = self.guarded.pop(instance_id, None)
            if g is None:
                return
            try:
                await self._sync()
            except Exception:
                self.guarded[instance_id] = g  # the next teardown attempt tries again
                raise

    async def sync(self) -> None:
        """The monitor's check: nothing runs but read-only commands when all is in place."""
        async with self._lock:
            if self.guarded or self._touched:
                await self._sync()

    async def close(self) -> None:
        """NC shutdown: no table left, the proxy stopped (the next start restores them)."""
        async with self._lock:
            if self._touched:
                await nftables.teardown(self.run, metadata_tables([], {}, self.port), self.netns)
            await self._stop_proxy()

    # ------------------------------------------------------------------ host state
    async def bridge_info(self, bridge: str) -> BridgeInfo:
        res = await self.run.run(
            ["ip", "-j", "addr", "show", "dev", bridge], netns=self.netns, check=False,
            readonly=True,
        )  # fmt: skip
        if res.returncode != 0:
            return BridgeInfo(None, ())
        links = json.loads(res.stdout or "[]")
        if not links:
            return BridgeInfo(None, ())
        ipv4 = tuple(
            f"{a['local']}/{a['prefixlen']}"
            for a in links[0].get("addr_info", [])
            if a.get("family") == "inet"
        )
        return BridgeInfo(links[0].get("address"), ipv4)

    async def _sync(self) -> None:
        guarded = list(self.guarded.values())
        macs: dict[str, str] = {}
        for bridge in sorted({g.bridge for g in guarded}):
            info = await self.bridge_info(bridge)
            if info.mac:
                macs[bridge] = info.mac
            if not info.ipv4 and bridge not in self._warned:
                self._warned.add(bridge)
                log.warning(
                    "the instances' bridge has no IPv4 address: the node cannot answer "
                    "their metadata requests (169.254.169.254); give the bridge an address "
                    "on the instances' LAN",
                    extra={"bridge": bridge},
                )
            elif info.ipv4:
                self._warned.discard(bridge)
        if guarded and not self._serving:
            await self.proxy.start()
            self._serving = True
        self._touched = True
        await nftables.apply(self.run, metadata_tables(guarded, macs, self.port), self.netns)
        if not guarded:
            self._touched = False  # nothing of ours is left: the monitor need not look
            await self._stop_proxy()

    async def _sync_quietly(self) -> None:
        try:
            await self._sync()
        except Exception as exc:
            log.warning("metadata rules not restored", extra={"error": str(exc)})

    async def _stop_proxy(self) -> None:
        if self._serving:
            self._serving = False
            await self.proxy.stop()

    # ------------------------------------------------------------------ who is asking
    async def lookup(self, ip: str) -> str | None:
        """The instance behind source address ``ip``: neighbour MAC, then its tap's FDB."""
        guarded = list(self.guarded.values())
        for bridge in sorted({g.bridge for g in guarded}):
            res = await self.run.run(
                ["ip", "-j", "neigh", "show", "to", ip, "dev", bridge],
                netns=self.netns, check=False, readonly=True,
            )  # fmt: skip
            if res.returncode != 0:
                continue
            for entry in json.loads(res.stdout or "[]"):
                mac = str(entry.get("lladdr", "")).lower()
                if not mac or _UNUSABLE & set(entry.get("state", [])):
                    continue
                for g in guarded:
                    if g.bridge == bridge and g.mac == mac and await self._learned_on(g):
                        return g.instance_id
        log.warning("metadata request from an unknown address", extra={"ip": ip})
        return None

    async def _learned_on(self, g: Guarded) -> bool:
        """Whether the bridge learned ``g.mac`` on ``g.tap`` (where replies to it go)."""
        res = await self.run.run(
            ["bridge", "-j", "fdb", "show", "br", g.bridge, "brport", g.tap],
            netns=self.netns, check=False, readonly=True,
        )  # fmt: skip
        if res.returncode != 0:
            return False
        return any(str(e.get("mac", "")).lower() == g.mac for e in json.loads(res.stdout or "[]"))
