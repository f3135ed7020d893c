"""A bounded cache of derived SigV4 signing keys.

Deriving a signing key is a chain of four HMACs (see
:func:`eucalypt.auth.canonical.signing_key`), yet the result depends only on
(secret, date, region, service): a busy client uses the same key all day.
A server owns one :class:`SigningKeyCache` and passes it to
:func:`eucalypt.auth.authenticate`; nothing is cached at module level.
"""

from __future__ import annotations

import functools

from eucalypt.auth.canonical import signing_key


class SigningKeyCache:
    """The signing keys of the ``maxsize`` most recently used (secret, date, region, service).

    Thread-safe (``functools.lru_cache``). A rotated secret simply stops
    being asked for and ages out.
    """

    def __init__(self, maxsize: int = 256) -> None:
        self._derive = functools.lru_cache(maxsize=maxsize)(signing_key)

    def key(self, secret: str, date: str, region: str, service: str) -> bytes:
        """The signing key for ``secret`` on ``date`` (``YYYYMMDD``) in ``region``/``service``."""
        return self._derive(secret, date, region, service)

    def clear(self) -> None:
        self._derive.cache_clear()
