from __future__ import annotations

from pathlib import Path

import pytest

from eucalypt.clc.certs import CloudCA
from tests.bundle.helpers import User, new_user


@pytest.fixture(scope="session")
def ca(tmp_path_factory: pytest.TempPathFactory) -> CloudCA:
    return CloudCA.ensure(tmp_path_factory.mktemp("ca"), "eucalypt-test")


@pytest.fixture(scope="session")
def other_ca(tmp_path_factory: pytest.TempPathFactory) -> CloudCA:
    """Another cloud's CA (its certificate is not ours)."""
    return CloudCA.ensure(tmp_path_factory.mktemp("other-ca"), "elsewhere")


@pytest.fixture(scope="session")
def alice(ca: CloudCA) -> User:
    return new_user(ca)


@pytest.fixture(scope="session")
def mallory(ca: CloudCA) -> User:
    return new_user(ca, "999999999999", "mallory")


@pytest.fixture
def image(tmp_path: Path) -> Path:
    from tests.bundle.helpers import make_image

    return make_image(tmp_path / "disk.img", 3 * 1024 * 1024 + 123)
