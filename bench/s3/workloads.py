"""The measured workloads, all with boto3 against one S3 endpoint."""

from __future__ import annotations

import io
import os
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import boto3
from botocore.config import Config
from servers import ACCESS_KEY, SECRET_KEY, Server  # type: ignore[import-not-found]

MiB = 1 << 20
_BLOCK = os.urandom(MiB)


def client(server: Server, pool: int = 16) -> Any:
    return boto3.client(
        "s3", endpoint_url=server.url, region_name=server.region,
        aws_access_key_id=ACCESS_KEY, aws_secret_access_key=SECRET_KEY,
        config=Config(s3={"addressing_style": "path"}, max_pool_connections=pool,
                      retries={"max_attempts": 1, "mode": "standard"},
                      connect_timeout=30, read_timeout=600),
    )


class VirtualBody(io.RawIOBase):
    """``size`` bytes of a repeated random 1 MiB block, seekable, never held in memory."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.pos = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self.pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self.pos, io.SEEK_END: self.size}[whence]
        self.pos = max(0, min(self.size, base + offset))
        return self.pos

    def readinto(self, buf: Any) -> int:
        view = memoryview(buf).cast("B")
        n = min(len(view), self.size - self.pos)
        done = 0
        while done < n:
            inner = (self.pos + done) % MiB
            take = min(n - done, MiB - inner)
            view[done:done + take] = _BLOCK[inner:inner + take]
            done += take
        self.pos += n
        return n

    def __len__(self) -> int:
        return self.size


@dataclass
class Throughput:
    put_mib_s: float
    get_mib_s: float
    objects: int
    truncated: bool


def throughput(server: Server, bucket: str, size: int, clients: int, reps: int,
               budget_s: float) -> Throughput:
    """``clients`` threads (one boto3 client each) PUT then GET ``reps`` objects each."""
    boto = [client(server, 2) for _ in range(clients)]
    prefix = f"tp-{size}-{clients}-{uuid.uuid4().hex[:6]}"
    deadline = time.monotonic() + budget_s
    done: list[list[str]] = [[] for _ in range(clients)]
    stopped = threading.Event()

    def put(i: int) -> int:
        sent = 0
        for r in range(reps):
            if time.monotonic() > deadline:
                stopped.set()
                break
            key = f"{prefix}/{i}/{r}"
            boto[i].put_object(Bucket=bucket, Key=key, Body=VirtualBody(size))
            done[i].append(key)
            sent += size
        return sent

    def get(i: int) -> int:
        got = 0
        for key in done[i]:
            body = boto[i].get_object(Bucket=bucket, Key=key)["Body"]
            for chunk in body.iter_chunks(MiB):
                got += len(chunk)
        return got

    with ThreadPoolExecutor(clients) as pool:
        start = time.perf_counter()
        sent = sum(pool.map(put, range(clients)))
        put_secs = time.perf_counter() - start
        start = time.perf_counter()
        got = sum(pool.map(get, range(clients)))
        get_secs = time.perf_counter() - start
    assert got == sent, f"read {got} bytes, wrote {sent}"
    with ThreadPoolExecutor(clients) as pool:  # free the space for the next measurement
        for i in range(clients):
            for key in done[i]:
                pool.submit(boto[i].delete_object, Bucket=bucket, Key=key)
    return Throughput(sent / MiB / put_secs if sent else 0.0,
                      got / MiB / get_secs if got else 0.0,
                      sum(len(d) for d in done), stopped.is_set())


def small_ops(server: Server, bucket: str, threads: int, seconds: float) -> tuple[float, float]:
    """4 KiB PUTs then GETs of those keys from ``threads`` threads: (PUT/s, GET/s)."""
    s3 = client(server, threads * 2)
    body = os.urandom(4096)
    prefix = f"ops-{uuid.uuid4().hex[:6]}"
    keys: list[list[str]] = [[] for _ in range(threads)]

    def putter(i: int, until: float) -> None:
        n = 0
        while time.monotonic() < until:
            key = f"{prefix}/{i}/{n}"
            s3.put_object(Bucket=bucket, Key=key, Body=body)
            keys[i].append(key)
            n += 1

    def getter(i: int, until: float) -> int:
        n = 0
        while time.monotonic() < until:
            key = keys[i][n % len(keys[i])]
            assert s3.get_object(Bucket=bucket, Key=key)["Body"].read() == body
            n += 1
        return n

    with ThreadPoolExecutor(threads) as pool:
        start = time.perf_counter()
        until = time.monotonic() + seconds
        list(pool.map(lambda i: putter(i, until), range(threads)))
        put_rate = sum(len(k) for k in keys) / (time.perf_counter() - start)
        start = time.perf_counter()
        until = time.monotonic() + seconds
        gets = sum(pool.map(lambda i: getter(i, until), range(threads)))
        get_rate = gets / (time.perf_counter() - start)
    return put_rate, get_rate


def fill(server: Server, bucket: str, count: int, threads: int = 8) -> float:
    """Create ``count`` empty keys (in 50 prefixes); returns keys/s."""
    s3 = client(server, threads * 2)
    start = time.perf_counter()
    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(lambda n: s3.put_object(Bucket=bucket, Key=f"d{n % 50:02d}/k{n:06d}",
                                              Body=b""), range(count)))
    return count / (time.perf_counter() - start)


def list_all(server: Server, bucket: str, expected: int, repeats: int) -> float:
    """Seconds for one full ListObjectsV2 pagination (best of ``repeats``)."""
    s3 = client(server)
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        seen = 0
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket):
            seen += len(page.get("Contents", []))
        best = min(best, time.perf_counter() - start)
        assert seen == expected, f"listed {seen} keys, expected {expected}"
    return best
