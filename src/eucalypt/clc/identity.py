"""Accounts, users and access keys: the cloud's canonical user database.

The functions here take a SQLAlchemy ``Session`` so that both the CLC
service (through ``Database.run``) and the ``eucalypt admin`` commands use
the same code. :class:`DbCredentialStore` makes the database a
``CredentialStore`` for request verification.
"""

from __future__ import annotations

import re
import secrets
import string
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from eucalypt.auth.credentials import Credential
from eucalypt.clc.certs import CloudCA, IssuedCertificate
from eucalypt.clc.errors import EntityAlreadyExists, InvalidName, NoSuchEntity
from eucalypt.clc.models import AccessKey, Account, User, UserCertificate
from eucalypt.db import Database

SYSTEM_ACCOUNT = "eucalyptus"
ADMIN_USER = "admin"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_+=,.@-]{0,63}$")
_KEY_ALPHABET = string.ascii_uppercase + string.digits


@dataclass(frozen=True)
class KeyInfo:
    access_key: str
    secret_key: str
    account_id: str
    account_name: str
    user_name: str
    active: bool
    created_at: datetime


def _check_name(kind: str, name: str) -> None:
    if not _NAME.match(name):
        raise InvalidName(
            f"Invalid {kind} name {name!r}: use 1-64 letters, digits and _+=,.@- "
            "starting with a letter or digit."
        )


def _new_account_id(session: Session) -> str:
    while True:
        candidate = "".join(secrets.choice(string.digits) for _ in range(12))
        if candidate[0] != "0" and session.get(Account, candidate) is None:
            return candidate


def get_account(session: Session, name_or_id: str) -> Account:
    account = session.get(Account, name_or_id) or session.scalar(
        select(Account).where(Account.name == name_or_id)
    )
    if account is None:
        raise NoSuchEntity(
            f"No account named {name_or_id!r}; list them with `eucalypt admin account list`."
        )
    return account


def get_user(session: Session, account: Account, user_name: str) -> User:
    user = session.scalar(select(User).where(User.account_id == account.id, User.name == user_name))
    if user is None:
        raise NoSuchEntity(f"No user {user_name!r} in account {account.name!r}.")
    return user


def create_account(session: Session, name: str, *, is_system: bool = False) -> Account:
    """A new account with its ``admin`` user (no keys yet)."""
    _check_name("account", name)
    if session.scalar(select(Account).where(Account.name == name)) is not None:
        raise EntityAlreadyExists(f"Account {name!r} already exists.")
    account = Account(id=_new_account_id(session), name=name, is_system=is_system)
    session.add(account)
    session.flush()
    create_user(session, account, ADMIN_USER)
    return account


def list_accounts(session: Session) -> list[Account]:
    return list(session.scalars(select(Account).order_by(Account.name)))


def delete_account(session: Session, name_or_id: str) -> None:
    account = get_account(session, name_or_id)
    if account.is_system:
        raise InvalidName("The system account cannot be deleted.")
    session.delete(account)


def create_user(session: Session, account: Account, name: str) -> User:
    _check_name("user", name)
    if session.scalar(select(User).where(User.account_id == account.id, User.name == name)):
        raise EntityAlreadyExists(f"User {name!r} already exists in account {account.name!r}.")
    user = User(
        id="AIDA" + "".join(secrets.choice(_KEY_ALPHABET) for _ in range(17)),
        account_id=account.id,
        name=name,
    )
    session.add(user)
    session.flush()
    return user


def list_users(session: Session, account: Account) -> list[User]:
    return list(
        session.scalars(select(User).where(User.account_id == account.id).order_by(User.name))
    )


def delete_user(session: Session, account: Account, name: str) -> None:
    session.delete(get_user(session, account, name))


def _key_info(key: AccessKey) -> KeyInfo:
    return KeyInfo(
        access_key=key.access_key,
        secret_key=key.secret_key,
        account_id=key.user.account.id,
        account_name=key.user.account.name,
        user_name=key.user.name,
        active=key.active,
        created_at=key.created_at,
    )


def create_access_key(session: Session, user: User) -> KeyInfo:
    key = AccessKey(
        access_key="AKIA" + "".join(secrets.choice(_KEY_ALPHABET) for _ in range(16)),
        secret_key=secrets.token_urlsafe(30)[:40],
        user_id=user.id,
    )
    session.add(key)
    session.flush()
    session.refresh(key)
    return _key_info(key)


def list_access_keys(session: Session, user: User) -> list[KeyInfo]:
    keys = session.scalars(
        select(AccessKey).where(AccessKey.user_id == user.id).order_by(AccessKey.created_at)
    )
    return [_key_info(k) for k in keys]


def _get_key(session: Session, access_key: str) -> AccessKey:
    key = session.get(AccessKey, access_key)
    if key is None:
        raise NoSuchEntity(f"No access key {access_key!r}.")
    return key


def set_access_key_active(session: Session, access_key: str, active: bool) -> KeyInfo:
    key = _get_key(session, access_key)
    key.active = active
    return _key_info(key)


def delete_access_key(session: Session, access_key: str) -> None:
    session.delete(_get_key(session, access_key))


def issue_certificate(session: Session, ca: CloudCA, user: User) -> IssuedCertificate:
    issued = ca.issue(user.account_id, user.name)
    session.add(UserCertificate(id=issued.serial_hex, user_id=user.id, pem=issued.certificate_pem))
    return issued


def lookup_credential(session: Session, access_key: str) -> Credential | None:
    """The credential for ``access_key``, or None when no such key exists.

    One query (key, user and account joined): every signed request looks its key up."""
    row = session.execute(
        select(
            AccessKey.access_key,
            AccessKey.secret_key,
            AccessKey.active,
            User.account_id,
            User.name,
            Account.is_system,
        )
        .join(User, AccessKey.user_id == User.id)
        .join(Account, User.account_id == Account.id)
        .where(AccessKey.access_key == access_key)
    ).first()
    if row is None:
        return None
    key_id, secret_key, active, account_id, user_name, is_system = row
    return Credential(
        access_key=key_id,
        secret_key=secret_key,
        account_id=account_id,
        user_name=user_name,
        principal="user",
        is_admin=bool(is_system),
        active=bool(active),
    )


def bootstrap(session: Session) -> KeyInfo:
    """Ensure the system account, its admin user and one active admin key exist.

    Idempotent: returns the first active admin key when one exists.
    """
    account = session.scalar(select(Account).where(Account.name == SYSTEM_ACCOUNT))
    if account is None:
        account = create_account(session, SYSTEM_ACCOUNT, is_system=True)
    admin = get_user(session, account, ADMIN_USER)
    for key in list_access_keys(session, admin):
        if key.active:
            return key
    return create_access_key(session, admin)


class DbCredentialStore:
    """The CLC database as a ``CredentialStore``."""

    def __init__(self, db: Database) -> None:
        self._db = db

    async def lookup(self, access_key: str) -> Credential | None:
        return await self._db.run(lambda s: lookup_credential(s, access_key))
