"""Accounts, users and keys in the CLC database, on SQLite and PostgreSQL."""

from __future__ import annotations

from pathlib import Path

import pytest
from cryptography import x509
from sqlalchemy import inspect

from eucalypt.clc import identity
from eucalypt.clc.app import MIGRATIONS
from eucalypt.clc.certs import CloudCA
from eucalypt.clc.errors import EntityAlreadyExists, InvalidName, NoSuchEntity
from eucalypt.db import Database, migrate


@pytest.fixture
def db(db_url: str) -> Database:
    database = Database(db_url)
    migrate(database.engine, MIGRATIONS, "alembic_version_clc")
    yield database  # type: ignore[misc]
    database.dispose()


def test_migrations_create_schema_and_are_idempotent(db: Database) -> None:
    migrate(db.engine, MIGRATIONS, "alembic_version_clc")  # second run is a no-op
    tables = set(inspect(db.engine).get_table_names())
    assert {
        "accounts",
        "users",
        "access_keys",
        "user_certificates",
        "alembic_version_clc",
    } <= tables


def test_bootstrap_is_idempotent_and_admin_is_system(db: Database) -> None:
    first = db.run_sync(identity.bootstrap)
    second = db.run_sync(identity.bootstrap)
    assert first.access_key == second.access_key
    cred = db.run_sync(lambda s: identity.lookup_credential(s, first.access_key))
    assert cred is not None and cred.is_admin and cred.secret_key == first.secret_key
    assert cred.user_name == "admin" and len(cred.account_id) == 12


def test_account_user_key_lifecycle(db: Database) -> None:
    key = db.run_sync(
        lambda s: identity.create_access_key(
            s, identity.create_user(s, identity.create_account(s, "alice-co"), "alice")
        )
    )
    assert key.access_key.startswith("AKIA") and len(key.secret_key) >= 30
    cred = db.run_sync(lambda s: identity.lookup_credential(s, key.access_key))
    assert cred is not None and not cred.is_admin and cred.user_name == "alice"

    db.run_sync(lambda s: identity.set_access_key_active(s, key.access_key, False))
    cred = db.run_sync(lambda s: identity.lookup_credential(s, key.access_key))
    assert cred is not None and cred.active is False

    db.run_sync(lambda s: identity.delete_access_key(s, key.access_key))
    assert db.run_sync(lambda s: identity.lookup_credential(s, key.access_key)) is None

    # Deleting an account removes its users and keys.
    key2 = db.run_sync(
        lambda s: identity.create_access_key(
            s, identity.get_user(s, identity.get_account(s, "alice-co"), "admin")
        )
    )
    db.run_sync(lambda s: identity.delete_account(s, "alice-co"))
    assert db.run_sync(lambda s: identity.lookup_credential(s, key2.access_key)) is None


def test_errors_are_clear(db: Database) -> None:
    db.run_sync(lambda s: identity.create_account(s, "dup"))
    with pytest.raises(EntityAlreadyExists):
        db.run_sync(lambda s: identity.create_account(s, "dup"))
    with pytest.raises(InvalidName):
        db.run_sync(lambda s: identity.create_account(s, "../etc"))
    with pytest.raises(NoSuchEntity, match="eucalypt admin account list"):
        db.run_sync(lambda s: identity.get_account(s, "nobody"))
    db.run_sync(identity.bootstrap)
    with pytest.raises(InvalidName):
        db.run_sync(lambda s: identity.delete_account(s, identity.SYSTEM_ACCOUNT))
    # A failed transaction keeps what was stored before it.
    assert db.run_sync(lambda s: identity.get_account(s, "dup").name) == "dup"


def test_user_certificates_are_signed_by_the_cloud(db: Database, tmp_path: Path) -> None:
    ca = CloudCA.ensure(tmp_path, "r1")
    again = CloudCA.ensure(tmp_path, "r1")
    assert again.certificate_pem == ca.certificate_pem
    issued = db.run_sync(
        lambda s: identity.issue_certificate(
            s, ca, identity.get_user(s, identity.create_account(s, "bob-co"), "admin")
        )
    )
    cert = x509.load_pem_x509_certificate(issued.certificate_pem.encode())
    cert.verify_directly_issued_by(ca.cert)
    assert (tmp_path / "cloud-pk.pem").stat().st_mode & 0o777 == 0o600
