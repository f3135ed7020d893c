"""The byte store: where object bodies live, behind a small interface.

Walrus keeps *metadata* in SQL and *bytes* in a :class:`BlobStore`. A blob is
immutable once committed and is named by an opaque id the store picks (a
random UUID for :class:`FilesystemStore`), never by anything a user chose, so
no object key can reach outside the data directory.

Write protocol (crash safety): bytes go to a temporary file in the store's
own ``tmp/`` directory (same filesystem). :meth:`BlobWriter.commit` renames it
to its final name and then makes the bytes (``fdatasync`` of the file) and
then the name (``fsync`` of its directory, and of any directory it had to
create) durable, in the writer's own thread: on a journaling filesystem the
fdatasync's journal commit already carries the rename. (These syncs ran in a
helper pool, beside each other, until that thread hop proved to cost more
CPU than the overlap saved.) Only after ``commit`` returns does the caller
commit (durably) the metadata that points at the blob, and only after that
commit does it delete the blob it replaced. Renaming before syncing is safe
because nothing refers to a blob until its metadata commits: a crash in
between leaves at worst an unreferenced, possibly short, blob. A crash
therefore leaves at worst an unreferenced temp file (removed by
:meth:`BlobStore.sweep_temp` at startup) or an unreferenced committed blob
(removed by the orphan sweep in ``services/janitor.py``).

All methods are synchronous and may block on disk: call them from a worker
thread. Researchers can swap the backend by implementing the two protocols
below and passing the store to ``create_app``.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import errno
import os
import secrets
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Protocol

COPY_CHUNK = 1 << 20
# Writeback is started every step of this many bytes, so the final fdatasync
# has little left to do: small steps while a blob is small (its sync is on
# the request's path), large ones once it is big (fewer, larger writes).
SMALL_WRITEBACK, SMALL_BLOB, WRITEBACK = 256 << 10, 4 << 20, 8 << 20
_SYNC_FILE_RANGE_WRITE = 2
# The bytes and the size, not the timestamps: all a reader of the blob needs.
_datasync = getattr(os, "fdatasync", os.fsync)


def _load_sync_file_range() -> Any:
    """libc's sync_file_range (Linux), or None: starts writeback without waiting for it."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        fn = libc.sync_file_range
    except (OSError, AttributeError):
        return None
    fn.argtypes = [ctypes.c_int, ctypes.c_int64, ctypes.c_int64, ctypes.c_uint]
    fn.restype = ctypes.c_int
    return fn


_sync_file_range = _load_sync_file_range()


def _start_writeback(fd: int, offset: int, length: int) -> None:
    if _sync_file_range is not None:
        _sync_file_range(fd, offset, length, _SYNC_FILE_RANGE_WRITE)


class BlobReader(Protocol):
    """An open, immutable blob. Reads stay valid even if the blob is deleted meanwhile."""

    size: int

    def read_at(self, offset: int, size: int) -> bytes: ...

    def close(self) -> None: ...


class BlobWriter(Protocol):
    """A blob being written. Exactly one of :meth:`commit` and :meth:`abort` ends it.

    Creating one must be cheap: a writer that is aborted before anything was
    written to it should cost no I/O.
    """

    blob_id: str
    size: int

    def write(self, data: bytes | bytearray | memoryview) -> None: ...

    def copy_from(self, reader: BlobReader, offset: int, length: int) -> None:
        """Append ``length`` bytes of ``reader`` from ``offset`` (no hashing)."""
        ...

    def commit(self) -> str:
        """Make the bytes durable under :attr:`blob_id` and return it."""
        ...

    def abort(self) -> None:
        """Discard the blob, committed or not (its metadata never committed)."""
        ...


class BlobStore(Protocol):
    def create(self) -> BlobWriter: ...

    def open(self, blob_id: str) -> BlobReader:
        """Open a committed blob; ``FileNotFoundError`` when it is gone."""
        ...

    def delete(self, blob_id: str) -> None:
        """Remove a blob; a blob that is already gone is not an error."""
        ...

    def sweep_temp(self) -> int:
        """Remove temporary files left by a crash; return how many. Call before serving."""
        ...

    def list_blobs(self, older_than: float) -> Iterator[str]:
        """Ids of committed blobs last modified before ``older_than`` (epoch seconds)."""
        ...

    def close(self) -> None:
        """Release the store's resources (threads); called once, at shutdown."""
        ...


def new_blob_id() -> str:
    """32 hex digits: the first 4 count minutes (mod 65,536), the other 28 are random.

    The store fans blobs out by the first 4 (``ab/cd/``), so the blobs of one
    minute share a directory: a PUT seldom has to make a directory (and sync
    the ones above it), where random ids made one for nearly every PUT on a
    young store. Ids stay unique by their 112 random bits.
    """
    return f"{(int(time.time()) // 60) & 0xFFFF:04x}{secrets.token_hex(14)}"


def _is_blob_id(name: str) -> bool:
    return len(name) == 32 and all(c in "0123456789abcdef" for c in name)


def _fsync_dir(path: Path | str) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class FileReader:
    """A blob file opened for positional reads (``os.pread``: no shared offset)."""

    def __init__(self, path: Path) -> None:
        self.fd = os.open(path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
        self.size = os.fstat(self.fd).st_size

    def read_at(self, offset: int, size: int) -> bytes:
        return os.pread(self.fd, size, offset)

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


class FileWriter:
    """Writes a temp file in ``tmp/`` (made on first use); :meth:`commit` renames it into
    place and syncs it."""

    def __init__(self, store: FilesystemStore) -> None:
        self._store = store
        self.blob_id = new_blob_id()
        self.size = 0
        self._flushed = 0
        self._tmp = os.path.join(store.tmp_dir, f"{self.blob_id}.tmp")
        self._final: str | None = None  # set once renamed into place
        self._fd = -1
        self._made = False

    def _file(self) -> int:
        if not self._made:
            flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0)
            self._fd = os.open(self._tmp, flags, 0o600)
            self._made = True
        return self._fd

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self._file()
        view = memoryview(data)
        while view:
            n = os.write(self._fd, view)
            view = view[n:]
            self.size += n
        step = SMALL_WRITEBACK if self.size <= SMALL_BLOB else WRITEBACK
        if self.size - self._flushed >= step:
            _start_writeback(self._fd, self._flushed, self.size - self._flushed)
            self._flushed = self.size

    def copy_from(self, reader: BlobReader, offset: int, length: int) -> None:
        self._file()
        src = getattr(reader, "fd", None)
        if isinstance(src, int) and hasattr(os, "copy_file_range"):
            done = 0
            try:
                while done < length:
                    n = os.copy_file_range(src, self._fd, length - done, offset + done)
                    if n == 0:
                        raise OSError(errno.EIO, "blob shorter than expected")
                    done += n
                self.size += done
                return
            except OSError as exc:
                if exc.errno not in (errno.EXDEV, errno.ENOSYS, errno.EOPNOTSUPP, errno.EINVAL):
                    raise
                # Filesystem cannot copy in-kernel: fall through from where we are.
                self.size += done
                offset, length = offset + done, length - done
        while length > 0:
            chunk = reader.read_at(offset, min(COPY_CHUNK, length))
            if not chunk:
                raise OSError(errno.EIO, "blob shorter than expected")
            self.write(chunk)
            offset += len(chunk)
            length -= len(chunk)

    def commit(self) -> str:
        self._file()
        final = str(self._store.path_of(self.blob_id))
        self._store.place(self._tmp, final)
        self._final = final
        # The rename comes first: on a journaling filesystem the fdatasync's
        # journal commit carries it, and the directory's fsync finds little left.
        _datasync(self._fd)
        self._store.sync_name(final)
        os.close(self._fd)
        self._fd = -1
        return self.blob_id

    def abort(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
        if self._made:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self._final or self._tmp)


class FilesystemStore:
    """Blobs as files under ``root/blobs/ab/cd/<id>`` (ids from :func:`new_blob_id`); temp files
    under ``root/tmp``."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        self.tmp_dir = self.root / "tmp"
        self.blob_dir = self.root / "blobs"
        for d in (self.tmp_dir, self.blob_dir):
            d.mkdir(parents=True, exist_ok=True)
        # Directories whose own entry (in the directory above) this process has
        # synced. Any other directory, even one found on disk at start (a killed
        # process may have left its entry in the page cache only), has the
        # directory above it synced by the first writer that uses it.
        _fsync_dir(self.root)  # the entries of blobs/ and tmp/
        self._durable: set[str] = {str(self.blob_dir)}

    def place(self, tmp: str, final: str) -> None:
        """Rename ``tmp`` to ``final`` (making its directory if need be)."""
        try:
            os.rename(tmp, final)
        except FileNotFoundError:
            if not os.path.exists(tmp):
                raise
            os.makedirs(os.path.dirname(final), exist_ok=True)
            os.rename(tmp, final)

    def sync_name(self, final: str) -> None:
        """Make the name ``final`` durable: fsync its directory, and the directory above
        each directory on the way up whose entry is not yet known durable (one to three
        fsyncs for the first blob in a directory, one afterwards)."""
        dirs = [os.path.dirname(final)]
        while dirs[-1] not in self._durable and dirs[-1] != str(self.blob_dir):
            dirs.append(os.path.dirname(dirs[-1]))
        for d in dirs:
            _fsync_dir(d)
        self._durable.update(dirs[:-1])  # their entries are in the synced one above

    def close(self) -> None:
        """Nothing to release: every sync runs in its writer's thread."""

    def path_of(self, blob_id: str) -> Path:
        # Ids are ours (hex UUIDs); refuse anything else so a corrupt row
        # can never name a path outside the store.
        if not _is_blob_id(blob_id):
            raise ValueError(f"not a blob id: {blob_id!r}")
        return self.blob_dir / blob_id[:2] / blob_id[2:4] / blob_id

    def create(self) -> FileWriter:
        return FileWriter(self)

    def open(self, blob_id: str) -> FileReader:
        return FileReader(self.path_of(blob_id))

    def delete(self, blob_id: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.path_of(blob_id).unlink()

    def sweep_temp(self) -> int:
        count = 0
        for entry in os.scandir(self.tmp_dir):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(entry.path)
                count += 1
        return count

    def list_blobs(self, older_than: float) -> Iterator[str]:
        for top in sorted(os.scandir(self.blob_dir), key=lambda e: e.name):
            if not top.is_dir():
                continue
            for mid in os.scandir(top.path):
                if not mid.is_dir():
                    continue
                for entry in os.scandir(mid.path):
                    with contextlib.suppress(FileNotFoundError):
                        if entry.stat().st_mtime < older_than:
                            yield entry.name

    def count_temp(self) -> int:
        return sum(1 for _ in os.scandir(self.tmp_dir))
