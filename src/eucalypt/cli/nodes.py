"""``eucalypt admin node``: add, remove and list a cluster's Node Controllers.

These commands ask the running CC (``RegisterNode``, ``DeregisterNode``,
``DescribeNodes``), signed with the cloud administrator's key (the first
active key of ``eucalyptus/admin``, read from the CLC database); the CC
resolves that key through the CLC. A registered node is polled from then
on and kept in the CC's ``<data_dir>/cc/nodes.json`` across restarts; nodes
listed in ``cc.nodes`` are changed in the configuration instead.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TypeVar

import click
from rich.console import Console
from rich.table import Table

from eucalypt.auth.credentials import Credential
from eucalypt.cc.api import CcClient, NodeInfo
from eucalypt.clc.identity import ADMIN_USER, SYSTEM_ACCOUNT
from eucalypt.cli.common import config_option, load_config
from eucalypt.cli.env import user_key
from eucalypt.config import Config
from eucalypt.rpc import RemoteError

T = TypeVar("T")

json_option = click.option("--json", "as_json", is_flag=True, help="Print JSON (for scripts).")
cluster_option = click.option(
    "--cluster",
    "cluster_name",
    default=None,
    help="The cluster (availability zone) whose CC to ask; needed when there are several.",
)


def cc_url(config: Config, cluster_name: str | None) -> str:
    """The URL of the named cluster's CC (the only one when no name is given)."""
    if cluster_name is None:
        if len(config.clusters) == 1:
            return config.clusters[0].url
        names = ", ".join(c.name for c in config.clusters)
        raise click.ClickException(f"several clusters ({names}): name one with --cluster")
    for ref in config.clusters:
        if ref.name == cluster_name:
            return ref.url
    names = ", ".join(c.name for c in config.clusters)
    raise click.ClickException(f"no cluster {cluster_name!r}; known: {names}")


def ask_cc(
    config_path: Path | None, cluster_name: str | None, fn: Callable[[CcClient], Awaitable[T]]
) -> T:
    """Run ``fn`` with a client of the CC, signed as the cloud administrator."""
    config = load_config(config_path)
    url = cc_url(config, cluster_name)
    key = user_key(config, SYSTEM_ACCOUNT, ADMIN_USER)
    credential = Credential(
        access_key=key.access_key,
        secret_key=key.secret_key,
        account_id=key.account_id,
        user_name=key.user_name,
        is_admin=True,
    )

    async def go() -> T:
        client = CcClient(url, credential, region=config.region, timeout=30.0)
        try:
            return await fn(client)
        finally:
            await client.aclose()

    try:
        return asyncio.run(go())
    except RemoteError as exc:
        raise click.ClickException(f"{exc.code}: {exc.message}") from None


def _free(info: NodeInfo) -> tuple[str, str]:
    res = info.resources
    if res is None:
        return "-", "-"
    return (
        f"{res.cores_free}/{res.cores_total}",
        f"{res.memory_mib_free}/{res.memory_mib_total}",
    )


def show_nodes(nodes: list[NodeInfo], as_json: bool) -> None:
    if as_json:
        click.echo(json.dumps([n.model_dump(mode="json") for n in nodes], indent=2))
        return
    table = Table()
    for col in ("url", "state", "source", "node", "instances", "cores free", "MiB free"):
        table.add_column(col, overflow="fold")
    for n in nodes:
        cores, memory = _free(n)
        table.add_row(n.url, n.state, n.source, n.node, str(n.instances), cores, memory)
    console = Console()
    console.print(table)
    for n in nodes:
        if n.error:
            console.print(f"{n.url}: {n.error}", soft_wrap=True, markup=False)


@click.group("node")
def node_group() -> None:
    """Node Controllers of a cluster: register, deregister, list (asks the running CC)."""


@node_group.command("register")
@config_option
@cluster_option
@json_option
@click.argument("url")
def node_register(
    config_path: Path | None, cluster_name: str | None, as_json: bool, url: str
) -> None:
    """Add the NC at URL (http://host:port) to the cluster; idempotent.

    The CC polls it from then on and remembers it across restarts."""
    reply = ask_cc(config_path, cluster_name, lambda cc: cc.register_node(url))
    if as_json:
        click.echo(reply.model_dump_json(indent=2))
        return
    node = reply.node
    verb = "registered" if reply.added else "already known:"
    detail = f" ({node.error})" if node.error else ""
    click.echo(f"{verb} {node.url} [{node.source}], {node.state}{detail}")


@node_group.command("deregister")
@config_option
@cluster_option
@json_option
@click.option(
    "--force",
    is_flag=True,
    help="Even if it runs instances (they keep running, unknown to the cloud).",
)
@click.argument("url")
def node_deregister(
    config_path: Path | None, cluster_name: str | None, as_json: bool, force: bool, url: str
) -> None:
    """Stop using the registered NC at URL; refused while it runs instances (see --force)."""
    reply = ask_cc(config_path, cluster_name, lambda cc: cc.deregister_node(url, force=force))
    if as_json:
        click.echo(reply.model_dump_json(indent=2))
        return
    if reply.removed:
        click.echo(f"deregistered {reply.url}")
    else:
        click.echo(f"{reply.url} was not registered")


@node_group.command("list")
@config_option
@cluster_option
@json_option
def node_list(config_path: Path | None, cluster_name: str | None, as_json: bool) -> None:
    """The cluster's nodes: state at the last poll, configured or registered, instances."""
    reply = ask_cc(config_path, cluster_name, lambda cc: cc.describe_nodes())
    show_nodes(reply.nodes, as_json)
