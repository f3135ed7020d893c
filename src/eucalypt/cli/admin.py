"""``eucalypt admin``: accounts, users, access keys, certificates and nodes.

The account, user, key and certificate commands open the CLC database
directly (like other clouds' manage tools) and work whether or not the
services are running. ``eucalypt admin node`` (:mod:`eucalypt.cli.nodes`)
asks the running CC instead.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import click
from rich.console import Console
from rich.table import Table
from sqlalchemy.orm import Session

from eucalypt.clc import identity
from eucalypt.clc.app import open_database
from eucalypt.clc.certs import CloudCA
from eucalypt.clc.errors import IdentityError
from eucalypt.cli.common import config_option, load_config
from eucalypt.cli.nodes import node_group

T = TypeVar("T")

json_option = click.option("--json", "as_json", is_flag=True, help="Print JSON (for scripts).")


def show_keys(keys: list[identity.KeyInfo], *, show_secret: bool, as_json: bool) -> None:
    if as_json:
        click.echo(
            json.dumps(
                [
                    {
                        "account": k.account_name,
                        "account_id": k.account_id,
                        "user": k.user_name,
                        "access_key": k.access_key,
                        **({"secret_key": k.secret_key} if show_secret else {}),
                        "active": k.active,
                        "created": k.created_at.isoformat(),
                    }
                    for k in keys
                ],
                indent=2,
            )
        )
    else:
        Console().print(key_table(keys, show_secret=show_secret))


def run(config_path: Path | None, fn: Callable[[Session], T]) -> T:
    config = load_config(config_path)
    db = open_database(config)
    try:
        return db.run_sync(fn)
    except IdentityError as exc:
        raise click.ClickException(exc.message) from None
    finally:
        db.dispose()


def key_table(keys: list[identity.KeyInfo], show_secret: bool) -> Table:
    table = Table()
    for col in ("account", "user", "access key", "secret key", "active", "created"):
        # Keys are copied by hand: never cut one short with an ellipsis.
        table.add_column(col, overflow="fold")
    for k in keys:
        table.add_row(
            k.account_name,
            k.user_name,
            k.access_key,
            k.secret_key if show_secret else "(hidden)",
            "yes" if k.active else "no",
            k.created_at.strftime("%Y-%m-%d %H:%M"),
        )
    return table


@click.group("admin")
def admin_group() -> None:
    """Manage accounts, users, access keys, certificates and a cluster's nodes."""


admin_group.add_command(node_group)


@admin_group.group("account")
def account_group() -> None:
    """Accounts (tenants)."""


@account_group.command("create")
@config_option
@json_option
@click.argument("name")
def account_create(config_path: Path | None, as_json: bool, name: str) -> None:
    """Create account NAME with an `admin` user and an access key for it."""

    def work(s: Session) -> identity.KeyInfo:
        account = identity.create_account(s, name)
        return identity.create_access_key(s, identity.get_user(s, account, identity.ADMIN_USER))

    show_keys([run(config_path, work)], show_secret=True, as_json=as_json)


@account_group.command("list")
@config_option
def account_list(config_path: Path | None) -> None:
    """List accounts."""

    def work(s: Session) -> list[tuple[str, str, bool, int]]:
        return [(a.id, a.name, a.is_system, len(a.users)) for a in identity.list_accounts(s)]

    table = Table()
    for col in ("id", "name", "system", "users"):
        table.add_column(col)
    for row in run(config_path, work):
        table.add_row(row[0], row[1], "yes" if row[2] else "", str(row[3]))
    Console().print(table)


@account_group.command("delete")
@config_option
@click.argument("name")
def account_delete(config_path: Path | None, name: str) -> None:
    """Delete account NAME with its users and keys."""
    run(config_path, lambda s: identity.delete_account(s, name))
    click.echo(f"deleted account {name}")


@admin_group.group("user")
def user_group() -> None:
    """Users of an account."""


account_opt = click.option("--account", required=True, help="Account name or id.")


@user_group.command("create")
@config_option
@account_opt
@json_option
@click.argument("name")
def user_create(config_path: Path | None, account: str, as_json: bool, name: str) -> None:
    """Create user NAME in ACCOUNT with an access key."""

    def work(s: Session) -> identity.KeyInfo:
        user = identity.create_user(s, identity.get_account(s, account), name)
        return identity.create_access_key(s, user)

    show_keys([run(config_path, work)], show_secret=True, as_json=as_json)


@user_group.command("list")
@config_option
@account_opt
def user_list(config_path: Path | None, account: str) -> None:
    """List the users of ACCOUNT."""

    def work(s: Session) -> list[tuple[str, str]]:
        return [(u.name, u.id) for u in identity.list_users(s, identity.get_account(s, account))]

    table = Table()
    table.add_column("user")
    table.add_column("id")
    for name, uid in run(config_path, work):
        table.add_row(name, uid)
    Console().print(table)


@user_group.command("delete")
@config_option
@account_opt
@click.argument("name")
def user_delete(config_path: Path | None, account: str, name: str) -> None:
    """Delete user NAME from ACCOUNT."""
    run(config_path, lambda s: identity.delete_user(s, identity.get_account(s, account), name))
    click.echo(f"deleted user {name}")


@admin_group.group("key")
def key_group() -> None:
    """Access keys of a user."""


user_opt = click.option("--user", "user_name", default=identity.ADMIN_USER, show_default=True)


@key_group.command("create")
@config_option
@account_opt
@user_opt
@json_option
def key_create(config_path: Path | None, account: str, user_name: str, as_json: bool) -> None:
    """Create an access key for USER in ACCOUNT (the secret is shown once here)."""

    def work(s: Session) -> identity.KeyInfo:
        return identity.create_access_key(
            s, identity.get_user(s, identity.get_account(s, account), user_name)
        )

    show_keys([run(config_path, work)], show_secret=True, as_json=as_json)


@key_group.command("list")
@config_option
@account_opt
@user_opt
@click.option("--show-secrets", is_flag=True, help="Also print secret keys.")
@json_option
def key_list(
    config_path: Path | None, account: str, user_name: str, show_secrets: bool, as_json: bool
) -> None:
    """List the access keys of USER in ACCOUNT."""

    def work(s: Session) -> list[identity.KeyInfo]:
        return identity.list_access_keys(
            s, identity.get_user(s, identity.get_account(s, account), user_name)
        )

    show_keys(run(config_path, work), show_secret=show_secrets, as_json=as_json)


@key_group.command("deactivate")
@config_option
@click.argument("access_key")
def key_deactivate(config_path: Path | None, access_key: str) -> None:
    """Deactivate ACCESS_KEY: requests signed with it are refused."""
    run(config_path, lambda s: identity.set_access_key_active(s, access_key, False))
    click.echo(f"deactivated {access_key}")


@key_group.command("activate")
@config_option
@click.argument("access_key")
def key_activate(config_path: Path | None, access_key: str) -> None:
    """Re-activate ACCESS_KEY."""
    run(config_path, lambda s: identity.set_access_key_active(s, access_key, True))
    click.echo(f"activated {access_key}")


@key_group.command("delete")
@config_option
@click.argument("access_key")
def key_delete(config_path: Path | None, access_key: str) -> None:
    """Delete ACCESS_KEY."""
    run(config_path, lambda s: identity.delete_access_key(s, access_key))
    click.echo(f"deleted {access_key}")


@admin_group.command("cert")
@config_option
@account_opt
@user_opt
@click.option(
    "--out",
    "out_dir",
    type=click.Path(path_type=Path, file_okay=False),
    required=True,
    help="Directory to write cert.pem, pk.pem and cloud-cert.pem into.",
)
def cert_create(config_path: Path | None, account: str, user_name: str, out_dir: Path) -> None:
    """Issue an X.509 certificate and key for USER (signs image bundles)."""
    config = load_config(config_path)
    ca = CloudCA.load(config.keys_dir)
    issued = run(
        config_path,
        lambda s: identity.issue_certificate(
            s, ca, identity.get_user(s, identity.get_account(s, account), user_name)
        ),
    )
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "cert.pem").write_text(issued.certificate_pem)
    pk = out_dir / "pk.pem"
    pk.touch(mode=0o600)
    pk.write_text(issued.private_key_pem)
    (out_dir / "cloud-cert.pem").write_text(ca.certificate_pem)
    click.echo(f"wrote {out_dir}/cert.pem, pk.pem (keep private) and cloud-cert.pem")
