"""``eucalypt init``: create the cloud's configuration, keys and database."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import click

from eucalypt.clc.app import open_database
from eucalypt.clc.certs import CloudCA
from eucalypt.clc.identity import KeyInfo, bootstrap
from eucalypt.config import Config, default_data_dir
from eucalypt.net.local import local_network_defaults
from eucalypt.rpc.keys import ComponentKeys


@dataclass
class InitResult:
    config: Config
    admin: KeyInfo
    created: bool


def initialise(data_dir: Path) -> InitResult:
    """Idempotently create config, component keys, cloud CA, CLC schema and the admin key."""
    path = data_dir / "eucalypt.toml"
    created = not path.exists()
    config = Config.load(path) if not created else Config(data_dir=data_dir)
    if created:
        if os.geteuid() == 0:
            # A one-host cloud: the whole data plane in a namespace of its own (MANAGED
            # networking, public addresses reachable from this host through a veth).
            local_network_defaults(config)
            config.clc.auto_public_ip = True
        config.save()
    for d in (config.logs_dir, config.run_dir):
        d.mkdir(parents=True, exist_ok=True)
    ComponentKeys.generate(config.keys_dir)
    CloudCA.ensure(config.keys_dir, config.region)
    db = open_database(config)
    try:
        admin = db.run_sync(bootstrap)
    finally:
        db.dispose()
    return InitResult(config=config, admin=admin, created=created)


@click.command("init")
@click.option(
    "--data-dir",
    type=click.Path(path_type=Path, file_okay=False),
    default=None,
    help="Where the cloud keeps its state (default: $EUCALYPT_DATA_DIR or ~/.eucalypt).",
)
def init_command(data_dir: Path | None) -> None:
    """Create the cloud's configuration, keys, certificate and admin account.

    Safe to run again: existing state is kept.
    """
    result = initialise((data_dir or default_data_dir()).resolve())
    verb = "created" if result.created else "kept"
    click.echo(f"configuration {verb}: {result.config.config_path}")
    click.echo(f"admin access key: {result.admin.access_key} (account {result.admin.account_id})")
    click.echo('next: `eucalypt up`, then `eval "$(eucalypt env)"`')
