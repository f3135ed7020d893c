"""The ``eucalypt`` command."""

from __future__ import annotations

import click

from eucalypt import __version__
from eucalypt.cli.admin import admin_group
from eucalypt.cli.bundle import bundle_group
from eucalypt.cli.cloud import (
    down_command,
    serve_command,
    status_command,
    supervise_command,
    up_command,
)
from eucalypt.cli.env import env_command
from eucalypt.cli.images import image_group
from eucalypt.cli.init import init_command


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="eucalypt")
def cli() -> None:
    """eucalypt: an open-source IaaS cloud (EC2 + S3 compatible) you can run on a laptop.

    Start with `eucalypt up`, then `eval "$(eucalypt env)"` and use the AWS CLI.
    """


for command in (
    init_command,
    up_command,
    down_command,
    status_command,
    env_command,
    serve_command,
    supervise_command,
    admin_group,
    image_group,
    bundle_group,
):
    cli.add_command(command)


def main() -> None:
    cli()
