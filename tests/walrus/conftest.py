"""A real Walrus for the tests: its HTTP server in a thread, SQLite or PostgreSQL metadata.

``walrus`` is parametrized over both metadata backends (PostgreSQL when
``EUCALYPT_TEST_PG_URL`` is set, see ``tests/conftest.py``); ``walrus_sqlite``
is the SQLite one for client-tool tests that need not run twice. Clients
come from :meth:`WalrusServer.client` (boto3, SigV4, path-style by default).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
import pytest
import sqlalchemy as sa
from botocore import UNSIGNED
from botocore.config import Config as BotoConfig

from eucalypt.auth import Credential, StaticCredentialStore
from eucalypt.config import Config, WalrusConfig
from eucalypt.walrus.app import create_app
from eucalypt.walrus.server import ServerThread
from tests.support.servers import free_port

REGION = "eucalypt-1"
DOMAIN = "s3.localhost"
ALICE = Credential("AKIAWALRUSALICE00001", "alice-secret-key-0123456789abcdefghij",
                   account_id="111111111111", user_name="alice")
BOB = Credential("AKIAWALRUSBOB0000002", "bob-secret-key-0123456789abcdefghijkl",
                 account_id="222222222222", user_name="bob")
CAROL = Credential("AKIAWALRUSCAROL00003", "carol-secret-key-0123456789abcdefghi",
                   account_id="333333333333", user_name="carol")
# An internal component (the CLC reading image bundles): bypasses ACLs.
CLC = Credential("AKIAWALRUSCOMPCLC004", "clc-component-secret-0123456789abcdefg",
                 principal="component:clc")
ACCOUNTS = (ALICE, BOB, CAROL, CLC)


def boto_config(**extra: Any) -> BotoConfig:
    s3 = {"addressing_style": extra.pop("addressing_style", "path")}
    return BotoConfig(signature_version=extra.pop("signature_version", "s3v4"), s3=s3,
                      retries={"max_attempts": 1, "mode": "standard"},
                      connect_timeout=10, read_timeout=120, **extra)


@dataclass
class WalrusServer:
    url: str
    port: int
    data_dir: Path
    storage_dir: Path
    database_url: str
    backend: str
    _clients: dict[Any, Any] = field(default_factory=dict)

    def client(self, cred: Credential = ALICE, **extra: Any) -> Any:
        key = (cred.access_key, tuple(sorted(extra.items())))
        if key not in self._clients:
            self._clients[key] = boto3.client(
                "s3", endpoint_url=self.url, region_name=REGION,
                aws_access_key_id=cred.access_key, aws_secret_access_key=cred.secret_key,
                config=boto_config(**extra))
        return self._clients[key]

    def anonymous(self) -> Any:
        return boto3.client("s3", endpoint_url=self.url, region_name=REGION,
                            config=boto_config(signature_version=UNSIGNED))

    def blob_files(self) -> list[Path]:
        return [p for p in (self.storage_dir / "blobs").rglob("*") if p.is_file()]

    def temp_files(self) -> list[Path]:
        return list((self.storage_dir / "tmp").iterdir())


def new_pg_database(base: str) -> tuple[str, Any]:
    name = "walrus_" + uuid.uuid4().hex[:12]
    admin = sa.create_engine(base, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f"CREATE DATABASE {name}"))
    admin.dispose()

    def drop() -> None:
        eng = sa.create_engine(base, isolation_level="AUTOCOMMIT")
        with eng.connect() as conn:
            conn.execute(sa.text(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        eng.dispose()

    return base.rsplit("/", 1)[0] + "/" + name, drop


def start_server(tmp: Path, database_url: str, backend: str) -> tuple[WalrusServer, Any]:
    """Walrus on its own HTTP server (uvloop) in a daemon thread; returns (server, stop)."""
    port = free_port()
    config = Config(data_dir=tmp, walrus=WalrusConfig(port=port, database_url=database_url,
                                                      domain=DOMAIN))
    app = create_app(config, credentials=StaticCredentialStore(ACCOUNTS))
    server = ServerThread(app, "127.0.0.1", port)
    server.start()
    stop = server.stop

    info = WalrusServer(url=f"http://127.0.0.1:{port}", port=port, data_dir=tmp,
                        storage_dir=Path(config.walrus.storage_dir), database_url=database_url,
                        backend=backend)
    return info, stop


@pytest.fixture(scope="session")
def _servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, WalrusServer]]:
    started: dict[str, WalrusServer] = {}
    stops: list[Any] = []
    started_fn: dict[str, Any] = {}

    def get(backend: str, pg_base: str | None = None) -> WalrusServer:
        if backend not in started:
            tmp = tmp_path_factory.mktemp(f"walrus-{backend}")
            if backend == "sqlite":
                url = f"sqlite:///{tmp / 'walrus.db'}"
            else:
                assert pg_base is not None
                url, drop = new_pg_database(pg_base)
                stops.append(drop)
            server, stop = start_server(tmp, url, backend)
            stops.append(stop)
            started[backend] = server
        return started[backend]

    started_fn["get"] = get
    yield started_fn  # type: ignore[misc]
    for stop in reversed(stops):
        stop()


@pytest.fixture(scope="session", params=["sqlite", "postgresql"])
def walrus(request: pytest.FixtureRequest, _servers: Any) -> WalrusServer:
    """A running Walrus, once per metadata backend."""
    if request.param == "postgresql":
        return _servers["get"]("postgresql", request.getfixturevalue("pg_url"))
    return _servers["get"]("sqlite")


@pytest.fixture(scope="session")
def walrus_sqlite(_servers: Any) -> WalrusServer:
    """The SQLite-backed Walrus (for client-tool tests that need not run on both backends)."""
    return _servers["get"]("sqlite")


@pytest.fixture
def s3(walrus: WalrusServer) -> Any:
    return walrus.client(ALICE)


@pytest.fixture
def bucket(s3: Any) -> str:
    """A fresh bucket owned by Alice."""
    name = "b-" + uuid.uuid4().hex[:16]
    s3.create_bucket(Bucket=name)
    return name
