"""Run Walrus as its own process for tests: ``python launcher.py SPEC.json``.

The spec names the data directory, port, database URL and the static
credentials to accept; the process serves Walrus exactly as
``eucalypt.walrus.app.serve`` does, but with a static credential store
instead of the CLC. Used where a test needs a separate process: to kill it
with SIGKILL, or to measure its memory.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from eucalypt.auth import Credential, StaticCredentialStore
from eucalypt.config import Config
from eucalypt.logs import setup_logging
from eucalypt.walrus.app import create_app, run_app


def build(spec: dict) -> tuple[Config, StaticCredentialStore]:
    walrus = {"host": "127.0.0.1", "port": spec["port"]}
    for name in ("database_url", "storage_dir", "domain"):
        if spec.get(name):
            walrus[name] = spec[name]
    config = Config(data_dir=Path(spec["data_dir"]), walrus=walrus)
    store = StaticCredentialStore(Credential(**c) for c in spec["credentials"])
    return config, store


def main() -> None:
    spec = json.loads(Path(sys.argv[1]).read_text())
    config, store = build(spec)
    if spec.get("access_log") or os.environ.get("WALRUS_ACCESS_LOG"):
        setup_logging("walrus", "info")  # one JSON line per request, into the log file
    app = create_app(config, credentials=store)
    run_app(app, "127.0.0.1", config.walrus.port)


if __name__ == "__main__":
    main()
