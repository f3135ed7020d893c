"""nftables as desired state: whole tables of our own, rendered, diffed and applied in one step.

eucalypt owns a few nftables tables by (family, name) (:class:`NftState`
``owned``); nothing else in the host's ruleset is read for a decision or
changed. :func:`render_table` writes a table exactly as ``nft list table``
prints it, so :func:`apply` compares the two texts (``nft list table``, a
read-only command) and, only when an owned table differs from what is
wanted, replaces it in ONE ``nft -f`` transaction::

    table bridge t          # create it if missing (so the delete cannot fail)
    delete table bridge t   # drop the old rules ...
    table bridge t { ... }  # ... and load the new ones, all or nothing

A table that is owned but not wanted is deleted (the same first two lines).
Applying twice runs no changing command the second time.
"""

from __future__ import annotations

from dataclasses import dataclass

from eucalypt.net.runner import CommandError, Runner

_ABSENT = ("No such file or directory", "does not exist")


@dataclass(frozen=True)
class NftChain:
    """One chain; ``base`` is its hook line, e.g.
    ``type filter hook prerouting priority dstnat; policy accept;`` (None: a regular chain).
    ``rules`` are written as ``nft list`` prints them."""

    name: str
    base: str | None = None
    rules: tuple[str, ...] = ()


@dataclass(frozen=True)
class NftTable:
    family: str  # ip, ip6, inet, bridge, arp, netdev
    name: str
    chains: tuple[NftChain, ...] = ()

    @property
    def key(self) -> tuple[str, str]:
        return (self.family, self.name)


@dataclass(frozen=True)
class NftState:
    """The tables eucalypt owns on one host (or namespace), and the ones it wants."""

    owned: tuple[tuple[str, str], ...] = ()
    tables: tuple[NftTable, ...] = ()

    def empty(self) -> NftState:
        """The same ownership with nothing wanted: applying it deletes every owned table."""
        return NftState(owned=self.owned)


def render_table(table: NftTable) -> str:
    """``table`` as ``nft list table`` prints it (tabs, one rule a line)."""
    lines = [f"table {table.family} {table.name} {{"]
    for i, chain in enumerate(table.chains):
        if i:
            lines.append("")
        lines.append(f"\tchain {chain.name} {{")
        if chain.base:
            lines.append(f"\t\t{chain.base}")
        lines += [f"\t\t{rule}" for rule in chain.rules]
        lines.append("\t}")
    lines.append("}")
    return "\n".join(lines) + "\n"


def render(state: NftState) -> str:
    """Every wanted table, in a stable order (for logs and ``nft -f``)."""
    return "".join(render_table(t) for t in sorted(state.tables, key=lambda t: t.key))


def _normal(text: str) -> list[str]:
    return [line.strip() for line in text.splitlines() if line.strip()]


async def read_table(
    runner: Runner, family: str, name: str, netns: str | None = None
) -> str | None:
    """``nft list table FAMILY NAME`` (None when there is no such table)."""
    res = await runner.run(
        ["nft", "list", "table", family, name], netns=netns, check=False, readonly=True
    )
    if res.returncode == 0:
        return res.stdout
    if any(m in res.stderr for m in _ABSENT):
        return None
    raise CommandError(res)


def script(changes: list[tuple[tuple[str, str], NftTable | None]]) -> str:
    """The one ``nft -f`` transaction that replaces (or deletes) each changed table."""
    out: list[str] = []
    for (family, name), table in changes:
        out += [f"table {family} {name}", f"delete table {family} {name}"]
        if table is not None:
            out.append(render_table(table).rstrip("\n"))
    return "\n".join(out) + "\n"


async def apply(runner: Runner, state: NftState, netns: str | None = None) -> bool:
    """Make the owned tables match ``state``; True when something had to change."""
    wanted = {t.key: t for t in state.tables}
    for key in wanted:
        if key not in state.owned:
            raise ValueError(f"table {key[0]} {key[1]} is not one we own {state.owned}")
    changes: list[tuple[tuple[str, str], NftTable | None]] = []
    for family, name in state.owned:
        have = await read_table(runner, family, name, netns)
        want = wanted.get((family, name))
        if have is None and want is None:
            continue
        if have is not None and want is not None and _normal(have) == _normal(render_table(want)):
            continue
        changes.append(((family, name), want))
    if not changes:
        return False
    await runner.run(["nft", "-f", "/dev/stdin"], input=script(changes), netns=netns)
    return True


async def teardown(runner: Runner, state: NftState, netns: str | None = None) -> bool:
    """Delete every table ``state`` owns."""
    return await apply(runner, state.empty(), netns)
