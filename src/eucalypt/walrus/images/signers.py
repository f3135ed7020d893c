"""Whose signature a manifest must carry: certificates on record per manifest location.

EC2 manifests do not carry the signer's certificate. The CLC, which holds the
users' certificates, passes the image owner's certificates when it asks
Walrus to verify a manifest at registration (``POST``); once a manifest
verifies, those certificates are recorded here, so later requests (an NC
fetching the image, after the cache was evicted or the manifest overwritten)
are verified against the same owner's certificates. Every use re-checks
that the cloud issued them and that they have not expired.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

from eucalypt.walrus.images.cache import entry_id


class SignerRecords:
    def __init__(self, root: Path) -> None:
        self.root = root
        root.mkdir(parents=True, exist_ok=True)

    def _path(self, location: str) -> Path:
        return self.root / f"{entry_id(location)}.json"

    def load(self, location: str) -> list[str] | None:
        try:
            data = json.loads(self._path(location).read_text())
        except (OSError, ValueError):
            return None
        if data.get("location") != location:
            return None
        return [str(pem) for pem in data.get("certificates", [])]

    def record(self, location: str, certificates: list[str]) -> None:
        path = self._path(location)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.{time.monotonic_ns()}")
        tmp.write_text(json.dumps({"location": location, "certificates": certificates,
                                   "recorded_at": time.time()}))
        os.replace(tmp, path)
