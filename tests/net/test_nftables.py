"""nftables tables as desired state: the transaction text, ownership, read-back (fake nft)."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest

from eucalypt.net import nftables
from eucalypt.net.nftables import NftChain, NftState, NftTable
from eucalypt.net.runner import CommandResult, RecordingRunner

TABLE = NftTable(
    "ip",
    "t",
    (NftChain("pre", "type nat hook prerouting priority dstnat; policy accept;", ("accept",)),),
)


class FakeNft:
    """``nft list table`` answers from ``tables``; ``nft -f`` replaces them from the script."""

    def __init__(self, tables: dict[tuple[str, str], str]) -> None:
        self.tables = tables

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
        if list(argv[:3]) == ["nft", "list", "table"]:
            key = (argv[3], argv[4])
            if key in self.tables:
                return CommandResult(tuple(argv), 0, self.tables[key], "")
            return CommandResult(tuple(argv), 1, "", "Error: No such file or directory\n")
        assert list(argv) == ["nft", "-f", "/dev/stdin"] and input is not None
        for key in list(self.tables):
            if f"delete table {key[0]} {key[1]}" in input:
                del self.tables[key]
        if "table ip t {" in input:
            self.tables[("ip", "t")] = input[input.index("table ip t {") :]
        return CommandResult(tuple(argv), 0, "", "")


def test_apply_replaces_whole_tables_once_then_does_nothing() -> None:
    fake = FakeNft({})
    runner = RecordingRunner(inner=fake)
    state = NftState(owned=(("ip", "t"), ("bridge", "t")), tables=(TABLE,))
    assert asyncio.run(nftables.apply(runner, state))
    (change,) = runner.changes
    assert change.input is not None
    assert change.input.startswith("table ip t\ndelete table ip t\ntable ip t {\n\tchain pre {")
    assert "bridge" not in change.input  # owned, absent, not wanted: left alone
    runner.clear()
    assert not asyncio.run(nftables.apply(runner, state))
    assert runner.changes == [] and len(runner.commands) == 2  # two read-only listings
    assert asyncio.run(nftables.teardown(runner, state))
    assert fake.tables == {}


def test_a_table_we_do_not_own_is_refused() -> None:
    state = NftState(owned=(("bridge", "t"),), tables=(TABLE,))
    with pytest.raises(ValueError, match="not one we own"):
        asyncio.run(nftables.apply(RecordingRunner(inner=FakeNft({})), state))


def test_render_is_nft_list_format() -> None:
    assert nftables.render_table(TABLE) == (
        "table ip t {\n\tchain pre {\n"
        "\t\ttype nat hook prerouting priority dstnat; policy accept;\n"
        "\t\taccept\n\t}\n}\n"
    )
