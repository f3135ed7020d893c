"""A lab of network namespaces for tests: hosts, instances, probes. All traffic stays inside.

Every namespace is ``eutest-<random>-<name>``; :meth:`Lab.close` kills the
processes inside the lab's namespaces (all started by the test) by PID and
deletes the namespaces, which removes every veth, bridge, VXLAN device and
iptables rule in them.
"""

from __future__ import annotations

import asyncio
import functools
import json
import os
import secrets
import shutil
import signal
import stat
import sys
import tempfile
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import pytest

from eucalypt.net.netns import create_netns, delete_netns
from eucalypt.net.runner import CommandResult, CommandRunner

TOOLS = ("ip", "bridge", "iptables-save", "iptables-restore", "dnsmasq", "busybox", "sysctl")
MISSING = [t for t in TOOLS if shutil.which(t) is None]

needs_root = pytest.mark.skipif(
    os.geteuid() != 0 or bool(MISSING),
    reason=f"needs root and {', '.join(MISSING) or 'the network tools'}",
)

T = TypeVar("T")

UDHCPC_SCRIPT = """#!/bin/sh
case "$1" in
  bound|renew)
    ip addr flush dev "$interface"
    ip addr add "$ip/$mask" dev "$interface"
    if [ -n "$router" ]; then
      ip route replace default via "${router%% *}" dev "$interface"
    fi
    ;;
esac
exit 0
"""


def run_async(fn: Callable[..., Awaitable[T]]) -> Callable[..., T]:
    """Run an async test body in its own event loop (no asyncio plugin in this suite)."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> T:
        return asyncio.run(fn(*args, **kwargs))  # type: ignore[arg-type]

    return wrapper


def shared_tempdir() -> Path:
    """A 0755 temporary directory (dnsmasq runs as nobody and must read it)."""
    path = Path(tempfile.mkdtemp(prefix="eutest-"))
    path.chmod(stat.S_IRWXU | stat.S_IRGRP | stat.S_IXGRP | stat.S_IROTH | stat.S_IXOTH)
    return path


class Lab:
    def __init__(self) -> None:
        self.tag = secrets.token_hex(3)
        self.runner = CommandRunner()
        self.namespaces: list[str] = []
        self.pids: list[int] = []
        self.dir = shared_tempdir()
        self.script = self.dir / "udhcpc.sh"
        self.script.write_text(UDHCPC_SCRIPT)
        self.script.chmod(0o755)
        self._veths = 0

    def name(self, short: str) -> str:
        return f"eutest-{self.tag}-{short}"

    async def netns(self, short: str) -> str:
        ns = self.name(short)
        await create_netns(self.runner, ns)
        self.namespaces.append(ns)
        return ns

    async def sh(self, ns: str | None, *argv: str, check: bool = True) -> CommandResult:
        return await self.runner.run(list(argv), netns=ns, check=check)

    async def link(
        self,
        ns_a: str,
        a: str,
        ns_b: str,
        b: str,
        addr_a: str | None = None,
        addr_b: str | None = None,
    ) -> None:
        """A veth from ``a`` in ``ns_a`` to ``b`` in ``ns_b``, both up."""
        tmp_a, tmp_b = f"eut{self.tag}a", f"eut{self.tag}b"
        # Created in the test's own namespace under temporary names, then moved at once.
        await self.sh(
            None,
            "ip",
            "link",
            "add",
            tmp_a,
            "netns",
            ns_a,
            "type",
            "veth",
            "peer",
            "name",
            tmp_b,
            "netns",
            ns_b,
        )
        await self.sh(ns_a, "ip", "link", "set", tmp_a, "name", a)
        await self.sh(ns_b, "ip", "link", "set", tmp_b, "name", b)
        for ns, dev, addr in ((ns_a, a, addr_a), (ns_b, b, addr_b)):
            if addr:
                await self.sh(ns, "ip", "addr", "add", addr, "dev", dev)
            await self.sh(ns, "ip", "link", "set", dev, "up")

    async def instance(self, short: str, node_ns: str, bridge: str, mac: str) -> str:
        """A namespace standing in for a VM: ``eth0`` with ``mac``, its peer on ``bridge``."""
        ns = await self.netns(short)
        self._veths += 1
        port = f"vt{self._veths}"
        await self.link(ns, "eth0", node_ns, port)
        await self.sh(ns, "ip", "link", "set", "eth0", "down")
        await self.sh(ns, "ip", "link", "set", "eth0", "address", mac)
        await self.sh(ns, "ip", "link", "set", "eth0", "up")
        await self.sh(node_ns, "ip", "link", "set", port, "master", bridge)
        return ns

    async def dhcp(self, ns: str, tries: int = 6) -> str | None:
        """Ask for a lease on eth0 (busybox udhcpc); the address got, or None."""
        res = await self.sh(
            ns,
            "busybox",
            "udhcpc",
            "-i",
            "eth0",
            "-s",
            str(self.script),
            "-n",
            "-q",
            "-t",
            str(tries),
            "-T",
            "1",
            "-f",
            check=False,
        )
        if res.returncode != 0:
            return None
        return await self.address(ns)

    async def address(self, ns: str, dev: str = "eth0") -> str | None:
        res = await self.sh(ns, "ip", "-j", "addr", "show", "dev", dev)
        for a in json.loads(res.stdout)[0].get("addr_info", []):
            if a["family"] == "inet":
                return str(a["local"])
        return None

    async def ping(self, ns: str, ip: str) -> bool:
        res = await self.sh(ns, "busybox", "ping", "-c", "1", "-W", "2", ip, check=False)
        return res.returncode == 0

    async def get(self, ns: str, url: str) -> str | None:
        """HTTP GET ``url`` from ``ns`` (no proxy): the body, or None when it fails."""
        code = (
            "import sys,urllib.request as u\n"
            "o=u.build_opener(u.ProxyHandler({}))\n"
            "sys.stdout.write(o.open(sys.argv[1], timeout=3).read().decode())\n"
        )
        res = await self.sh(ns, sys.executable, "-c", code, url, check=False)
        return res.stdout if res.returncode == 0 else None

    async def tcp(self, ns: str, ip: str, port: int) -> str | None:
        """GET http://ip:port/ from ``ns``: the body, or None when it does not connect."""
        return await self.get(ns, f"http://{ip}:{port}/")

    async def connects(self, ns: str, ip: str, port: int) -> bool:
        """Whether a TCP connection from ``ns`` to ``ip:port`` is accepted."""
        code = "import socket,sys; socket.create_connection((sys.argv[1], int(sys.argv[2])), 3)"
        res = await self.sh(ns, sys.executable, "-c", code, ip, str(port), check=False)
        return res.returncode == 0

    async def serve(self, ns: str, port: int, body: str) -> None:
        """A tiny HTTP server in ``ns`` answering ``body`` (``@client``: the client's
        address); killed by PID at close."""
        code = (
            "import http.server,sys\n"
            "class H(http.server.BaseHTTPRequestHandler):\n"
            "    def do_GET(self):\n"
            "        t=sys.argv[2]\n"
            "        b=(self.client_address[0] if t=='@client' else t).encode()\n"
            "        self.send_response(200);self.send_header('Content-Length',str(len(b)))\n"
            "        self.end_headers();self.wfile.write(b)\n"
            "    def log_message(self,*a):pass\n"
            "http.server.ThreadingHTTPServer(('0.0.0.0',int(sys.argv[1])),H).serve_forever()\n"
        )
        proc = await asyncio.create_subprocess_exec(
            "ip",
            "netns",
            "exec",
            ns,
            sys.executable,
            "-c",
            code,
            str(port),
            body,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL,
        )
        self.pids.append(proc.pid)
        for _ in range(100):
            if await self.connects(ns, "127.0.0.1", port):
                return
            await asyncio.sleep(0.05)
        raise RuntimeError(f"server on {ns}:{port} did not start")

    async def pids_in(self, ns: str) -> list[int]:
        res = await self.sh(None, "ip", "netns", "pids", ns, check=False)
        return [int(p) for p in res.stdout.split()]

    async def __aenter__(self) -> Lab:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        pids = list(self.pids)
        for ns in self.namespaces:
            pids += await self.pids_in(ns)  # only ever processes this lab started
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        for ns in reversed(self.namespaces):
            await delete_netns(self.runner, ns)
        shutil.rmtree(self.dir, ignore_errors=True)
