"""The CLC's internal protocol: what other components ask the CLC.

Walrus shares the CLC's canonical user database (the paper): it resolves
access keys through ``LookupAccessKey`` with :class:`ClcIdentityStore`.
"""

from __future__ import annotations

import time

from pydantic import BaseModel

from eucalypt.auth.credentials import Credential
from eucalypt.config import Config
from eucalypt.rpc.client import RpcClient
from eucalypt.rpc.errors import RemoteError
from eucalypt.rpc.keys import ComponentKeys


class LookupAccessKeyRequest(BaseModel):
    access_key: str


class LookupAccessKeyResponse(BaseModel):
    found: bool
    access_key: str = ""
    secret_key: str = ""
    account_id: str = ""
    user_name: str = ""
    is_admin: bool = False
    active: bool = False


class ClcClient(RpcClient):
    async def lookup_access_key(self, access_key: str) -> LookupAccessKeyResponse:
        return await self.call(
            "LookupAccessKey",
            LookupAccessKeyRequest(access_key=access_key),
            LookupAccessKeyResponse,
        )


class ClcIdentityStore:
    """A ``CredentialStore`` backed by the CLC, for components other than the CLC.

    Answers are cached for ``ttl`` seconds (unknown keys for 2 s), so a
    deactivated key stops working within ``ttl``. The cache holds at most
    ``max_entries`` keys.
    """

    def __init__(
        self,
        config: Config,
        *,
        component: str = "walrus",
        ttl: float = 10.0,
        max_entries: int = 10_000,
    ) -> None:
        keys = ComponentKeys.load(config.keys_dir)
        self._client = ClcClient(config.clc.url, keys.credential(component), region=config.region)
        self._ttl = ttl
        self._max = max_entries
        self._cache: dict[str, tuple[float, Credential | None]] = {}

    async def lookup(self, access_key: str) -> Credential | None:
        now = time.monotonic()
        hit = self._cache.get(access_key)
        if hit is not None and hit[0] > now:
            return hit[1]
        try:
            reply = await self._client.lookup_access_key(access_key)
        except RemoteError:
            if hit is not None:  # the CLC is briefly away: the last answer is still the best
                return hit[1]
            raise
        cred = (
            Credential(
                access_key=reply.access_key,
                secret_key=reply.secret_key,
                account_id=reply.account_id,
                user_name=reply.user_name,
                is_admin=reply.is_admin,
                active=reply.active,
            )
            if reply.found
            else None
        )
        if len(self._cache) >= self._max:
            self._cache.clear()
        self._cache[access_key] = (now + (self._ttl if cred else 2.0), cred)
        return cred

    async def aclose(self) -> None:
        await self._client.aclose()
