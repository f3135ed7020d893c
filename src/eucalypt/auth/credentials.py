"""Credentials and the stores that look them up.

A :class:`Credential` is what a verified request resolves to: the secret that
signed it and the principal behind it. Stores are async because the real ones
(the CLC database, the CLC's identity RPC seen from Walrus) do I/O.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Protocol


@dataclass(frozen=True)
class Credential:
    """An access key pair and the principal it belongs to.

    ``principal`` is ``"user"`` for cloud users and ``"component:<name>"``
    (``component:clc``, ``component:cc``, ...) for the internal services.
    """

    access_key: str
    secret_key: str = field(repr=False)
    account_id: str = ""
    user_name: str = ""
    principal: str = "user"
    is_admin: bool = False
    active: bool = True


class CredentialStore(Protocol):
    """Looks up the credential of an access key id; ``None`` when unknown."""

    async def lookup(self, access_key: str) -> Credential | None: ...


class StaticCredentialStore:
    """A fixed set of credentials, held in memory (component keys, tests)."""

    def __init__(self, credentials: Iterable[Credential] = ()) -> None:
        self._by_key: dict[str, Credential] = {c.access_key: c for c in credentials}

    @classmethod
    def from_mapping(cls, keys: Mapping[str, str]) -> StaticCredentialStore:
        return cls(Credential(access_key=k, secret_key=v) for k, v in keys.items())

    async def lookup(self, access_key: str) -> Credential | None:
        return self._by_key.get(access_key)


class ChainCredentialStore:
    """Asks each store in turn; the first that knows the key answers."""

    def __init__(self, *stores: CredentialStore) -> None:
        self._stores = stores

    async def lookup(self, access_key: str) -> Credential | None:
        for store in self._stores:
            found = await store.lookup(access_key)
            if found is not None:
                return found
        return None
