"""Walrus's cache of decrypted images: on disk, size-capped, LRU, one decryption at a time.

Layout under ``root`` (one entry per manifest location, ``<id>`` = a hash of
``bucket/key``)::

    <id>.img          the decrypted image (never modified in place)
    <id>.json         what it is: location, version token, sha256, size, format, last use
    <id>.failed.json  why the last decryption of this version failed (so waiters and
                      retries get the same answer without decrypting again)
    <id>.lock         flock'ed while an entry is being produced
    tmp/              decryptions in progress

An entry is valid only for the *version token* it was made from (the
generations of the manifest object and of every part): overwriting the
manifest (or a part) changes the token, so the next request finds the entry
stale, drops it and decrypts again. That is the paper's "cache invalidation
is done when an image manifest is overwritten".

Concurrency uses ``flock`` on ``<id>.lock``, polled without blocking a
thread: concurrent requests for an image being decrypted wait for that one
decryption (in this process or another Walrus process on the same disk)
and then read its result. The lock also marks an entry as busy for
eviction. Readers hold an open file, so evicting (unlinking) an image being
served never cuts a download short.

When the total size passes ``max_bytes`` the least recently used entries go
first (never one that is locked or was just made).
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import fcntl
import hashlib
import json
import os
import time
from collections.abc import AsyncIterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

POLL_SECONDS = 0.05


@dataclass(frozen=True)
class CachedImage:
    location: str  # bucket/key of the manifest
    token: str  # the version it was decrypted from
    sha256: str
    size: int
    disk_format: str
    name: str  # the image's file name inside the bundle
    image_type: str
    decrypted_at: float
    last_used: float
    path: Path

    def meta(self) -> dict[str, Any]:
        d = asdict(self)
        d.pop("path")
        return d


@dataclass(frozen=True)
class Failure:
    code: str
    message: str


def entry_id(location: str) -> str:
    return hashlib.sha256(location.encode()).hexdigest()[:40]


class DecryptedImages:
    """See the module docstring. Cheap to construct (a few ``mkdir``)."""

    def __init__(self, root: Path, max_bytes: int) -> None:
        self.root = root
        self.max_bytes = max_bytes
        self.tmp = root / "tmp"
        self.tmp.mkdir(parents=True, exist_ok=True)

    # -- paths ---------------------------------------------------------------------
    def _img(self, eid: str) -> Path:
        return self.root / f"{eid}.img"

    def _meta(self, eid: str) -> Path:
        return self.root / f"{eid}.json"

    def _failed(self, eid: str) -> Path:
        return self.root / f"{eid}.failed.json"

    def _lock(self, eid: str) -> Path:
        return self.root / f"{eid}.lock"

    def temp_path(self, location: str) -> Path:
        return self.tmp / f"{entry_id(location)}.{os.getpid()}.{time.monotonic_ns()}"

    # -- reading ---------------------------------------------------------------------
    def _read_meta(self, eid: str) -> CachedImage | None:
        path = self._meta(eid)
        try:
            meta = json.loads(path.read_text())
            meta["last_used"] = path.stat().st_mtime  # see lookup()
            return CachedImage(path=self._img(eid), **meta)
        except (OSError, ValueError, TypeError):
            return None

    def lookup(self, location: str, token: str) -> CachedImage | None:
        """The entry for ``location`` if it was made from version ``token`` (its use recorded)."""
        eid = entry_id(location)
        entry = self._read_meta(eid)
        if entry is None or entry.token != token or entry.location != location:
            return None
        try:
            if entry.path.stat().st_size != entry.size:
                return None
        except FileNotFoundError:
            return None
        # The last use is the metadata file's mtime: touching it never rewrites the
        # content, so it cannot race with a commit replacing the entry.
        now = time.time()
        with contextlib.suppress(OSError):  # a hint for eviction only
            os.utime(self._meta(eid), (now, now))
        return CachedImage(**{**asdict(entry), "last_used": now})

    def open(self, location: str, token: str) -> tuple[CachedImage, int] | None:
        """The entry and an open descriptor of its image, consistent with each other.

        The image is opened *before* its metadata is read: :meth:`commit` removes
        the old metadata before it renames a new image in, so metadata that
        still names ``token`` proves the descriptor is that version's image.
        """
        eid = entry_id(location)
        try:
            fd = os.open(self._img(eid), os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
        except FileNotFoundError:
            return None
        entry = self.lookup(location, token)
        if entry is None or os.fstat(fd).st_size != entry.size:
            os.close(fd)
            return None
        return entry, fd

    def failure(self, location: str, token: str) -> Failure | None:
        try:
            data = json.loads(self._failed(entry_id(location)).read_text())
        except (OSError, ValueError):
            return None
        if data.get("token") != token or data.get("location") != location:
            return None
        return Failure(code=str(data["code"]), message=str(data["message"]))

    def entries(self) -> list[CachedImage]:
        """Every entry, least recently used first."""
        found = []
        for meta in self.root.glob("*.json"):
            if meta.name.endswith(".failed.json"):
                continue
            entry = self._read_meta(meta.stem)
            if entry is not None:
                found.append(entry)
        return sorted(found, key=lambda e: e.last_used)

    @property
    def total_bytes(self) -> int:
        return sum(e.size for e in self.entries())

    # -- writing (call with the entry's lock held) -------------------------------------
    def _write_json(self, path: Path, data: dict[str, Any]) -> None:
        tmp = self.tmp / f"{path.name}.{os.getpid()}.{time.monotonic_ns()}"
        tmp.write_text(json.dumps(data))
        os.replace(tmp, path)

    def drop(self, location: str) -> None:
        """Forget ``location`` (its image, metadata and recorded failure)."""
        eid = entry_id(location)
        for path in (self._meta(eid), self._img(eid), self._failed(eid)):
            with contextlib.suppress(FileNotFoundError):
                path.unlink()

    def commit(self, entry: CachedImage, temp: Path) -> CachedImage:
        """Make ``temp`` the image of ``entry.location`` (replacing a stale one)."""
        eid = entry_id(entry.location)
        final = CachedImage(**{**asdict(entry), "path": self._img(eid)})
        with contextlib.suppress(FileNotFoundError):
            self._failed(eid).unlink()
        # Metadata first, then the data: metadata without matching data reads as a miss.
        with contextlib.suppress(FileNotFoundError):
            self._meta(eid).unlink()
        os.chmod(temp, 0o440)
        os.replace(temp, final.path)
        self._write_json(self._meta(eid), final.meta())
        return final

    def record_failure(self, location: str, token: str, code: str, message: str) -> None:
        self.drop(location)
        self._write_json(
            self._failed(entry_id(location)),
            {"location": location, "token": token, "code": code, "message": message,
             "at": time.time()},
        )

    def clean_temp(self, location: str) -> None:
        """Remove temp files of ``location`` left by a crashed decryption (lock held)."""
        for leftover in self.tmp.glob(f"{entry_id(location)}.*"):
            with contextlib.suppress(FileNotFoundError):
                leftover.unlink()

    # -- locking -----------------------------------------------------------------------
    def _try_lock(self, eid: str) -> int | None:
        fd = os.open(self._lock(eid), os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            os.close(fd)
            if exc.errno in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                return None
            raise
        return fd

    @contextlib.asynccontextmanager
    async def locked(self, location: str) -> AsyncIterator[bool]:
        """Hold ``location``'s lock; yields True if another holder had it first (we waited)."""
        eid = entry_id(location)
        waited = False
        while (fd := self._try_lock(eid)) is None:
            waited = True
            await asyncio.sleep(POLL_SECONDS)
        try:
            yield waited
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)

    def evict(self, keep: str) -> list[str]:
        """Drop least recently used entries until under the cap; returns the locations dropped."""
        entries = self.entries()
        total = sum(e.size for e in entries)
        dropped: list[str] = []
        for entry in entries:
            if total <= self.max_bytes:
                break
            if entry.location == keep:
                continue
            fd = self._try_lock(entry_id(entry.location))
            if fd is None:
                continue  # being decrypted right now
            try:
                self.drop(entry.location)
            finally:
                fcntl.flock(fd, fcntl.LOCK_UN)
                os.close(fd)
            total -= entry.size
            dropped.append(entry.location)
        return dropped
