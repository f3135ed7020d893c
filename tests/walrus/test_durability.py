"""The storage promises: no torn reads under concurrent writes, last writer wins, each
writer gets the MD5 of what it stored, and kill -9 never loses or tears an object."""

from __future__ import annotations

import hashlib
import json
import os
import random
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import httpx
import pytest
import sqlalchemy as sa
from botocore.exceptions import BotoCoreError, ClientError

from eucalypt.auth import sign_v4
from eucalypt.db import Database
from eucalypt.walrus.services.janitor import referenced_blobs
from tests.walrus.conftest import ALICE, REGION, WalrusServer, boto_config, new_pg_database
from tests.walrus.helpers import MiB, md5_hex
from tests.walrus.procs import WalrusProcess, wait_until, walrus_process


def assert_no_leaks(walrus: WalrusServer) -> None:
    db = Database(walrus.database_url)
    try:
        refs = referenced_blobs(db)
    finally:
        db.dispose()
    files = {p.name for p in walrus.blob_files()}
    assert files == refs
    assert walrus.temp_files() == []


def test_concurrent_writers_and_readers(walrus: WalrusServer, s3: Any, bucket: str) -> None:
    bodies = [bytes([i]) * (MiB + i * 4099) for i in range(6)]
    valid = {md5_hex(b): b for b in bodies}
    s3.put_object(Bucket=bucket, Key="hot", Body=bodies[0])
    errors: list[str] = []
    stop = threading.Event()
    reads = [0]

    def writer(i: int) -> None:
        for _ in range(4):
            etag = s3.put_object(Bucket=bucket, Key="hot", Body=bodies[i])["ETag"]
            if etag != f'"{md5_hex(bodies[i])}"':
                errors.append(f"writer {i} got {etag}")

    def reader() -> None:
        while not stop.is_set():
            got = s3.get_object(Bucket=bucket, Key="hot")
            data = got["Body"].read()
            digest = md5_hex(data)
            if digest not in valid or got["ETag"] != f'"{digest}"':
                errors.append(f"torn read: {len(data)} bytes, etag {got['ETag']}")
            reads[0] += 1

    readers = [threading.Thread(target=reader) for _ in range(3)]
    writers = [threading.Thread(target=writer, args=(i,)) for i in range(len(bodies))]
    for t in readers + writers:
        t.start()
    for t in writers:
        t.join()
    stop.set()
    for t in readers:
        t.join()
    assert errors == []
    assert reads[0] > 0
    final = s3.get_object(Bucket=bucket, Key="hot")["Body"].read()
    assert md5_hex(final) in valid
    assert_no_leaks(walrus)


def test_concurrent_multipart_and_deletes(walrus: WalrusServer, s3: Any, bucket: str) -> None:
    """Completions, part re-uploads, deletes and puts racing on one key leave no garbage."""
    part = os.urandom(5 * MiB)

    def multipart(i: int) -> None:
        up = s3.create_multipart_upload(Bucket=bucket, Key="race")["UploadId"]
        etags = []
        for n in (1, 2):
            etags.append(s3.upload_part(Bucket=bucket, Key="race", UploadId=up, PartNumber=n,
                                        Body=part if n == 1 else bytes([i]) * 1000)["ETag"])
        s3.upload_part(Bucket=bucket, Key="race", UploadId=up, PartNumber=2,
                       Body=bytes([i]) * 1000)
        s3.complete_multipart_upload(Bucket=bucket, Key="race", UploadId=up, MultipartUpload={
            "Parts": [{"PartNumber": n, "ETag": e} for n, e in zip((1, 2), etags, strict=True)]})

    def churn() -> None:
        for i in range(5):
            s3.put_object(Bucket=bucket, Key="race", Body=bytes([i]) * 100)
            s3.delete_object(Bucket=bucket, Key="race")

    threads = [threading.Thread(target=multipart, args=(i,)) for i in range(3)]
    threads.append(threading.Thread(target=churn))
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    try:
        data = s3.get_object(Bucket=bucket, Key="race")["Body"].read()
        assert data[: len(part)] == part or len(data) == 100
    except ClientError as exc:
        assert exc.response["Error"]["Code"] == "NoSuchKey"
    assert_no_leaks(walrus)


def _client(url: str) -> Any:
    return boto3.client("s3", endpoint_url=url, region_name=REGION,
                        aws_access_key_id=ALICE.access_key,
                        aws_secret_access_key=ALICE.secret_key, config=boto_config())


def _slow_body(total: int, progress: list[int]) -> Iterator[bytes]:
    block = b"N" * MiB
    while progress[0] < total:
        progress[0] += len(block)
        yield block
        time.sleep(0.01)


def _start_slow_put(w: WalrusProcess, key: str, total: int, progress: list[int]
                    ) -> threading.Thread:
    url = f"{w.url}/crash/{key}"
    headers = sign_v4("PUT", url, {"content-length": str(total)}, None, ALICE, region=REGION,
                      service="s3", unsigned_payload=True)

    def run() -> None:
        try:
            httpx.put(url, content=_slow_body(total, progress),
                      headers={**headers, "content-length": str(total)}, timeout=60)
        except httpx.HTTPError:
            pass  # the server died under it, as intended

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


@pytest.fixture(params=["sqlite", "postgresql"])
def crash_db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """The metadata database for a crash test (a fresh PostgreSQL database or SQLite)."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'walrus.db'}"
        return
    url, drop = new_pg_database(request.getfixturevalue("pg_url"))
    yield url
    drop()


def test_kill_9_during_put_keeps_previous_version(tmp_path: Path, crash_db: str) -> None:
    previous = os.urandom(3 * MiB + 17)
    with walrus_process(tmp_path, crash_db) as w:
        s3 = _client(w.url)
        s3.create_bucket(Bucket="crash")
        etag = s3.put_object(Bucket="crash", Key="obj", Body=previous)["ETag"]
        progress = [0]
        thread = _start_slow_put(w, "obj", 256 * MiB, progress)
        assert wait_until(lambda: progress[0] >= 24 * MiB and bool(w.temp_files()))
        w.kill9()
        thread.join(timeout=30)
        assert w.temp_files(), "the interrupted upload should have left a temp file"
    with walrus_process(tmp_path, crash_db) as w2:
        assert w2.temp_files() == []  # swept at startup
        s3 = _client(w2.url)
        got = s3.get_object(Bucket="crash", Key="obj")
        assert got["ETag"] == etag and got["Body"].read() == previous
        assert [o["Key"] for o in s3.list_objects_v2(Bucket="crash")["Contents"]] == ["obj"]
        assert wait_until(lambda: w2.blob_files() == w2.referenced())


def test_kill_9_during_overwrite_storm(tmp_path: Path) -> None:
    """Writers overwrite one key and many keys; SIGKILL at random moments, three times.

    After each restart every object reads back whole and matches its ETag, and
    no temp file or unreferenced blob survives.
    """
    rng = random.Random(1234)
    bodies = [bytes([65 + i]) * (2 * MiB + i) for i in range(4)]
    valid = {md5_hex(b) for b in bodies}
    for round_ in range(3):
        with walrus_process(tmp_path) as w:
            s3 = _client(w.url)
            if round_ == 0:
                s3.create_bucket(Bucket="crash")
                s3.put_object(Bucket="crash", Key="hot", Body=bodies[0])
            stop = threading.Event()

            def writer(i: int, s3: Any = s3, stop: threading.Event = stop) -> None:
                n = 0
                while not stop.is_set():
                    try:
                        s3.put_object(Bucket="crash", Key="hot", Body=bodies[i])
                        s3.put_object(Bucket="crash", Key=f"k/{i}/{n % 5}", Body=bodies[i])
                    except (BotoCoreError, ClientError):
                        return
                    n += 1

            threads = [threading.Thread(target=writer, args=(i,), daemon=True)
                       for i in range(4)]
            for t in threads:
                t.start()
            time.sleep(0.3 + rng.random())
            w.kill9()
            stop.set()
            for t in threads:
                t.join(timeout=30)
        with walrus_process(tmp_path) as w2:
            assert w2.temp_files() == []
            s3 = _client(w2.url)
            keys = [o["Key"] for o in s3.list_objects_v2(Bucket="crash").get("Contents", [])]
            assert "hot" in keys
            for key in keys:
                got = s3.get_object(Bucket="crash", Key=key)
                data = got["Body"].read()
                assert hashlib.md5(data).hexdigest() in valid
                assert got["ETag"] == f'"{hashlib.md5(data).hexdigest()}"'
            assert wait_until(lambda w2=w2: w2.blob_files() == w2.referenced())


def test_kill_9_during_small_object_storm(tmp_path: Path, crash_db: str) -> None:
    """Inline (small) and file objects overwriting each other, SIGKILL mid-storm, twice.

    After each restart every acknowledged write is there (a key that only one
    writer writes holds its last acknowledged body, or the one it was sending
    when killed), every object reads back whole, ranges included, and no
    inline row, blob file or temp file is left over.
    """
    rng = random.Random(99)
    bodies = [bytes([97 + i]) * size for i, size in
              enumerate((1, 4096, 100_000, 128 * 1024, 200_000, MiB))]
    valid = {md5_hex(b): b for b in bodies}
    for round_ in range(2):
        acked: dict[str, str] = {}  # private key -> md5 of its last acknowledged PUT
        sending: dict[str, str] = {}  # private key -> md5 of the PUT in flight
        with walrus_process(tmp_path, crash_db) as w:
            s3 = _client(w.url)
            if round_ == 0:
                s3.create_bucket(Bucket="crash")
            stop = threading.Event()

            def writer(i: int, s3: Any = s3, stop: threading.Event = stop,
                       acked: dict[str, str] = acked, sending: dict[str, str] = sending
                       ) -> None:
                n = 0
                while not stop.is_set():
                    body = bodies[(i + n) % len(bodies)]
                    key = "hot" if n % 2 else f"k/{i}/{n % 3}"
                    private = key != "hot"
                    if private:
                        sending[key] = md5_hex(body)
                    try:
                        s3.put_object(Bucket="crash", Key=key, Body=body)
                    except (BotoCoreError, ClientError):
                        return
                    if private:
                        acked[key] = sending.pop(key)
                    n += 1

            threads = [threading.Thread(target=writer, args=(i,), daemon=True)
                       for i in range(4)]
            for t in threads:
                t.start()
            time.sleep(0.5 + rng.random())
            w.kill9()
            stop.set()
            for t in threads:
                t.join(timeout=30)
        assert acked, "no write was acknowledged before the kill"
        with walrus_process(tmp_path, crash_db) as w2:
            assert w2.temp_files() == []
            s3 = _client(w2.url)
            keys = {o["Key"] for o in s3.list_objects_v2(Bucket="crash").get("Contents", [])}
            assert set(acked) <= keys  # every acknowledged key survived the kill
            for key in keys:
                got = s3.get_object(Bucket="crash", Key=key)
                data = got["Body"].read()
                assert md5_hex(data) in valid and got["ETag"] == f'"{md5_hex(data)}"'
                if key in acked:
                    assert md5_hex(data) in {acked[key], sending.get(key)}
                part = s3.get_object(Bucket="crash", Key=key, Range="bytes=0-99")
                assert part["Body"].read() == data[:100]
            assert wait_until(lambda w2=w2: w2.blob_files() == w2.referenced())
            engine = sa.create_engine(w2.database_url)
            try:
                with engine.connect() as conn:
                    rows = set(conn.execute(sa.text(
                        "SELECT blob_id FROM walrus_inline_blobs")).scalars())
                    named = {seg[0] for segs in conn.execute(sa.text(
                        "SELECT segments FROM walrus_objects")).scalars()
                        for seg in (json.loads(segs) if isinstance(segs, str) else segs)
                        if seg[0].startswith("inline:")}
            finally:
                engine.dispose()
            assert rows == named


def test_startup_sweeps_orphans(tmp_path: Path) -> None:
    with walrus_process(tmp_path) as w:
        s3 = _client(w.url)
        s3.create_bucket(Bucket="sweep")
        s3.put_object(Bucket="sweep", Key="keep", Body=b"kept")
        storage = w.storage_dir
    orphan = storage / "blobs" / "ab" / "cd" / ("abcd" + "0" * 28)
    orphan.parent.mkdir(parents=True, exist_ok=True)
    orphan.write_bytes(b"garbage from a crash")
    old = time.time() - 60
    os.utime(orphan, (old, old))
    (storage / "tmp" / "deadbeef.tmp").write_bytes(b"half an upload")
    with walrus_process(tmp_path) as w2:
        assert w2.temp_files() == []
        assert wait_until(lambda: not orphan.exists())
        assert _client(w2.url).get_object(Bucket="sweep", Key="keep")["Body"].read() == b"kept"


def test_client_disconnect_mid_upload_leaves_nothing(walrus: WalrusServer, s3: Any,
                                                     bucket: str) -> None:
    import socket

    s3.put_object(Bucket=bucket, Key="kept", Body=b"old")
    url = f"{walrus.url}/{bucket}/kept"
    total = 64 * MiB
    headers = sign_v4("PUT", url, {"content-length": str(total)}, None, ALICE, region=REGION,
                      service="s3", unsigned_payload=True)
    headers["content-length"] = str(total)
    with socket.create_connection(("127.0.0.1", walrus.port)) as sock:
        head = f"PUT /{bucket}/kept HTTP/1.1\r\n" + "".join(
            f"{k}: {v}\r\n" for k, v in headers.items()) + "\r\n"
        sock.sendall(head.encode())
        for _ in range(8):
            sock.sendall(b"x" * MiB)
        assert wait_until(lambda: bool(walrus.temp_files()), timeout=10)
    # The connection is gone: the partial temp file goes, the old version stays.
    assert wait_until(lambda: not walrus.temp_files(), timeout=10)
    assert s3.get_object(Bucket=bucket, Key="kept")["Body"].read() == b"old"
    assert_no_leaks(walrus)
