"""Helpers for the guest image tests: a metadata server, a QEMU guest handle.

(Kept out of conftest.py so test modules can import them by a unique module name.)
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import socket
import subprocess
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

READY_MARK = b"EUCALYPT-GUEST-READY"


def _missing(tools: list[str]) -> list[str]:
    return [t for t in tools if shutil.which(t) is None and not Path("/sbin", t).exists()]


def require_tools(*tools: str) -> None:
    missing = _missing(list(tools))
    if missing:
        pytest.skip(
            f"missing {', '.join(missing)}: run scripts/install-deps.sh "
            "(Debian packages in src/eucalypt/nc/guestimage/DEPENDENCIES)"
        )


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class MetadataServer:
    """A tiny EC2 instance-metadata server on 127.0.0.1 (IMDSv2 and v1).

    ``v1_only``: PUT /latest/api/token answers 405, as a v1-only service would.
    ``requests`` records ``(method, path, sent_token)``.
    """

    def __init__(
        self, instance_id: str, public_key: str, user_data: bytes, *, v1_only: bool = False
    ) -> None:
        self.files = {
            "/latest/meta-data/instance-id": instance_id.encode(),
            "/latest/meta-data/public-keys/0/openssh-key": public_key.encode(),
            "/latest/user-data": user_data,
        }
        self.v1_only = v1_only
        self.tokens: set[str] = set()
        self.requests: list[tuple[str, str, bool]] = []
        lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.0"

            def log_message(self, format: str, *args: object) -> None:
                pass

            def _send(self, code: int, body: bytes = b"") -> None:
                self.send_response(code)
                self.send_header("Content-Type", "text/plain")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_PUT(self) -> None:
                with lock:
                    server.requests.append(("PUT", self.path, False))
                # As uvicorn (the real service's server) does: a client that has shut
                # down its sending side by now is taken to be gone, and gets no answer.
                time.sleep(0.05)
                try:
                    eof = self.connection.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT) == b""
                except BlockingIOError:
                    eof = False
                if eof:
                    self.close_connection = True
                    return None
                if server.v1_only:
                    return self._send(405)
                if self.path != "/latest/api/token":
                    return self._send(404)
                if not self.headers.get("X-aws-ec2-metadata-token-ttl-seconds"):
                    return self._send(400)
                token = secrets.token_urlsafe(24)
                with lock:
                    server.tokens.add(token)
                self._send(200, token.encode())

            def do_GET(self) -> None:
                token = self.headers.get("X-aws-ec2-metadata-token")
                with lock:
                    server.requests.append(("GET", self.path, token is not None))
                    known = token in server.tokens
                if token is not None and not known:
                    return self._send(401)
                body = server.files.get(self.path)
                return self._send(404) if body is None else self._send(200, body)

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        self.port: int = self._httpd.server_address[1]
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)

    def __enter__(self) -> MetadataServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(5)


@dataclass
class Guest:
    """A running QEMU guest started by :func:`boot_guest`."""

    proc: subprocess.Popen[bytes]
    serial_log: Path
    started: float
    qemu_log: Path
    ssh_port: int | None = None
    ssh_key: Path | None = None
    ready_after: float | None = None
    ready_line: str | None = None
    cmd: list[str] = field(default_factory=list)

    def console(self) -> str:
        try:
            return self.serial_log.read_bytes().decode(errors="replace")
        except OSError:
            return ""

    def qemu_output(self) -> str:
        try:
            return self.qemu_log.read_text(errors="replace")
        except OSError:
            return ""

    def wait_for(self, marker: bytes, timeout: float) -> float | None:
        """Seconds from start until ``marker`` is in the serial log (None on timeout/exit)."""
        deadline = self.started + timeout
        while time.monotonic() < deadline:
            try:
                data = self.serial_log.read_bytes()
            except OSError:
                data = b""
            if marker in data:
                return time.monotonic() - self.started
            if self.proc.poll() is not None:
                return None
            time.sleep(0.05)
        return None

    def wait_ready(self, timeout: float = 120.0) -> float:
        took = self.wait_for(READY_MARK, timeout)
        if took is None:
            raise AssertionError(
                f"guest not ready within {timeout} s (qemu rc={self.proc.poll()}); "
                f"qemu said:\n{self.qemu_output()}\nconsole:\n{self.console()}"
            )
        self.ready_after = took
        for line in self.console().splitlines():
            if line.startswith(READY_MARK.decode()):
                self.ready_line = line.strip()
        return took

    def ssh(self, command: str, timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
        """Run ``command`` as root over ssh (OpenSSH client), retrying while sshd comes up."""
        assert self.ssh_port is not None and self.ssh_key is not None
        argv = [
            "ssh", "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
            "-o", "BatchMode=yes", "-o", "ConnectTimeout=20", "-o", "LogLevel=ERROR",
            "-i", str(self.ssh_key), "-p", str(self.ssh_port), "root@127.0.0.1", command,
        ]  # fmt: skip
        deadline = time.monotonic() + timeout
        while True:
            res = subprocess.run(
                argv, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL
            )
            # 255 = ssh's own failure (connection refused/reset while dropbear starts).
            if res.returncode != 255 or time.monotonic() > deadline:
                return res
            time.sleep(0.5)

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=30)


@dataclass
class CpioMember:
    mode: int
    uid: int
    gid: int
    rdev: tuple[int, int]
    data: bytes

    @property
    def size(self) -> int:
        return len(self.data)

    @property
    def is_chardev(self) -> bool:
        return (self.mode & 0o170000) == 0o020000


def parse_newc(archive: bytes) -> dict[str, CpioMember]:
    """Parse an uncompressed newc cpio archive (independent of the code under test)."""
    out: dict[str, CpioMember] = {}
    pos = 0
    while True:
        head = archive[pos : pos + 110]
        assert head[:6] == b"070701", f"bad cpio magic at {pos}"
        f = [int(head[6 + 8 * i : 14 + 8 * i], 16) for i in range(13)]
        mode, uid, gid, filesize, rmaj, rmin, namesize = f[1], f[2], f[3], f[6], f[9], f[10], f[11]
        name = archive[pos + 110 : pos + 110 + namesize - 1].decode()
        pos = (pos + 110 + namesize + 3) & ~3
        data = archive[pos : pos + filesize]
        pos = (pos + filesize + 3) & ~3
        if name == "TRAILER!!!":
            return out
        out[name] = CpioMember(mode, uid, gid, (rmaj, rmin), data)
