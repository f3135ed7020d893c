"""Network namespaces: where the data plane lives on developers' and CI machines.

Helpers to create and delete namespaces and veth pairs (through the runner),
and :func:`socket_in_netns` to open a listening socket inside a namespace from
a process that stays in its own (the CC's metadata proxy listens in the
data-plane namespace but talks to the CLC from the host's).
"""

from __future__ import annotations

import ctypes
import functools
import os
import socket
import threading
from dataclasses import dataclass

from eucalypt.net.runner import Runner

CLONE_NEWNET = 0x40000000
NETNS_DIR = "/var/run/netns"


async def create_netns(runner: Runner, name: str) -> None:
    """Create ``name`` with its loopback up."""
    await runner.run(["ip", "netns", "add", name])
    await runner.run(["ip", "link", "set", "lo", "up"], netns=name)


async def delete_netns(runner: Runner, name: str) -> None:
    """Delete ``name``; succeeds when it does not exist."""
    if os.path.exists(os.path.join(NETNS_DIR, name)):
        await runner.run(["ip", "netns", "del", name], check=False)


async def list_netns(runner: Runner) -> list[str]:
    res = await runner.run(["ip", "netns", "list"], readonly=True)
    return [line.split()[0] for line in res.stdout.splitlines() if line.strip()]


@dataclass(frozen=True)
class VethEnd:
    name: str
    netns: str | None = None
    address: str | None = None  # CIDR
    master: str | None = None  # a bridge in the same namespace


async def _setup_end(runner: Runner, end: VethEnd) -> None:
    if end.address:
        await runner.run(["ip", "addr", "add", end.address, "dev", end.name], netns=end.netns)
    if end.master:
        await runner.run(["ip", "link", "set", end.name, "master", end.master], netns=end.netns)
    await runner.run(["ip", "link", "set", end.name, "up"], netns=end.netns)


async def create_veth(runner: Runner, a: VethEnd, b: VethEnd) -> None:
    """A veth pair from ``a`` to ``b``, each end moved into its namespace, addressed and up."""
    argv = ["ip", "link", "add", a.name]
    if a.netns:
        argv += ["netns", a.netns]
    argv += ["type", "veth", "peer", "name", b.name]
    if b.netns:
        argv += ["netns", b.netns]
    await runner.run(argv)
    await _setup_end(runner, a)
    await _setup_end(runner, b)


@functools.cache
def _libc() -> ctypes.CDLL:
    return ctypes.CDLL(None, use_errno=True)


def _setns(fd: int) -> None:
    if _libc().setns(fd, CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))


def socket_in_netns(netns: str | None, host: str, port: int) -> socket.socket:
    """A listening TCP socket bound to ``host:port`` inside ``netns``.

    The socket is created by a short-lived thread that enters the namespace
    (``setns`` changes only the calling thread), so the caller's process and
    its other threads never leave their own namespace.
    """

    def make() -> socket.socket:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(128)
        sock.setblocking(False)
        return sock

    if netns is None:
        return make()
    box: dict[str, socket.socket | BaseException] = {}

    def worker() -> None:
        try:
            target = os.open(os.path.join(NETNS_DIR, netns), os.O_RDONLY)
            try:
                _setns(target)
            finally:
                os.close(target)
            box["sock"] = make()
        except BaseException as exc:  # handed to the caller below
            box["error"] = exc

    # The thread ends inside the namespace; it is discarded, never reused.
    t = threading.Thread(target=worker, name=f"netns-{netns}")
    t.start()
    t.join()
    if "error" in box:
        raise box["error"]  # type: ignore[misc]
    sock = box["sock"]
    assert isinstance(sock, socket.socket)
    return sock
