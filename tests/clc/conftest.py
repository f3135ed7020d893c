"""A real CLC (in a thread, on a temp data dir) and boto3 clients for two accounts."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.config import Config as BotoConfig

from eucalypt.clc import identity
from eucalypt.clc.app import create_app, open_database
from eucalypt.cli.init import initialise
from eucalypt.config import ClcConfig, Config
from tests.support.servers import free_port, serve_in_thread


@dataclass
class ClcFixture:
    config: Config
    url: str
    admin: identity.KeyInfo
    alice: identity.KeyInfo
    bob: identity.KeyInfo

    def client(self, who: identity.KeyInfo, service: str = "ec2") -> Any:
        return boto3.client(
            service,
            endpoint_url=self.url,
            region_name=self.config.region,
            aws_access_key_id=who.access_key,
            aws_secret_access_key=who.secret_key,
            config=BotoConfig(retries={"max_attempts": 1}),
        )


def _make_account(config: Config, name: str) -> identity.KeyInfo:
    db = open_database(config)
    try:
        return db.run_sync(
            lambda s: identity.create_access_key(
                s, identity.get_user(s, identity.create_account(s, name), identity.ADMIN_USER)
            )
        )
    finally:
        db.dispose()


@pytest.fixture(scope="package")
def clc(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ClcFixture]:
    data_dir: Path = tmp_path_factory.mktemp("clc")
    Config(data_dir=data_dir, clc=ClcConfig(port=free_port())).save()
    result = initialise(data_dir)
    config = result.config
    alice, bob = _make_account(config, "alice"), _make_account(config, "bob")
    with serve_in_thread(create_app(config), config.clc.port) as url:
        yield ClcFixture(config=config, url=url, admin=result.admin, alice=alice, bob=bob)
