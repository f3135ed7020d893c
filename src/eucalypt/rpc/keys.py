"""Per-component credentials for the internal protocol (the paper's WS-Security).

``eucalypt init`` generates one access key pair per component and writes them
to ``<data_dir>/keys/components.json`` (mode 0600). A component signs its
outgoing requests with its own key and accepts requests signed by the
components allowed to call it.
"""

from __future__ import annotations

import json
import os
import secrets
from collections.abc import Iterable
from pathlib import Path

from eucalypt.auth.credentials import Credential, StaticCredentialStore

COMPONENTS = ("clc", "walrus", "cc", "nc")
KEYS_FILE = "components.json"


def _new_pair(component: str) -> dict[str, str]:
    return {
        "access_key": f"EUC{component.upper()}{secrets.token_hex(6).upper()}",
        "secret_key": secrets.token_urlsafe(30),
    }


class ComponentKeys:
    """The component credentials of one cloud."""

    def __init__(self, pairs: dict[str, dict[str, str]]) -> None:
        self._pairs = pairs

    @classmethod
    def generate(cls, keys_dir: Path) -> ComponentKeys:
        """Create keys for every component unless they exist; return them."""
        path = keys_dir / KEYS_FILE
        if path.exists():
            return cls.load(keys_dir)
        keys_dir.mkdir(parents=True, exist_ok=True)
        os.chmod(keys_dir, 0o700)
        pairs = {c: _new_pair(c) for c in COMPONENTS}
        tmp = path.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            json.dump(pairs, fh, indent=2)
        tmp.replace(path)
        return cls(pairs)

    @classmethod
    def load(cls, keys_dir: Path) -> ComponentKeys:
        path = keys_dir / KEYS_FILE
        try:
            return cls(json.loads(path.read_text()))
        except FileNotFoundError:
            raise FileNotFoundError(
                f"{path} is missing: run `eucalypt init` to create the cloud's keys"
            ) from None

    def credential(self, component: str) -> Credential:
        pair = self._pairs[component]
        return Credential(
            access_key=pair["access_key"],
            secret_key=pair["secret_key"],
            account_id="",
            user_name=component,
            principal=f"component:{component}",
            is_admin=True,
        )

    def store(self, allowed: Iterable[str]) -> StaticCredentialStore:
        """A store holding the keys of the ``allowed`` components."""
        return StaticCredentialStore(self.credential(c) for c in allowed)
