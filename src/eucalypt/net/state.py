"""A host's whole network configuration as data: render, diff, apply, tear down.

:class:`HostState` says what eucalypt wants on one host (or network
namespace): which bridges and VXLAN devices exist (every link whose name
starts with one of ``link_prefixes`` is ours, and is deleted when not
wanted), which addresses of ours sit on foreign devices, a few sysctls,
and our iptables chains. :func:`apply` reads the host, changes only what
differs (iptables in one ``iptables-restore`` transaction) and does nothing
at all when the host already matches; :func:`teardown` removes everything
we own. Sysctls are set, never reverted (they belong to the host).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from eucalypt.net import iptables
from eucalypt.net.iptables import IptablesState
from eucalypt.net.links import (
    Bridge,
    HostAddresses,
    LinkInfo,
    Vxlan,
    ensure_bridge,
    ensure_host_addresses,
    ensure_vxlan,
    read_links,
)
from eucalypt.net.runner import Runner


@dataclass(frozen=True)
class HostState:
    link_prefixes: tuple[str, ...]
    bridges: tuple[Bridge, ...] = ()
    vxlans: tuple[Vxlan, ...] = ()
    host_addresses: tuple[HostAddresses, ...] = ()
    sysctls: tuple[tuple[str, str], ...] = ()
    iptables: IptablesState = dataclasses.field(default_factory=IptablesState)

    def owns(self, link: str) -> bool:
        return any(link.startswith(p) for p in self.link_prefixes)

    def empty(self) -> HostState:
        """The same ownership with nothing wanted: applying it removes all we own."""
        return HostState(
            link_prefixes=self.link_prefixes,
            host_addresses=tuple(
                HostAddresses(dev=h.dev, pool=h.pool) for h in self.host_addresses
            ),
            iptables=self.iptables.empty(),
        )

    def render(self) -> str:
        """A deterministic, human-readable text of the whole state (for logs and diffs)."""
        lines = [f"# links owned: {', '.join(self.link_prefixes)}"]
        for b in sorted(self.bridges, key=lambda b: b.name):
            lines.append(f"bridge {b.name} addr {' '.join(sorted(b.addresses)) or '-'}")
        for v in sorted(self.vxlans, key=lambda v: v.name):
            lines.append(
                f"vxlan {v.name} vni {v.vni} port {v.port} local {v.local or '-'} "
                f"master {v.master or '-'} peers {' '.join(sorted(v.peers)) or '-'}"
            )
        for h in sorted(self.host_addresses, key=lambda h: h.dev):
            lines.append(f"addresses {h.dev} {' '.join(sorted(h.addresses)) or '-'}")
        for key, value in sorted(self.sysctls):
            lines.append(f"sysctl {key}={value}")
        return "\n".join(lines) + "\n" + iptables.render(self.iptables)


async def _apply_sysctls(runner: Runner, state: HostState, netns: str | None) -> None:
    for key, value in state.sysctls:
        have = await runner.run(["sysctl", "-n", key], netns=netns, readonly=True)
        if have.stdout.strip() != value:
            await runner.run(["sysctl", "-q", "-w", f"{key}={value}"], netns=netns)


async def _remove_unwanted(
    runner: Runner, state: HostState, links: dict[str, LinkInfo], netns: str | None
) -> None:
    wanted = {b.name for b in state.bridges} | {v.name for v in state.vxlans}
    # VXLAN devices first, so no bridge is deleted under a port we still want.
    stale = sorted(
        (n for n, info in links.items() if state.owns(n) and n not in wanted),
        key=lambda n: (links[n].kind == "bridge", n),
    )
    for name in stale:
        await runner.run(["ip", "link", "del", name], netns=netns, check=False)


async def apply(runner: Runner, state: HostState, netns: str | None = None) -> None:
    """Make the host match ``state``; runs no changing command when it already does."""
    for link in (*(b.name for b in state.bridges), *(v.name for v in state.vxlans)):
        if not state.owns(link):
            raise ValueError(f"link {link} lacks an owned prefix {state.link_prefixes}")
    await _apply_sysctls(runner, state, netns)
    links = await read_links(runner, netns)
    await _remove_unwanted(runner, state, links, netns)
    for br in state.bridges:
        await ensure_bridge(runner, br, links.get(br.name), netns)
    for vx in state.vxlans:
        await ensure_vxlan(runner, vx, links.get(vx.name), netns)
    for ha in state.host_addresses:
        await ensure_host_addresses(runner, ha, links.get(ha.dev), netns)
    await iptables.apply(runner, state.iptables, netns)


async def teardown(runner: Runner, state: HostState, netns: str | None = None) -> None:
    """Remove every link, address and chain that ``state``'s ownership covers."""
    await apply(runner, state.empty(), netns)
