"""The machine's ceilings, measured in the same run: loopback TCP, disk write+fsync, MD5."""

from __future__ import annotations

import hashlib
import multiprocessing as mp
import os
import socket
import time
from pathlib import Path

MiB = 1 << 20


def _sink(port_q: mp.Queue, done_q: mp.Queue) -> None:  # type: ignore[type-arg]
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(1)
    port_q.put(srv.getsockname()[1])
    conn, _ = srv.accept()
    buf = bytearray(MiB)
    total = 0
    while True:
        n = conn.recv_into(buf)
        if not n:
            break
        total += n
    done_q.put(total)


def loopback_mib_s(seconds: float) -> float:
    """One TCP stream over 127.0.0.1 between two processes, 1 MiB sends."""
    ctx = mp.get_context("spawn")
    port_q: mp.Queue = ctx.Queue()  # type: ignore[type-arg]
    done_q: mp.Queue = ctx.Queue()  # type: ignore[type-arg]
    proc = ctx.Process(target=_sink, args=(port_q, done_q))
    proc.start()
    port = port_q.get(timeout=20)
    block = os.urandom(MiB)
    with socket.create_connection(("127.0.0.1", port)) as sock:
        start = time.perf_counter()
        while time.perf_counter() - start < seconds:
            for _ in range(16):
                sock.sendall(block)
        sock.shutdown(socket.SHUT_WR)
        total = done_q.get(timeout=60)
        elapsed = time.perf_counter() - start
    proc.join(timeout=10)
    return total / MiB / elapsed


def disk_fsync_mib_s(directory: Path, size_mib: int) -> float:
    """Sequential 1 MiB writes of ``size_mib`` MiB into a new file, then fsync."""
    path = directory / "ceiling.bin"
    block = os.urandom(MiB)
    start = time.perf_counter()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        for _ in range(size_mib):
            os.write(fd, block)
        os.fsync(fd)
    finally:
        os.close(fd)
    elapsed = time.perf_counter() - start
    path.unlink()
    return size_mib / elapsed


def md5_mib_s(size_mib: int = 256) -> float:
    """One core hashing MD5 (S3's ETag: every PUT byte goes through it)."""
    block = os.urandom(MiB)
    h = hashlib.md5()
    start = time.perf_counter()
    for _ in range(size_mib):
        h.update(block)
    return size_mib / (time.perf_counter() - start)
