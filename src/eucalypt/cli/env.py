"""``eucalypt env``: shell exports that make unmodified AWS tools use this cloud."""

from __future__ import annotations

import shlex
from pathlib import Path

import click

from eucalypt.clc.app import open_database
from eucalypt.clc.identity import (
    ADMIN_USER,
    SYSTEM_ACCOUNT,
    KeyInfo,
    bootstrap,
    create_access_key,
    get_account,
    get_user,
    list_access_keys,
)
from eucalypt.cli.common import config_option, load_config
from eucalypt.config import Config


def user_key(config: Config, account: str, user: str) -> KeyInfo:
    """The first active key of ``account``/``user`` (made when there is none)."""
    db = open_database(config)
    try:
        if account == SYSTEM_ACCOUNT and user == ADMIN_USER:
            return db.run_sync(bootstrap)

        def pick(session):  # type: ignore[no-untyped-def]
            u = get_user(session, get_account(session, account), user)
            for key in list_access_keys(session, u):
                if key.active:
                    return key
            return create_access_key(session, u)

        return db.run_sync(pick)
    finally:
        db.dispose()


def exports(config: Config, key: KeyInfo) -> dict[str, str]:
    return {
        "AWS_ACCESS_KEY_ID": key.access_key,
        "AWS_SECRET_ACCESS_KEY": key.secret_key,
        "AWS_DEFAULT_REGION": config.region,
        "AWS_ENDPOINT_URL_EC2": config.clc.url,
        "AWS_ENDPOINT_URL_S3": config.walrus.url,
        # euca2ools-style names, for older tools.
        "EC2_URL": config.clc.url,
        "S3_URL": config.walrus.url,
        "EC2_ACCESS_KEY": key.access_key,
        "EC2_SECRET_KEY": key.secret_key,
        "EUCALYPTUS_CERT": str(config.keys_dir / "cloud-cert.pem"),
    }


def render(values: dict[str, str]) -> str:
    return "".join(f"export {k}={shlex.quote(v)}\n" for k, v in values.items())


@click.command("env")
@config_option
@click.option("--account", default=SYSTEM_ACCOUNT, show_default=True, help="Account name or id.")
@click.option("--user", default=ADMIN_USER, show_default=True, help="User in that account.")
def env_command(config_path: Path | None, account: str, user: str) -> None:
    """Print shell exports for the AWS CLI, boto3, s3cmd-style tools.

    Use as: eval "$(eucalypt env)". Also writes <data dir>/eucarc for
    euca2ools-style use (`source ~/.eucalypt/eucarc`).
    """
    config = load_config(config_path)
    text = render(exports(config, user_key(config, account, user)))
    eucarc = config.data_dir / (
        "eucarc" if account == SYSTEM_ACCOUNT else f"eucarc-{account}-{user}"
    )
    eucarc.touch(mode=0o600)
    eucarc.write_text(text)
    click.echo(text, nl=False)
