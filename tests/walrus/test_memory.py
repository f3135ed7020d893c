"""Bounded memory: PUT and GET of a 2 GiB object keep Walrus's RSS under 200 MB.

Walrus runs as its own process (``launcher.py``) so its RSS can be read from
/proc; the client generates the upload on the fly and hashes the download as
it streams, so neither side ever holds the object.
"""

from __future__ import annotations

import hashlib
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from eucalypt.auth import sign_v4
from tests.walrus.conftest import ALICE, REGION
from tests.walrus.helpers import MiB
from tests.walrus.procs import WalrusProcess, walrus_process
from tests.walrus.test_durability import _client

SIZE = 2048 * MiB
LIMIT = 200 * 1000 * 1000


class RssSampler:
    def __init__(self, w: WalrusProcess) -> None:
        self.w = w
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self.w.rss_bytes())
            time.sleep(0.02)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()


def generated(md5: hashlib._Hash) -> Iterator[bytes]:
    block = bytearray(os.urandom(MiB))
    for i in range(SIZE // MiB):
        block[:8] = i.to_bytes(8, "big")  # every MiB differs
        chunk = bytes(block)
        md5.update(chunk)
        yield chunk


@pytest.mark.slow
def test_put_and_get_2gib_with_bounded_memory(tmp_path: Path) -> None:
    with walrus_process(tmp_path) as w:
        _client(w.url).create_bucket(Bucket="mem")
        baseline = w.rss_bytes()
        url = f"{w.url}/mem/two-gib"
        headers = sign_v4("PUT", url, {"content-length": str(SIZE)}, None, ALICE,
                          region=REGION, service="s3", unsigned_payload=True)
        sent_md5 = hashlib.md5()
        with RssSampler(w) as put_rss:
            t0 = time.monotonic()
            resp = httpx.put(url, content=generated(sent_md5),
                             headers={**headers, "content-length": str(SIZE)}, timeout=600)
            put_secs = time.monotonic() - t0
        assert resp.status_code == 200, resp.text
        assert resp.headers["etag"] == f'"{sent_md5.hexdigest()}"'

        got_md5, got = hashlib.md5(), 0
        get_headers = sign_v4("GET", url, {}, None, ALICE, region=REGION, service="s3")
        with RssSampler(w) as get_rss:
            t0 = time.monotonic()
            with httpx.stream("GET", url, headers=get_headers, timeout=600) as stream:
                assert stream.status_code == 200
                assert int(stream.headers["content-length"]) == SIZE
                for chunk in stream.iter_raw(MiB):
                    got_md5.update(chunk)
                    got += len(chunk)
            get_secs = time.monotonic() - t0
        assert got == SIZE and got_md5.hexdigest() == sent_md5.hexdigest()
        print(f"\nbaseline RSS {baseline / 1e6:.0f} MB; PUT peak {put_rss.peak / 1e6:.0f} MB "
              f"({SIZE / MiB / put_secs:.0f} MiB/s); GET peak {get_rss.peak / 1e6:.0f} MB "
              f"({SIZE / MiB / get_secs:.0f} MiB/s)")
        assert put_rss.peak < LIMIT, f"PUT peak RSS {put_rss.peak / 1e6:.0f} MB"
        assert get_rss.peak < LIMIT, f"GET peak RSS {get_rss.peak / 1e6:.0f} MB"
