"""Desired state on a real (namespaced) host: render, apply, apply again, tear down."""

from __future__ import annotations

import pytest

from eucalypt.net import iptables
from eucalypt.net.iptables import Chain, IptablesState, Jump, Rule
from eucalypt.net.links import Bridge, HostAddresses, Vxlan, read_fdb_peers, read_links
from eucalypt.net.runner import CommandError, RecordingRunner
from eucalypt.net.state import HostState, apply, teardown
from tests.net.helpers import Lab, needs_root, run_async

pytestmark = [pytest.mark.netns, needs_root]


def sample_iptables() -> IptablesState:
    group = (
        Rule("ACCEPT", src="10.1.0.0/24", proto="tcp", dport="22").render(),
        Rule("ACCEPT", src="0.0.0.0/0", proto="tcp", dport="1000:2000").render(),
        Rule("ACCEPT", src="192.0.2.7", proto="udp", dport="53").render(),
        Rule("ACCEPT", proto="icmp", icmp_type="8").render(),
        Rule("ACCEPT", proto="icmp", icmp_type="3/4").render(),
        Rule("ACCEPT", src="10.9.0.0/16").render(),
        Rule("DROP").render(),
    )
    forward = (
        Rule("ACCEPT", extra="-m conntrack --ctstate RELATED,ESTABLISHED").render(),
        Rule("DROP", src="!10.128.0.0/24", in_="eubr1000").render(),
        Rule("EUCA-GROUP-0", dst="10.128.0.0/24").render(),
        Rule("DROP", dst="10.128.0.0/16").render(),
    )
    nat_pre = (
        Rule(
            "REDIRECT --to-ports 8779",
            dst="169.254.169.254",
            in_="eubr1000",
            proto="tcp",
            dport="80",
        ).render(),
        Rule("DNAT --to-destination 10.128.0.4", dst="198.51.100.10").render(),
    )
    nat_post = (
        Rule("RETURN", src="10.128.0.0/16", dst="10.128.0.0/16").render(),
        Rule("SNAT --to-source 198.51.100.10", src="10.128.0.4").render(),
        Rule("MASQUERADE", src="10.128.0.0/16", out="pub0").render(),
    )
    return IptablesState(
        chains=(
            Chain("filter", "EUCA-FORWARD", forward),
            Chain("filter", "EUCA-GROUP-0", group),
            Chain(
                "filter",
                "EUCA-INPUT",
                (Rule("DROP", in_="!eubr+", proto="tcp", dport="8779").render(),),
            ),
            Chain("nat", "EUCA-PREROUTING", nat_pre),
            Chain("nat", "EUCA-POSTROUTING", nat_post),
        ),
        jumps=(
            Jump("filter", "FORWARD", "EUCA-FORWARD"),
            Jump("filter", "INPUT", "EUCA-INPUT"),
            Jump("nat", "PREROUTING", "EUCA-PREROUTING"),
            Jump("nat", "POSTROUTING", "EUCA-POSTROUTING"),
        ),
    )


def sample_state() -> HostState:
    return HostState(
        link_prefixes=("eubr", "euvx"),
        bridges=(Bridge("eubr1000", ("10.128.0.1/24",)), Bridge("eubr1001", ("10.128.1.1/24",))),
        vxlans=(
            Vxlan("euvx1000", 1000, "eubr1000", ("192.0.2.11", "192.0.2.12"), local="192.0.2.1"),
            Vxlan("euvx1001", 1001, "eubr1001", ("192.0.2.11",), local="192.0.2.1"),
        ),
        host_addresses=(HostAddresses("pub0", ("198.51.100.8/29",), ("198.51.100.10/32",)),),
        sysctls=(("net.ipv4.ip_forward", "1"),),
        iptables=sample_iptables(),
    )


async def prepared_host(lab: Lab) -> str:
    ns = await lab.netns("host")
    # (no dummy devices in this kernel: veth pairs stand in for NICs)
    await lab.sh(ns, "ip", "link", "add", "under0", "type", "veth", "peer", "name", "under0p")
    await lab.sh(ns, "ip", "addr", "add", "192.0.2.1/24", "dev", "under0")
    await lab.sh(ns, "ip", "link", "add", "pub0", "type", "veth", "peer", "name", "pub0p")
    await lab.sh(ns, "ip", "addr", "add", "198.51.100.1/24", "dev", "pub0")
    for dev in ("under0", "under0p", "pub0", "pub0p"):
        await lab.sh(ns, "ip", "link", "set", dev, "up")
    # Rules that are not ours, which must survive everything.
    await lab.sh(ns, "iptables", "-A", "FORWARD", "-s", "203.0.113.0/24", "-j", "ACCEPT")
    await lab.sh(ns, "iptables", "-t", "nat", "-N", "OTHER-CHAIN")
    return ns


async def snapshot(lab: Lab, ns: str) -> tuple[str, str, str]:
    rules = (await lab.sh(ns, "iptables-save")).stdout
    rules = "\n".join(ln for ln in rules.splitlines() if not ln.startswith("#"))
    links = (await lab.sh(ns, "ip", "-br", "link")).stdout
    addrs = (await lab.sh(ns, "ip", "-br", "-4", "addr")).stdout
    return rules, links, addrs


def test_render_is_deterministic() -> None:
    a, b = sample_state(), sample_state()
    assert a.render() == b.render()
    assert iptables.render(a.iptables) == iptables.render(b.iptables)
    text = iptables.render(a.iptables)
    assert "-A FORWARD -j EUCA-FORWARD" in text
    assert "-A EUCA-GROUP-0 -s 10.1.0.0/24 -p tcp -m tcp --dport 22 -j ACCEPT" in text
    # 0.0.0.0/0 is not written, as iptables-save would not print it
    assert "-A EUCA-GROUP-0 -p tcp -m tcp --dport 1000:2000 -j ACCEPT" in text


@run_async
async def test_apply_twice_changes_nothing_and_teardown_restores() -> None:
    async with Lab() as lab:
        ns = await prepared_host(lab)
        before = await snapshot(lab, ns)
        rec = RecordingRunner(lab.runner)
        await apply(rec, sample_state(), ns)
        assert rec.changes, "the first apply must change the host"

        links = await read_links(lab.runner, ns)
        assert links["euvx1000"].master == "eubr1000" and links["euvx1000"].up
        assert links["eubr1000"].addresses == {"10.128.0.1/24"}
        assert "198.51.100.10/32" in links["pub0"].addresses
        assert await read_fdb_peers(lab.runner, "euvx1000", ns) == {"192.0.2.11", "192.0.2.12"}
        saved = (await lab.sh(ns, "iptables-save")).stdout
        for line in iptables.render(sample_iptables()).splitlines():
            if line.startswith("-A"):
                assert line in saved

        rec.clear()
        await apply(rec, sample_state(), ns)
        assert rec.changes == [], f"second apply changed: {rec.changes}"

        await teardown(lab.runner, sample_state(), ns)
        assert await snapshot(lab, ns) == before


@run_async
async def test_apply_converges_on_changes() -> None:
    async with Lab() as lab:
        ns = await prepared_host(lab)
        await apply(lab.runner, sample_state(), ns)
        smaller = HostState(
            link_prefixes=("eubr", "euvx"),
            bridges=(Bridge("eubr1000", ("10.128.0.1/24",)),),
            vxlans=(Vxlan("euvx1000", 1000, "eubr1000", ("192.0.2.12",), local="192.0.2.1"),),
            host_addresses=(HostAddresses("pub0", ("198.51.100.8/29",), ()),),
            iptables=IptablesState(
                chains=(
                    Chain("filter", "EUCA-FORWARD", (Rule("DROP", dst="10.0.0.0/8").render(),)),
                ),
                jumps=(Jump("filter", "FORWARD", "EUCA-FORWARD"),),
            ),
        )
        rec = RecordingRunner(lab.runner)
        await apply(rec, smaller, ns)
        # one transaction rewrote the chains of both tables
        restores = [c for c in rec.changes if c.argv[0] == "iptables-restore"]
        assert len(restores) == 1
        assert "*filter" in (restores[0].input or "") and "*nat" in (restores[0].input or "")
        links = await read_links(lab.runner, ns)
        assert "eubr1001" not in links and "euvx1001" not in links
        assert await read_fdb_peers(lab.runner, "euvx1000", ns) == {"192.0.2.12"}
        assert "198.51.100.10/32" not in links["pub0"].addresses
        assert "198.51.100.1/24" in links["pub0"].addresses  # not ours: untouched
        saved = (await lab.sh(ns, "iptables-save")).stdout
        assert "EUCA-GROUP-0" not in saved and "EUCA-PREROUTING" not in saved
        assert "-A EUCA-FORWARD -d 10.0.0.0/8 -j DROP" in saved
        assert saved.count("-j EUCA-FORWARD") == 1
        assert "-A FORWARD -s 203.0.113.0/24 -j ACCEPT" in saved
        rec.clear()
        await apply(rec, smaller, ns)
        assert rec.changes == []


@run_async
async def test_iptables_failure_changes_nothing() -> None:
    async with Lab() as lab:
        ns = await prepared_host(lab)
        await iptables.apply(lab.runner, sample_iptables(), ns)
        before = (await lab.sh(ns, "iptables-save")).stdout
        broken = IptablesState(
            chains=(
                Chain("filter", "EUCA-FORWARD", ("-j ACCEPT",)),
                Chain("filter", "EUCA-GROUP-0", ("-p tcp --no-such-option -j ACCEPT",)),
            ),
            jumps=(Jump("filter", "FORWARD", "EUCA-FORWARD"),),
        )
        with pytest.raises(CommandError) as err:
            await iptables.apply(lab.runner, broken, ns)
        assert "iptables-restore" in str(err.value)
        after = (await lab.sh(ns, "iptables-save")).stdout
        strip = lambda t: [ln for ln in t.splitlines() if not ln.startswith("#")]  # noqa: E731
        assert strip(after) == strip(before)
