"""The CC's iptables, rendered from its networks (pure functions, no host access).

filter:
  ``EUCA-INPUT``    the metadata proxy's port is reachable from instance
                    interfaces only.
  ``EUCA-FORWARD``  established traffic passes; an instance interface only
                    carries its own subnet's sources (MANAGED: no spoofing);
                    traffic inside one network passes; traffic *to* a
                    network goes through that network's ``EUCA-GROUP-<i>``
                    chain (its ingress rules, then DROP); anything else to
                    the private range is dropped; instances' own outgoing
                    traffic passes (egress is open, as in EC2).
nat:
  ``EUCA-PREROUTING``  169.254.169.254:80 from instance interfaces is
                       redirected to the proxy; public → private DNAT.
  ``EUCA-OUTPUT``      the same DNAT for connections from the CC host itself.
  ``EUCA-POSTROUTING`` no NAT between private networks; private → public
                       SNAT for mapped instances; others masquerade on the
                       public interface, if there is one.
"""

from __future__ import annotations

from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Network

from eucalypt.cc.netapi import IngressRule
from eucalypt.net.iptables import Chain, IptablesState, Jump, Rule

METADATA_IP = "169.254.169.254"
PREFIX = "EUCA-"

JUMPS = (
    Jump("filter", "INPUT", "EUCA-INPUT"),
    Jump("filter", "FORWARD", "EUCA-FORWARD"),
    Jump("nat", "PREROUTING", "EUCA-PREROUTING"),
    Jump("nat", "OUTPUT", "EUCA-OUTPUT"),
    Jump("nat", "POSTROUTING", "EUCA-POSTROUTING"),
)


@dataclass(frozen=True)
class NetView:
    """One network with instances on this CC."""

    index: int
    subnet: IPv4Network
    bridge: str
    rules: tuple[IngressRule, ...] = ()
    # The group chain's rules exactly as found on the host (a restarted CC keeps
    # them until the CLC pushes the group's rules again); None: render ``rules``.
    kept: tuple[str, ...] | None = None


@dataclass(frozen=True)
class FirewallPlan:
    private_range: IPv4Network
    networks: tuple[NetView, ...]
    # group id -> subnet, for rules that name a source group
    group_subnets: dict[str, IPv4Network]
    # public -> private
    nat: tuple[tuple[IPv4Address, IPv4Address], ...]
    metadata_port: int
    public_interface: str | None = None
    anti_spoof: bool = True


def group_chain(index: int) -> str:
    """The filter chain of network ``index``'s ingress rules."""
    return f"{PREFIX}GROUP-{index}"


def dnat_target(line: str) -> tuple[IPv4Address, IPv4Address] | None:
    """(public, private) of a DNAT rule as ``managed_iptables`` renders it, else None."""
    parts = line.split()
    if parts[:1] != ["-d"] or parts[2:5] != ["-j", "DNAT", "--to-destination"] or len(parts) != 6:
        return None
    try:
        return IPv4Network(parts[1]).network_address, IPv4Address(parts[5])
    except ValueError:
        return None


def _ports(rule: IngressRule) -> str | None:
    lo, hi = rule.from_port, rule.to_port
    if lo == -1 or hi == -1 or (lo <= 0 and hi >= 65535):
        return None
    return str(lo) if lo == hi else f"{lo}:{hi}"


def _icmp(rule: IngressRule) -> str | None:
    if rule.from_port == -1:
        return None
    return str(rule.from_port) if rule.to_port == -1 else f"{rule.from_port}/{rule.to_port}"


def ingress_rules(rules: tuple[IngressRule, ...], groups: dict[str, IPv4Network]) -> list[str]:
    """A group chain's rules: one ACCEPT per permission (deduplicated, in order), then DROP.

    A permission naming a group this CC does not know allows nothing.
    """
    out: list[str] = []
    for r in rules:
        if r.cidr is not None:
            src = r.cidr
        elif r.source_group in groups:
            src = str(groups[r.source_group])
        else:
            continue
        if r.protocol == "-1":
            line = Rule("ACCEPT", src=src).render()
        elif r.protocol == "icmp":
            line = Rule("ACCEPT", src=src, proto="icmp", icmp_type=_icmp(r)).render()
        else:
            line = Rule("ACCEPT", src=src, proto=r.protocol, dport=_ports(r)).render()
        if line not in out:
            out.append(line)
    out.append(Rule("DROP").render())
    return out


def metadata_chains(interfaces: list[str], port: int) -> tuple[list[str], list[str]]:
    """(EUCA-INPUT rules, EUCA-PREROUTING rules) that bring instances' metadata to the proxy."""
    inp = [Rule("ACCEPT", in_=i, proto="tcp", dport=str(port)).render() for i in sorted(interfaces)]
    inp.append(Rule("DROP", proto="tcp", dport=str(port)).render())
    pre = [
        Rule(
            f"REDIRECT --to-ports {port}",
            dst=METADATA_IP,
            in_=i,
            proto="tcp",
            dport="80",
        ).render()
        for i in sorted(interfaces)
    ]
    return inp, pre


def _forward(plan: FirewallPlan) -> list[str]:
    rules = [Rule("ACCEPT", extra="-m conntrack --ctstate RELATED,ESTABLISHED").render()]
    nets = sorted(plan.networks, key=lambda n: n.index)
    if plan.anti_spoof:
        rules += [Rule("DROP", src=f"!{n.subnet}", in_=n.bridge).render() for n in nets]
    rules += [Rule("ACCEPT", src=str(n.subnet), dst=str(n.subnet)).render() for n in nets]
    rules += [Rule(group_chain(n.index), dst=str(n.subnet)).render() for n in nets]
    rules.append(Rule("DROP", dst=str(plan.private_range)).render())
    rules.append(Rule("ACCEPT", src=str(plan.private_range)).render())
    return rules


def _postrouting(plan: FirewallPlan) -> list[str]:
    rng = str(plan.private_range)
    rules = [Rule("RETURN", src=rng, dst=rng).render()]
    rules += [
        Rule(f"SNAT --to-source {pub}", src=str(priv)).render() for pub, priv in sorted(plan.nat)
    ]
    if plan.public_interface:
        rules.append(Rule("MASQUERADE", src=rng, out=plan.public_interface).render())
    return rules


def managed_iptables(plan: FirewallPlan) -> IptablesState:
    """The whole of the CC's chains for the MANAGED modes."""
    bridges = sorted({n.bridge for n in plan.networks})
    inp, pre = metadata_chains(bridges, plan.metadata_port)
    dnat = [Rule(f"DNAT --to-destination {priv}", dst=str(pub)).render() for pub, priv in plan.nat]
    chains = [
        Chain("filter", "EUCA-INPUT", tuple(inp)),
        Chain("filter", "EUCA-FORWARD", tuple(_forward(plan))),
        Chain("nat", "EUCA-PREROUTING", tuple(pre + sorted(dnat))),
        Chain("nat", "EUCA-OUTPUT", tuple(sorted(dnat))),
        Chain("nat", "EUCA-POSTROUTING", tuple(_postrouting(plan))),
    ]
    chains += [
        Chain(
            "filter",
            group_chain(n.index),
            n.kept if n.kept is not None else tuple(ingress_rules(n.rules, plan.group_subnets)),
        )
        for n in sorted(plan.networks, key=lambda n: n.index)
    ]
    return IptablesState(prefix=PREFIX, chains=tuple(chains), jumps=JUMPS)


def metadata_iptables(interfaces: list[str], port: int) -> IptablesState:
    """SYSTEM/STATIC: only the metadata redirect and the proxy port's protection."""
    if not interfaces:
        return IptablesState(prefix=PREFIX)
    inp, pre = metadata_chains(interfaces, port)
    return IptablesState(
        prefix=PREFIX,
        chains=(
            Chain("filter", "EUCA-INPUT", tuple(inp)),
            Chain("nat", "EUCA-PREROUTING", tuple(pre)),
        ),
        jumps=(JUMPS[0], JUMPS[2]),
    )
