"""Fixtures for the NC tests: configs and keys, an image server, a metadata server,
and a sync facade over the typed NC client.

Every server here listens on 127.0.0.1 only.
"""

from __future__ import annotations

import asyncio
import hashlib
import threading
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, TypeVar

import pytest

from eucalypt.auth import HttpRequest, authenticate
from eucalypt.auth.credentials import Credential
from eucalypt.config import Config, NcConfig
from eucalypt.nc.api import (
    BootImages,
    ImageRef,
    InstanceInfo,
    InstanceState,
    NcClient,
    NetworkSpec,
    RunInstanceRequest,
    VmSpec,
)
from eucalypt.net.runner import CommandResult, CommandRunner
from eucalypt.rpc import ComponentKeys
from tests.support.servers import free_port

T = TypeVar("T")


def nc_config(data_dir: Path, **nc: Any) -> Config:
    """A config whose NC listens on a free port; ``nc`` overrides NcConfig fields."""
    nc.setdefault("port", free_port())
    nc.setdefault("monitor_seconds", 0.5)
    config = Config(data_dir=data_dir, nc=NcConfig(**nc))
    ComponentKeys.generate(config.keys_dir)
    return config


class Nc:
    """Synchronous calls to one NC through the real typed client (``NcClient``)."""

    def __init__(self, url: str, config: Config, caller: str | Credential = "cc") -> None:
        self.url = url
        self.config = config
        keys = ComponentKeys.load(config.keys_dir)
        self.credential = keys.credential(caller) if isinstance(caller, str) else caller

    def call(self, fn: Callable[[NcClient], Awaitable[T]]) -> T:
        async def go() -> T:
            client = NcClient(self.url, self.credential, region=self.config.region, timeout=60)
            try:
                return await fn(client)
            finally:
                await client.aclose()

        return asyncio.run(go())

    def run(self, req: RunInstanceRequest) -> InstanceInfo:
        return self.call(lambda c: c.run_instance(req)).instance

    def describe(self, *ids: str) -> list[InstanceInfo]:
        return self.call(lambda c: c.describe_instances(list(ids))).instances

    def one(self, instance_id: str) -> InstanceInfo:
        return self.describe(instance_id)[0]

    def terminate(self, instance_id: str) -> InstanceInfo:
        return self.call(lambda c: c.terminate_instance(instance_id)).instance

    def console(self, instance_id: str) -> str:
        return self.call(lambda c: c.get_console_output(instance_id)).output

    def wait_state(
        self, instance_id: str, states: set[InstanceState], timeout: float = 60.0
    ) -> InstanceInfo:
        deadline = time.monotonic() + timeout
        while True:
            info = self.one(instance_id)
            if info.state in states:
                return info
            if time.monotonic() > deadline:
                raise AssertionError(f"{instance_id} still {info.state} after {timeout}s: {info}")
            time.sleep(0.1)


def run_request(
    instance_id: str,
    *,
    vm: VmSpec | None = None,
    images: BootImages | None = None,
    network: NetworkSpec | None = None,
) -> RunInstanceRequest:
    return RunInstanceRequest(
        instance_id=instance_id,
        reservation_id="r-test",
        owner_id="000000000001",
        vm=vm or VmSpec(name="t1.micro", cores=1, memory_mib=256, disk_gib=1),
        images=images
        or BootImages(root=ImageRef(image_id="emi-sim", url="http://127.0.0.1:9/none")),
        network=network or NetworkSpec(mode="none", mac="d0:0d:00:00:00:01"),
    )


class FakeIp:
    """A command runner that fakes `ip` (a host with bridge ``br0`` only) and records it.

    Other commands (qemu-img, cp) run for real when ``delegate`` is set, else fail.
    """

    def __init__(self, *, delegate: bool = False) -> None:
        self.commands: list[list[str]] = []
        self.taps: set[str] = set()
        self.delegate = delegate

    async def run(
        self,
        argv: Sequence[str],
        *,
        input: str | None = None,
        netns: str | None = None,
        check: bool = True,
        readonly: bool = False,
        timeout: float | None = None,
    ) -> CommandResult:
        argv = list(argv)
        if argv[0] != "ip" and self.delegate:
            return await CommandRunner().run(argv, check=check, timeout=timeout)
        self.commands.append(argv)
        rc, err = 0, ""
        match argv:
            case ["ip", "tuntap", "add", "dev", tap, "mode", "tap"]:
                self.taps.add(tap)
            case ["ip", "link", "set", tap, "master", bridge, "up"]:
                if bridge != "br0":
                    rc, err = 1, f'Cannot find device "{bridge}"'
            case ["ip", "link", "del", "dev", tap]:
                if tap in self.taps:
                    self.taps.remove(tap)
                else:
                    rc, err = 1, f'Cannot find device "{tap}"'
            case _:
                rc, err = 127, "unexpected command"
        result = CommandResult(tuple(argv), rc, "", err)
        return result.check() if check else result


# --------------------------------------------------------------------------- image server


@dataclass
class Served:
    data: bytes | Path
    md5: str


class ImageServer:
    """Serves files on 127.0.0.1 like a (tiny) Walrus: GET/HEAD, Content-Length, ETag = MD5.

    ``gets`` counts GETs per path; ``signed`` records whether each GET carried a SigV4
    signature that verifies against ``credential`` (service s3). ``delay`` slows each
    64 KiB chunk so concurrent requests really overlap.
    """

    def __init__(self, credential: Credential | None = None, region: str = "eucalypt-1") -> None:
        self.files: dict[str, Served] = {}
        self.gets: Counter[str] = Counter()
        self.signed: list[bool] = []
        self.delay = 0.0
        self.corrupt: set[str] = set()
        self._credential = credential
        lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: object) -> None:
                pass

            def _verify(self) -> bool:
                if server._credential is None or "authorization" not in self.headers:
                    return False
                path, _, query = self.path.partition("?")
                req = HttpRequest.create("GET", path, query, self.headers.items(), b"")
                from eucalypt.auth.credentials import StaticCredentialStore

                store = StaticCredentialStore([server._credential])
                try:
                    asyncio.run(authenticate(req, store))
                    return True
                except Exception:
                    return False

            def _head(self, method: str) -> Served | None:
                served = server.files.get(self.path.partition("?")[0])
                if served is None:
                    self.send_response(404)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return None
                size = (
                    len(served.data)
                    if isinstance(served.data, bytes)
                    else served.data.stat().st_size
                )
                self.send_response(200)
                self.send_header("Content-Length", str(size))
                self.send_header("ETag", f'"{served.md5}"')
                self.end_headers()
                return served

            def do_HEAD(self) -> None:
                self._head("HEAD")

            def do_GET(self) -> None:
                path = self.path.partition("?")[0]
                ok = self._verify()
                with lock:
                    server.gets[path] += 1
                    server.signed.append(ok)
                served = self._head("GET")
                if served is None:
                    return
                try:
                    for i, chunk in enumerate(_chunks(served.data)):
                        if path in server.corrupt and i == 0:
                            chunk = b"X" + chunk[1:]
                        self.wfile.write(chunk)
                        if server.delay:
                            time.sleep(server.delay)
                except (BrokenPipeError, ConnectionResetError):
                    pass

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._httpd.server_address[1]}"
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)

    def add(self, path: str, data: bytes | Path) -> str:
        """Serve ``data`` at ``path``; return its URL."""
        md5 = hashlib.md5(usedforsecurity=False)
        for chunk in _chunks(data):
            md5.update(chunk)
        self.files[path] = Served(data, md5.hexdigest())
        return self.url + path

    def __enter__(self) -> ImageServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(5)


def _chunks(data: bytes | Path, size: int = 65536) -> Iterator[bytes]:
    if isinstance(data, bytes):
        for i in range(0, len(data), size):
            yield data[i : i + size]
        return
    with data.open("rb") as fh:
        while chunk := fh.read(size):
            yield chunk


def sha256_of(data: bytes | Path) -> str:
    h = hashlib.sha256()
    for chunk in _chunks(data, 1 << 20):
        h.update(chunk)
    return h.hexdigest()


@pytest.fixture
def image_server() -> Iterator[ImageServer]:
    with ImageServer() as server:
        yield server
