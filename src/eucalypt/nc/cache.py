"""The node's image cache: content-addressed, size-capped, LRU, fetch-once.

Layout under ``root``::

    objects/<key>        the image bytes (read-only, never modified in place)
    objects/<key>.json   its metadata: url, sha256, size, format, last use
    tmp/                 downloads in progress (emptied when the cache opens)

``key`` is the image's sha256 when the reference names it (the normal case:
the digest then both names the entry and is checked). Without one, the key
hashes the URL and the object's ETag (asked with a signed HEAD), so an image
overwritten in Walrus is fetched anew; a plain-MD5 ETag is then checked too.

A download streams into ``tmp/`` with bounded memory, hashing as it goes;
only a verified file is renamed into ``objects/`` (its metadata first), so
an entry is either complete or absent, across crashes too. Concurrent
requests for one key share one download (a per-key task); a requester that
is cancelled does not cancel the download for the others.

Instances get their copy with :meth:`ImageCache.materialize`: a hard link
(the entries are immutable, so sharing is safe) or, across filesystems, a
sparse copy. Evicting an entry therefore never pulls a file from under a
running instance; the size cap counts the cache's own entries. When the
total passes the cap, the least recently used entries go first.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import os
import re
import secrets
import time
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import IO, Any

import httpx

from eucalypt.auth import HttpxSigV4Auth
from eucalypt.auth.credentials import Credential
from eucalypt.nc.api import ImageRef
from eucalypt.nc.errors import ImageError
from eucalypt.net.runner import CommandError, CommandRunner, Runner

log = logging.getLogger("eucalypt.nc.cache")

CHUNK = 1 << 20
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_MD5 = re.compile(r"^[0-9a-f]{32}$")


@dataclass(frozen=True)
class CacheEntry:
    key: str
    path: Path
    url: str
    image_id: str
    sha256: str
    size: int
    format: str
    last_used: float

    def meta(self) -> dict[str, Any]:
        d = asdict(self)
        d.pop("path")
        return d


@dataclass(frozen=True)
class FetchSettings:
    """How the cache reaches image URLs (normally Walrus, with the NC's key)."""

    credential: Credential | None = None
    region: str = "eucalypt-1"
    connect_timeout: float = 10.0
    read_timeout: float = 120.0


class ImageCache:
    """See the module docstring. One per NC, built in ``create_app``."""

    def __init__(
        self,
        root: Path,
        max_bytes: int,
        fetch: FetchSettings | None = None,
        runner: Runner | None = None,
    ) -> None:
        self.root = root
        self.max_bytes = max_bytes
        self._fetch_settings = fetch or FetchSettings()
        self._runner = runner or CommandRunner()
        self._objects = root / "objects"
        self._tmp = root / "tmp"
        self._entries: dict[str, CacheEntry] = {}
        self._inflight: dict[str, asyncio.Task[CacheEntry]] = {}
        self._pins: Counter[str] = Counter()
        self._http: httpx.AsyncClient | None = None
        self._opened = False
        #: Downloads completed by this cache object (logs and tests).
        self.downloads = 0

    # ------------------------------------------------------------------ open / close
    def open(self) -> None:
        """Load the entries on disk; drop half-written ones. Idempotent."""
        if self._opened:
            return
        self._objects.mkdir(parents=True, exist_ok=True)
        self._tmp.mkdir(parents=True, exist_ok=True)
        for leftover in self._tmp.iterdir():
            with contextlib.suppress(OSError):
                leftover.unlink()
        for meta_path in self._objects.glob("*.json"):
            key = meta_path.stem
            data_path = self._objects / key
            try:
                meta = json.loads(meta_path.read_text())
                entry = CacheEntry(path=data_path, **meta)
                if entry.key != key or data_path.stat().st_size != entry.size:
                    raise ValueError("metadata does not match the data file")
            except (OSError, ValueError, TypeError) as exc:
                # The metadata is written before the data is renamed into place, so
                # metadata without (matching) data is an interrupted insert.
                log.warning("dropping cache entry", extra={"key": key, "error": str(exc)})
                for p in (data_path, meta_path):
                    with contextlib.suppress(OSError):
                        p.unlink()
                continue
            self._entries[key] = entry
        for data_path in self._objects.iterdir():
            if data_path.suffix != ".json" and data_path.name not in self._entries:
                with contextlib.suppress(OSError):
                    data_path.unlink()
        self._opened = True
        log.info(
            "image cache open",
            extra={
                "root": str(self.root),
                "entries": len(self._entries),
                "bytes": self.total_bytes,
            },
        )

    async def aclose(self) -> None:
        for task in list(self._inflight.values()):
            task.cancel()
        for task in list(self._inflight.values()):
            with contextlib.suppress(BaseException):
                await task
        if self._http is not None:
            await self._http.aclose()
            self._http = None

    # ------------------------------------------------------------------ queries
    @property
    def total_bytes(self) -> int:
        return sum(e.size for e in self._entries.values())

    def entries(self) -> list[CacheEntry]:
        """The entries, least recently used first."""
        return sorted(self._entries.values(), key=lambda e: e.last_used)

    # ------------------------------------------------------------------ get
    async def get(self, ref: ImageRef) -> CacheEntry:
        """The cache entry for ``ref``: from disk, or fetched (once per key) and verified."""
        self.open()
        key, etag = await self._key_for(ref)
        entry = self._entries.get(key)
        if entry is not None and entry.path.exists():
            return self._touch(entry)
        task = self._inflight.get(key)
        if task is None:
            task = asyncio.create_task(self._fetch(key, ref, etag), name=f"fetch-{key[:12]}")
            self._inflight[key] = task
            task.add_done_callback(lambda t: self._fetch_done(key, t))
        # shield: a launch that is cancelled (its instance terminated) leaves the
        # download running for the other launches waiting on it.
        return await asyncio.shield(task)

    async def materialize(self, ref: ImageRef, dest: Path) -> CacheEntry:
        """Get ``ref`` and put a node-local copy at ``dest`` (hard link, else sparse copy)."""
        entry = await self.get(ref)
        self._pins[entry.key] += 1  # eviction leaves pinned entries alone
        try:
            with contextlib.suppress(FileNotFoundError):
                dest.unlink()
            try:
                os.link(entry.path, dest)
            except OSError:
                result = await self._runner.run(
                    ["cp", "--sparse=always", "--reflink=auto", str(entry.path), str(dest)],
                    check=False,
                )
                try:
                    result.check()
                except CommandError as exc:
                    raise ImageError(f"cannot copy image {ref.image_id}: {exc}") from exc
        finally:
            self._pins[entry.key] -= 1
            if self._pins[entry.key] <= 0:
                del self._pins[entry.key]
        return entry

    # ------------------------------------------------------------------ internals
    def _client(self) -> httpx.AsyncClient:
        if self._http is None:
            s = self._fetch_settings
            auth = (
                HttpxSigV4Auth(s.credential, region=s.region, service="s3")
                if s.credential is not None
                else None
            )
            self._http = httpx.AsyncClient(
                auth=auth,
                timeout=httpx.Timeout(s.read_timeout, connect=s.connect_timeout),
                follow_redirects=False,
            )
        return self._http

    async def _key_for(self, ref: ImageRef) -> tuple[str, str | None]:
        if not ref.url.startswith(("http://", "https://")):
            raise ImageError(
                f"image {ref.image_id}: only http(s) URLs are fetched, not {ref.url!r}"
            )
        if ref.sha256 is not None:
            digest = ref.sha256.lower()
            if not _SHA256.match(digest):
                raise ImageError(
                    f"image {ref.image_id}: sha256 {ref.sha256!r} is not 64 hex digits"
                )
            return digest, None
        try:
            reply = await self._client().head(ref.url)
        except httpx.HTTPError as exc:
            raise ImageError(f"image {ref.image_id}: HEAD {ref.url} failed: {exc!r}") from exc
        if reply.status_code != 200:
            raise ImageError(f"image {ref.image_id}: HEAD {ref.url} answered {reply.status_code}")
        etag = reply.headers.get("etag", "").strip('"').strip()
        return hashlib.sha256(f"{ref.url}\0{etag}".encode()).hexdigest(), etag or None

    def _touch(self, entry: CacheEntry) -> CacheEntry:
        fresh = CacheEntry(**{**asdict(entry), "last_used": time.time()})
        self._entries[entry.key] = fresh
        try:
            self._write_meta(fresh, fsync=False)
        except OSError as exc:  # the last-use time is a hint; losing it is harmless
            log.warning("cannot record cache use", extra={"key": entry.key, "error": str(exc)})
        return fresh

    def _write_meta(self, entry: CacheEntry, *, fsync: bool) -> None:
        path = self._objects / f"{entry.key}.json"
        tmp = self._tmp / f"{entry.key}.json.{secrets.token_hex(4)}"
        with tmp.open("w") as fh:
            json.dump(entry.meta(), fh)
            if fsync:
                fh.flush()
                os.fsync(fh.fileno())
        os.replace(tmp, path)

    def _fetch_done(self, key: str, task: asyncio.Task[CacheEntry]) -> None:
        self._inflight.pop(key, None)
        if not task.cancelled():
            task.exception()  # retrieved here, so a failure nobody awaits is not "lost"

    async def _fetch(self, key: str, ref: ImageRef, etag: str | None) -> CacheEntry:
        tmp = self._tmp / f"{key}.{secrets.token_hex(4)}.part"
        started = time.monotonic()
        log.info("fetching image", extra={"image_id": ref.image_id, "url": ref.url, "key": key})
        try:
            sha, md5, size = await self._download(ref, tmp)
            if ref.sha256 is not None and sha != ref.sha256.lower():
                raise ImageError(
                    f"image {ref.image_id}: sha256 mismatch (expected {ref.sha256}, got {sha})"
                )
            if ref.size is not None and size != ref.size:
                raise ImageError(
                    f"image {ref.image_id}: size mismatch (expected {ref.size}, got {size})"
                )
            if etag is not None and _MD5.match(etag) and md5 != etag:
                raise ImageError(f"image {ref.image_id}: MD5 does not match the ETag {etag}")
            entry = CacheEntry(
                key=key,
                path=self._objects / key,
                url=ref.url,
                image_id=ref.image_id,
                sha256=sha,
                size=size,
                format=ref.format,
                last_used=time.time(),
            )
            await asyncio.to_thread(self._commit, tmp, entry)
        except BaseException:
            with contextlib.suppress(OSError):
                tmp.unlink()
            raise
        self._entries[key] = entry
        self.downloads += 1
        took = time.monotonic() - started
        log.info(
            "image cached",
            extra={"image_id": ref.image_id, "key": key, "bytes": size, "seconds": round(took, 2)},
        )
        self._evict(keep=key)
        return entry

    def _commit(self, tmp: Path, entry: CacheEntry) -> None:
        os.chmod(tmp, 0o444)
        self._write_meta(entry, fsync=True)
        os.replace(tmp, entry.path)
        dirfd = os.open(self._objects, os.O_DIRECTORY)
        try:
            os.fsync(dirfd)
        finally:
            os.close(dirfd)

    async def _download(self, ref: ImageRef, tmp: Path) -> tuple[str, str, int]:
        sha = hashlib.sha256()
        md5 = hashlib.md5(usedforsecurity=False)
        size = 0
        next_report = 0.0
        try:
            async with self._client().stream("GET", ref.url) as reply:
                if reply.status_code != 200:
                    body = (await reply.aread())[:300].decode(errors="replace")
                    raise ImageError(
                        f"image {ref.image_id}: GET {ref.url} answered {reply.status_code}: {body}"
                    )
                total = int(reply.headers.get("content-length", "0") or 0) or ref.size or 0
                with tmp.open("wb") as fh:
                    async for chunk in reply.aiter_bytes(CHUNK):
                        await asyncio.to_thread(_write_chunk, fh, chunk, sha, md5)
                        size += len(chunk)
                        if total and size / total >= next_report:
                            log.info(
                                "fetching image",
                                extra={
                                    "image_id": ref.image_id,
                                    "percent": round(100 * size / total),
                                    "bytes": size,
                                },
                            )
                            next_report += 0.1
                    await asyncio.to_thread(_flush, fh)
        except httpx.HTTPError as exc:
            raise ImageError(f"image {ref.image_id}: GET {ref.url} failed: {exc!r}") from exc
        except OSError as exc:
            raise ImageError(f"image {ref.image_id}: cannot write the cache: {exc}") from exc
        return sha.hexdigest(), md5.hexdigest(), size

    def _evict(self, keep: str) -> None:
        total = self.total_bytes
        for entry in self.entries():
            if total <= self.max_bytes:
                return
            if entry.key == keep or self._pins.get(entry.key):
                continue
            for p in (entry.path, self._objects / f"{entry.key}.json"):
                with contextlib.suppress(FileNotFoundError):
                    p.unlink()
            del self._entries[entry.key]
            total -= entry.size
            log.info(
                "evicted image",
                extra={"key": entry.key, "image_id": entry.image_id, "bytes": entry.size},
            )
        if total > self.max_bytes:
            log.warning(
                "image cache over its cap: the entries left are in use",
                extra={"bytes": total, "cap": self.max_bytes},
            )


def _write_chunk(fh: IO[bytes], chunk: bytes, sha: Any, md5: Any) -> None:
    fh.write(chunk)
    sha.update(chunk)
    md5.update(chunk)


def _flush(fh: IO[bytes]) -> None:
    fh.flush()
    os.fsync(fh.fileno())
