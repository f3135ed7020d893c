"""iptables as desired state: our own chains, rendered, diffed and applied in one step.

eucalypt owns every chain whose name starts with a prefix (``EUCA-`` by
default) and one plain jump (``-A FORWARD -j EUCA-FORWARD``) from a built-in
chain into each of its top-level chains. Nothing else in the host's rules is
read for a decision or changed.

:func:`render` gives the rules in ``iptables-save`` syntax; :func:`apply`
compares them with ``iptables-save``'s view of our chains and, only when they
differ, rewrites all our chains of the changed tables in ONE ``iptables-restore
--noflush`` transaction (declaring a chain there flushes it, so the rewrite
is atomic: no packet sees a half-built chain).

Rules are written the way ``iptables-save`` prints them (the
:class:`Rule` builder does that), so the comparison is textual.
"""

from __future__ import annotations

import ipaddress
from collections import Counter
from dataclasses import dataclass, field

from eucalypt.net.runner import Runner

BUILTIN_CHAINS = {
    "filter": ("INPUT", "FORWARD", "OUTPUT"),
    "nat": ("PREROUTING", "INPUT", "OUTPUT", "POSTROUTING"),
}


def cidr(value: str) -> str:
    """A CIDR as iptables-save prints it (host bits cleared, /32 for a host)."""
    return str(ipaddress.ip_network(value, strict=False))


def _neg(value: str) -> tuple[str, str]:
    return ("! ", value[1:]) if value.startswith("!") else ("", value)


@dataclass(frozen=True)
class Rule:
    """One rule; fields render in iptables-save's order.

    ``src``/``dst``/``in_``/``out`` may start with ``!`` to negate them.
    ``proto`` is ``tcp``, ``udp``, ``icmp`` or None (any). ``dport`` is
    ``"80"`` or ``"1000:2000"``; ``icmp_type`` is ``"8"`` or ``"8/0"``.
    ``extra`` is a raw match (e.g. ``-m conntrack --ctstate ...``) placed
    after the protocol match; ``target`` is ``-j`` and its options.
    """

    target: str
    src: str | None = None
    dst: str | None = None
    in_: str | None = None
    out: str | None = None
    proto: str | None = None
    dport: str | None = None
    icmp_type: str | None = None
    extra: str | None = None

    def render(self) -> str:
        parts: list[str] = []
        for flag, value in (("-s", self.src), ("-d", self.dst)):
            if value is None:
                continue
            neg, net = _neg(value)
            net = cidr(net)
            if net != "0.0.0.0/0":
                parts.append(f"{neg}{flag} {net}")
        for flag, value in (("-i", self.in_), ("-o", self.out)):
            if value is not None:
                neg, name = _neg(value)
                parts.append(f"{neg}{flag} {name}")
        if self.proto is not None:
            parts.append(f"-p {self.proto}")
            if self.proto in ("tcp", "udp") and self.dport is not None:
                parts.append(f"-m {self.proto} --dport {self.dport}")
            if self.proto == "icmp" and self.icmp_type is not None:
                parts.append(f"-m icmp --icmp-type {self.icmp_type}")
        if self.extra:
            parts.append(self.extra)
        parts.append(f"-j {self.target}")
        return " ".join(parts)


@dataclass(frozen=True)
class Chain:
    table: str
    name: str
    rules: tuple[str, ...] = ()


@dataclass(frozen=True)
class Jump:
    """``-I <builtin> 1 -j <chain>`` in ``table``."""

    table: str
    builtin: str
    chain: str


@dataclass(frozen=True)
class IptablesState:
    """Every chain we want (by prefix, every chain we own) and the jumps into them."""

    prefix: str = "EUCA-"
    chains: tuple[Chain, ...] = ()
    jumps: tuple[Jump, ...] = ()

    def empty(self) -> IptablesState:
        return IptablesState(prefix=self.prefix)


@dataclass
class _Table:
    chains: dict[str, list[str]] = field(default_factory=dict)
    jumps: list[tuple[str, str]] = field(default_factory=list)

    def key(self) -> tuple[object, ...]:
        return (sorted(self.chains.items()), sorted(self.jumps))


def parse_save(text: str, prefix: str) -> dict[str, _Table]:
    """Our chains and jumps per table, from ``iptables-save`` output."""
    tables: dict[str, _Table] = {}
    current: _Table | None = None
    for line in text.splitlines():
        if line.startswith("*"):
            current = tables.setdefault(line[1:].strip(), _Table())
        elif current is None or not line or line.startswith("#") or line == "COMMIT":
            continue
        elif line.startswith(":"):
            name = line[1:].split()[0]
            if name.startswith(prefix):
                current.chains.setdefault(name, [])
        elif line.startswith("-A "):
            _, chain, rest = line.split(" ", 2)
            if chain.startswith(prefix):
                current.chains.setdefault(chain, []).append(rest)
            elif rest.startswith("-j ") and rest[3:].strip().startswith(prefix):
                current.jumps.append((chain, rest[3:].strip()))
    return tables


def _desired(state: IptablesState) -> dict[str, _Table]:
    tables: dict[str, _Table] = {}
    for chain in state.chains:
        if not chain.name.startswith(state.prefix):
            raise ValueError(f"chain {chain.name} lacks the prefix {state.prefix}")
        tables.setdefault(chain.table, _Table()).chains[chain.name] = list(chain.rules)
    for jump in state.jumps:
        tables.setdefault(jump.table, _Table()).jumps.append((jump.builtin, jump.chain))
    return tables


def render(state: IptablesState) -> str:
    """The whole desired state in iptables-save syntax (deterministic)."""
    out: list[str] = []
    for table, t in sorted(_desired(state).items()):
        out.append(f"*{table}")
        out += [f":{name} - [0:0]" for name in sorted(t.chains)]
        out += [f"-A {builtin} -j {chain}" for builtin, chain in t.jumps]
        for name in sorted(t.chains):
            out += [f"-A {name} {rule}" for rule in t.chains[name]]
        out.append("COMMIT")
    return "\n".join(out) + "\n"


def _restore_table(table: str, want: _Table, have: _Table) -> list[str]:
    lines = [f"*{table}"]
    every = sorted(set(want.chains) | set(have.chains))
    lines += [f":{name} - [0:0]" for name in every]  # declares = flushes under --noflush
    extra = Counter(have.jumps) - Counter(want.jumps)
    missing = Counter(want.jumps) - Counter(have.jumps)
    for (builtin, chain), n in sorted(extra.items()):
        lines += [f"-D {builtin} -j {chain}"] * n
    for (builtin, chain), n in sorted(missing.items()):
        lines += [f"-I {builtin} 1 -j {chain}"] * n
    for name in sorted(want.chains):
        lines += [f"-A {name} {rule}" for rule in want.chains[name]]
    lines += [f"-X {name}" for name in every if name not in want.chains]
    lines.append("COMMIT")
    return lines


async def read(runner: Runner, prefix: str, netns: str | None = None) -> dict[str, _Table]:
    result = await runner.run(["iptables-save"], netns=netns, readonly=True)
    return parse_save(result.stdout, prefix)


async def apply(runner: Runner, state: IptablesState, netns: str | None = None) -> bool:
    """Make our chains exactly ``state``; returns whether anything was changed."""
    want = _desired(state)
    have = await read(runner, state.prefix, netns)
    lines: list[str] = []
    for table in sorted(set(want) | set(have)):
        w, h = want.get(table, _Table()), have.get(table, _Table())
        if w.key() != h.key():
            lines += _restore_table(table, w, h)
    if not lines:
        return False
    await runner.run(["iptables-restore", "--noflush"], input="\n".join(lines) + "\n", netns=netns)
    return True


async def teardown(runner: Runner, prefix: str = "EUCA-", netns: str | None = None) -> bool:
    """Remove every chain we own and every jump into them."""
    return await apply(runner, IptablesState(prefix=prefix), netns)
