"""RegisterNode / DeregisterNode / DescribeNodes with sim NCs, from the CLI as the cloud admin.

A CLC (for the admin's key), one configured sim NC (A, 2 slots) and one
more sim NC (B) that the admin registers with ``eucalypt admin node
register``. B is polled, used once A is full, kept across a CC restart
(``<data_dir>/cc/nodes.json``), refused deregistration while it runs an
instance, and deregistered after.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from eucalypt.auth.credentials import Credential
from eucalypt.cc.api import (
    CcClient,
    DescribeResourcesRequest,
    LaunchSpec,
    RunInstancesRequest,
    VmTypeSpec,
)
from eucalypt.cc.app import create_app as create_cc
from eucalypt.clc import identity
from eucalypt.clc.app import create_app as create_clc
from eucalypt.clc.app import open_database
from eucalypt.cli.init import initialise
from eucalypt.cli.main import cli
from eucalypt.config import CcConfig, ClcConfig, Config, NcConfig
from eucalypt.nc.api import BootImages, ImageRef, VmSpec
from eucalypt.nc.app import create_app as create_nc
from eucalypt.rpc import ComponentKeys, RemoteError
from tests.support.servers import free_port, serve_in_thread

VM = VmSpec(name="m1.small", cores=1, memory_mib=256, disk_gib=1)
SMALL = VmTypeSpec(name="m1.small", cores=1, memory_mib=256, disk_gib=1)


@dataclass
class Lab:
    config: Config
    node_a: str
    node_b: str
    admin: Credential
    user: Credential
    clc: Credential
    cc: contextlib.ExitStack  # the CC's server: close it to stop the CC

    def start_cc(self) -> None:
        self.cc = contextlib.ExitStack()
        self.cc.enter_context(serve_in_thread(create_cc(self.config), self.config.cc.port))

    def cli(self, *args: str) -> Any:
        # Through the top-level command, as an administrator types it (wide enough for
        # the table not to fold).
        return CliRunner().invoke(
            cli,
            ["admin", "node", args[0], "--config", str(self.config.config_path), *args[1:]],
            env={"COLUMNS": "200"},
        )

    def call(self, who: Credential, fn: Any) -> Any:
        async def go() -> Any:
            client = CcClient(self.config.cc.url, who, region=self.config.region)
            try:
                return await fn(client)
            finally:
                await client.aclose()

        return asyncio.run(go())

    def room(self) -> tuple[int, int, list[str]]:
        """DescribeResources for m1.small: available, maximum, and the nodes it reports."""
        reply = self.call(
            self.clc, lambda cc: cc.describe_resources(DescribeResourcesRequest(vm_types=[SMALL]))
        )
        vm = reply.vm_types[0]
        return vm.available, vm.maximum, [n.url for n in reply.nodes]

    def wait_up(self, url: str, timeout: float = 20.0) -> None:
        async def go() -> None:
            client = CcClient(self.config.cc.url, self.admin, region=self.config.region)
            try:
                deadline = asyncio.get_running_loop().time() + timeout
                while True:
                    nodes = (await client.describe_nodes([url])).nodes
                    if nodes and nodes[0].state == "up":
                        return
                    assert asyncio.get_running_loop().time() < deadline, f"{url} not up"
                    await asyncio.sleep(0.1)
            finally:
                await client.aclose()

        asyncio.run(go())


def key(info: identity.KeyInfo, admin: bool) -> Credential:
    return Credential(access_key=info.access_key, secret_key=info.secret_key, is_admin=admin)


def launch(instance_id: str) -> LaunchSpec:
    return LaunchSpec(
        instance_id=instance_id,
        owner_id="000000000001",
        vm=VM,
        images=BootImages(root=ImageRef(image_id="emi-1", url="http://127.0.0.1:9/sim")),
    )


@pytest.fixture
def lab(tmp_path: Path) -> Iterator[Lab]:
    port_a, port_b = free_port(), free_port()
    config = Config(
        data_dir=tmp_path,
        clc=ClcConfig(port=free_port()),
        cc=CcConfig(port=free_port(), nodes=[f"http://127.0.0.1:{port_a}"], poll_seconds=0.3),
    )
    config.save()
    admin = initialise(tmp_path).admin
    db = open_database(config)
    try:
        user = db.run_sync(
            lambda s: identity.create_access_key(
                s, identity.get_user(s, identity.create_account(s, "tester"), "admin")
            )
        )
    finally:
        db.dispose()
    keys = ComponentKeys.load(config.keys_dir)
    with contextlib.ExitStack() as stack:
        for name, port in (("a", port_a), ("b", port_b)):
            nc = config.model_copy(deep=True)
            nc.nc = NcConfig(
                port=port,
                hypervisor="sim",
                sim_boot_seconds=0.1,
                sim_cores=2,
                sim_memory_mib=2048,
                sim_disk_gib=20,
                reserve_memory_mib=0,
                instances_dir=str(tmp_path / name / "instances"),
                cache_dir=str(tmp_path / name / "cache"),
            )
            stack.enter_context(
                serve_in_thread(create_nc(nc, credentials=keys.store(["cc"])), port)
            )
        stack.enter_context(serve_in_thread(create_clc(config), config.clc.port))
        lab = Lab(
            config=config,
            node_a=f"http://127.0.0.1:{port_a}",
            node_b=f"http://127.0.0.1:{port_b}",
            admin=key(admin, True),
            user=key(user, False),
            clc=keys.credential("clc"),
            cc=contextlib.ExitStack(),
        )
        lab.start_cc()
        try:
            yield lab
        finally:
            lab.cc.close()


def test_registered_node_is_polled_used_kept_across_restart_and_deregistered(lab: Lab) -> None:
    lab.wait_up(lab.node_a)
    assert lab.room() == (2, 2, [lab.node_a])  # A: 2 cores
    out = lab.cli("register", lab.node_b + "/")
    assert out.exit_code == 0, out.output
    assert f"registered {lab.node_b} [registered], up" in out.output
    again = lab.cli("register", lab.node_b)
    assert again.exit_code == 0 and "already known" in again.output
    doc = json.loads((lab.config.data_dir / "cc" / "nodes.json").read_text())
    assert doc["nodes"] == [lab.node_b]
    assert lab.room() == (4, 4, [lab.node_a, lab.node_b])  # B's 2 cores count at once

    listed = json.loads(lab.cli("list", "--json").output)
    assert [(n["url"], n["source"], n["state"]) for n in listed] == [
        (lab.node_a, "config", "up"),
        (lab.node_b, "registered", "up"),
    ]

    # First fit: A's two slots, then B.
    placed = lab.call(
        lab.clc,
        lambda cc: cc.run_instances(
            RunInstancesRequest(instances=[launch(f"i-reg{k}") for k in range(3)])
        ),
    )
    assert [r.ok for r in placed.results] == [True, True, True]
    assert [r.node_url for r in placed.results].count(lab.node_b) == 1
    on_b = next(r.instance_id for r in placed.results if r.node_url == lab.node_b)
    assert lab.room()[:2] == (1, 4)

    refused = lab.cli("deregister", lab.node_b)
    assert refused.exit_code != 0 and "NodeInUse" in refused.output

    # A restarted CC polls B again (from nodes.json) and finds its instance there.
    lab.cc.close()
    lab.start_cc()
    lab.wait_up(lab.node_b)
    found = lab.call(lab.clc, lambda cc: cc.describe_instances([on_b])).instances
    assert found[0].node_url == lab.node_b
    nodes = lab.call(lab.admin, lambda cc: cc.describe_nodes()).nodes
    assert {n.url: (n.source, n.instances) for n in nodes}[lab.node_b] == ("registered", 1)
    lab.wait_up(lab.node_a)
    assert lab.room() == (1, 4, [lab.node_a, lab.node_b])
    shown = lab.cli("list")
    assert shown.exit_code == 0 and "registered" in shown.output and "1/2" in shown.output

    lab.call(lab.clc, lambda cc: cc.terminate_instances([on_b]))
    gone = lab.cli("deregister", lab.node_b)
    assert gone.exit_code == 0 and f"deregistered {lab.node_b}" in gone.output
    assert json.loads((lab.config.data_dir / "cc" / "nodes.json").read_text())["nodes"] == []
    nodes = lab.call(lab.admin, lambda cc: cc.describe_nodes()).nodes
    assert [n.url for n in nodes] == [lab.node_a]
    assert lab.room() == (0, 2, [lab.node_a])
    twice = lab.cli("deregister", lab.node_b)
    assert twice.exit_code == 0 and "was not registered" in twice.output

    # A full A, and B gone: no room.
    more = lab.call(
        lab.clc, lambda cc: cc.run_instances(RunInstancesRequest(instances=[launch("i-reg9")]))
    )
    assert more.results[0].error_code == "InsufficientInstanceCapacity"

    # Restarted once more: B stays forgotten.
    lab.cc.close()
    lab.start_cc()
    lab.wait_up(lab.node_a)
    assert lab.room() == (0, 2, [lab.node_a])


def test_admin_node_help() -> None:
    runner = CliRunner()
    top = runner.invoke(cli, ["admin", "--help"])
    assert top.exit_code == 0 and "node" in top.output
    for sub, words in (
        ("register", ["URL", "--cluster", "--json"]),
        ("deregister", ["URL", "--force"]),
        ("list", ["--json", "--cluster"]),
    ):
        out = runner.invoke(cli, ["admin", "node", sub, "--help"])
        assert out.exit_code == 0, out.output
        assert all(w in out.output for w in words), out.output


def test_register_rules(lab: Lab) -> None:
    lab.wait_up(lab.node_a)

    def err(who: Credential, fn: Any) -> str:
        with pytest.raises(RemoteError) as caught:
            lab.call(who, fn)
        return caught.value.code

    assert err(lab.admin, lambda cc: cc.register_node("ftp://host:1")) == "InvalidRequest"
    assert err(lab.admin, lambda cc: cc.register_node("http://:8775")) == "InvalidRequest"
    assert err(lab.admin, lambda cc: cc.deregister_node(lab.node_a)) == "NodeConfigured"
    assert err(lab.user, lambda cc: cc.register_node(lab.node_b)) == "AccessDenied"
    unknown = Credential(access_key="AKIDNOSUCHKEY0000000", secret_key="x")
    assert err(unknown, lambda cc: cc.describe_nodes()) == "AuthFailure"

    # Registering a configured node changes nothing; the CLC's key may register too.
    same = lab.call(lab.clc, lambda cc: cc.register_node(lab.node_a))
    assert (same.added, same.node.source) == (False, "config")

    # Nothing listens there: registered all the same (polled from now on), and down.
    dead = f"http://127.0.0.1:{free_port()}"
    reply = lab.call(lab.admin, lambda cc: cc.register_node(dead))
    assert reply.added and reply.node.state == "down" and reply.node.error
    listed = lab.cli("list")
    assert listed.exit_code == 0 and dead in listed.output and "down" in listed.output
    # A down node takes nothing; deregistering it (no instances) needs no force.
    done = lab.call(lab.admin, lambda cc: cc.deregister_node(dead))
    assert done.removed and done.node is not None and done.node.state == "down"

    # Forced: a node that runs an instance is forgotten all the same.
    lab.call(lab.admin, lambda cc: cc.register_node(lab.node_b))
    lab.call(
        lab.clc,
        lambda cc: cc.run_instances(
            RunInstancesRequest(instances=[launch(f"i-rule{k}") for k in range(3)])
        ),
    )
    assert err(lab.admin, lambda cc: cc.deregister_node(lab.node_b)) == "NodeInUse"
    forced = lab.cli("deregister", "--force", lab.node_b)
    assert forced.exit_code == 0, forced.output
    left = lab.call(lab.clc, lambda cc: cc.describe_instances()).instances
    assert {i.node_url for i in left} == {lab.node_a}


def test_unknown_key_while_the_clc_is_away_is_service_unavailable(tmp_path: Path) -> None:
    config = Config(
        data_dir=tmp_path,
        clc=ClcConfig(port=free_port()),  # nothing listens there
        cc=CcConfig(port=free_port(), nodes=[]),
    )
    keys = ComponentKeys.generate(config.keys_dir)

    async def ask(who: Credential) -> Any:
        client = CcClient(config.cc.url, who, region=config.region)
        try:
            return await client.describe_nodes()
        finally:
            await client.aclose()

    with serve_in_thread(create_cc(config), config.cc.port):
        assert asyncio.run(ask(keys.credential("clc"))).nodes == []  # component keys: local
        with pytest.raises(RemoteError) as caught:
            asyncio.run(ask(Credential(access_key="AKIDSOMEADMIN0000000", secret_key="x")))
    assert caught.value.code == "ServiceUnavailable"
    assert "CLC" in caught.value.message
