"""Walrus as a separate process (``launcher.py``), for crash and memory tests."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

from eucalypt.db import Database
from eucalypt.walrus.services.janitor import referenced_blobs
from tests.support.servers import free_port
from tests.walrus.conftest import ACCOUNTS

LAUNCHER = Path(__file__).with_name("launcher.py")
ROOT = Path(__file__).resolve().parents[2]


@dataclass
class WalrusProcess:
    proc: subprocess.Popen[bytes]
    url: str
    data_dir: Path
    database_url: str

    @property
    def storage_dir(self) -> Path:
        return self.data_dir / "walrus" / "objects"

    def rss_bytes(self) -> int:
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
        raise RuntimeError("no VmRSS")

    def kill9(self) -> None:
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=10)

    def blob_files(self) -> set[str]:
        return {p.name for p in (self.storage_dir / "blobs").rglob("*") if p.is_file()}

    def temp_files(self) -> list[Path]:
        return list((self.storage_dir / "tmp").iterdir())

    def referenced(self) -> set[str]:
        db = Database(self.database_url)
        try:
            return referenced_blobs(db)
        finally:
            db.dispose()


def write_spec(data_dir: Path, port: int, database_url: str) -> Path:
    spec = {
        "data_dir": str(data_dir), "port": port, "database_url": database_url,
        "credentials": [{"access_key": c.access_key, "secret_key": c.secret_key,
                         "account_id": c.account_id, "user_name": c.user_name}
                        for c in ACCOUNTS],
    }
    path = data_dir / "spec.json"
    data_dir.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(spec))
    return path


@contextmanager
def walrus_process(data_dir: Path, database_url: str | None = None,
                   port: int | None = None) -> Iterator[WalrusProcess]:
    """Start ``launcher.py`` on a free port and wait until /healthz answers."""
    port = port or free_port()
    database_url = database_url or f"sqlite:///{data_dir / 'walrus.db'}"
    spec = write_spec(data_dir, port, database_url)
    log = (data_dir / "walrus.log").open("ab")
    env = {**os.environ, "PYTHONPATH": f"{ROOT}:{ROOT / 'src'}"}
    proc = subprocess.Popen([sys.executable, str(LAUNCHER), str(spec)], stdout=log,
                            stderr=subprocess.STDOUT, env=env, cwd=ROOT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"walrus exited: {(data_dir / 'walrus.log').read_text()}")
            try:
                if httpx.get(url + "/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("walrus did not start")
            time.sleep(0.05)
        yield WalrusProcess(proc, url, data_dir, database_url)
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        log.close()


def wait_until(predicate, timeout: float = 20.0) -> bool:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return bool(predicate())
