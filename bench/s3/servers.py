"""Start Walrus and moto_server as subprocesses on 127.0.0.1 for the benchmark."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

ACCESS_KEY = "AKIABENCHWALRUS00001"
SECRET_KEY = "bench-secret-key-0123456789abcdefghijkl"
REGION = "eucalypt-1"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Server:
    name: str
    url: str
    region: str
    proc: subprocess.Popen[bytes]

    def cpu_seconds(self) -> float:
        fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def rss_mb(self) -> float:
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        return 0.0


def serve_walrus(spec_path: str) -> None:
    """Entry point of the Walrus subprocess (``run.py --serve-walrus SPEC``)."""
    from eucalypt.auth import Credential, StaticCredentialStore
    from eucalypt.config import Config, WalrusConfig
    from eucalypt.walrus.app import create_app, run_app

    spec = json.loads(Path(spec_path).read_text())
    config = Config(data_dir=Path(spec["data_dir"]), walrus=WalrusConfig(port=spec["port"]))
    cred = Credential(ACCESS_KEY, SECRET_KEY, account_id="000000000001", user_name="bench")
    app = create_app(config, credentials=StaticCredentialStore([cred]))
    run_app(app, "127.0.0.1", spec["port"])


def _wait(url: str, proc: subprocess.Popen[bytes], timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{url}: server exited with {proc.returncode}")
        try:
            httpx.get(url, timeout=1)
            return
        except httpx.HTTPError:
            time.sleep(0.1)
    raise RuntimeError(f"{url} did not come up in {timeout}s")


@contextmanager
def _process(args: list[str], log: Path, env: dict[str, str] | None = None
             ) -> Iterator[subprocess.Popen[bytes]]:
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("wb") as out:
        proc = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT,
                                env={**os.environ, **(env or {})})
        try:
            yield proc
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


@contextmanager
def walrus(workdir: Path) -> Iterator[Server]:
    port = free_port()
    data_dir = workdir / "walrus"
    data_dir.mkdir(parents=True, exist_ok=True)
    spec = workdir / "walrus-spec.json"
    spec.write_text(json.dumps({"data_dir": str(data_dir), "port": port}))
    run_py = Path(__file__).with_name("run.py")
    with _process([sys.executable, str(run_py), "--serve-walrus", str(spec)],
                  workdir / "walrus.log") as proc:
        url = f"http://127.0.0.1:{port}"
        _wait(url + "/healthz", proc)
        yield Server("walrus", url, REGION, proc)


@contextmanager
def moto(workdir: Path) -> Iterator[Server]:
    port = free_port()
    moto_bin = Path(sys.executable).with_name("moto_server")
    with _process([str(moto_bin), "-H", "127.0.0.1", "-p", str(port)], workdir / "moto.log",
                  env={"MOTO_ALLOW_NONEXISTENT_REGION": "true"}) as proc:
        url = f"http://127.0.0.1:{port}"
        _wait(url, proc)
        yield Server("moto", url, "us-east-1", proc)
