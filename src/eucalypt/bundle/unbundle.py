"""Unbundling: parts -> (SHA-1 check) -> AES-128-CBC decrypt -> gunzip -> tar -> image.

:func:`unbundle` is the streaming core shared by Walrus (parts read from its
blob store, key decrypted with the cloud's private key) and the CLI (parts
from a directory, key decrypted with the user's private key). Memory stays
bounded (a few megabytes) whatever the image size.

Every check the manifest allows is made: each part's SHA-1, the total
encrypted size, the CBC padding, the gzip CRC, the SHA-1 of the whole tar
stream and the image size. A failure raises a :class:`BundleError` naming
what did not match; when the stream breaks inside a part (a tampered part
usually breaks gzip first), the rest of that part is hashed so the error
names the altered part rather than a decompression failure. Output written
before a failure is the caller's to discard.
"""

from __future__ import annotations

import hashlib
import queue
import tarfile
import threading
import zlib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from cryptography.hazmat.primitives.asymmetric import rsa

from eucalypt.bundle import crypto
from eucalypt.bundle.errors import (
    BundleError,
    CorruptBundle,
    DigestError,
    ManifestError,
    PartMissing,
)
from eucalypt.bundle.manifest import Manifest, ManifestPart

CHUNK = 1 << 20
QCOW2_MAGIC = b"QFI\xfb"
#: Yields the encrypted bytes of one part (raise PartMissing if it is not there).
PartSource = Callable[[ManifestPart], Iterable[bytes]]
Progress = Callable[[int], None]  # encrypted bytes consumed so far


@dataclass(frozen=True)
class Unbundled:
    """What came out: the tar member's name, and the image's size and digests."""

    name: str
    size: int
    sha256: str
    tar_sha1: str
    disk_format: str  # qcow2 when the image starts with QEMU's magic, else raw


def decrypt_key_iv(manifest: Manifest, key: rsa.RSAPrivateKey, *, user: bool = False
                   ) -> tuple[str, str]:
    """The AES key and IV, decrypted with the cloud's key (default) or the user's."""
    enc_key = manifest.user_encrypted_key if user else manifest.ec2_encrypted_key
    enc_iv = manifest.user_encrypted_iv if user else manifest.ec2_encrypted_iv
    whose = "user's" if user else "cloud's"
    if not enc_key or not enc_iv:
        raise ManifestError(f"the manifest carries no key encrypted to the {whose} certificate")
    return crypto.decrypt_hex(key, enc_key, "key"), crypto.decrypt_hex(key, enc_iv, "IV")


class _Parts:
    """The parts' bytes in order, each part's SHA-1 checked when it ends."""

    def __init__(self, manifest: Manifest, source: PartSource, progress: Progress | None):
        self._manifest, self._source, self._progress = manifest, source, progress
        self.total = 0
        self._current: tuple[ManifestPart, Iterator[bytes], object] | None = None

    def _check(self, part: ManifestPart, sha: object) -> None:
        got = sha.hexdigest()  # type: ignore[attr-defined]
        if got != part.digest:
            raise DigestError(
                f"part {part.index} ({part.filename}) has SHA-1 {got}, but the signed manifest "
                f"says {part.digest}: the part was altered or corrupted"
            )

    def chunks(self) -> Iterator[bytes]:
        for part in self._manifest.parts:
            sha = hashlib.sha1()
            it = iter(self._source(part))
            self._current = (part, it, sha)
            try:
                for chunk in it:
                    sha.update(chunk)
                    self.total += len(chunk)
                    if self._progress is not None:
                        self._progress(self.total)
                    yield chunk
            except BundleError:  # the source's own error (a missing part) says it best
                self._current = None
                raise
            self._current = None
            self._check(part, sha)
        if self.total != self._manifest.bundled_size:
            raise DigestError(
                f"the parts hold {self.total} bytes, the manifest says "
                f"{self._manifest.bundled_size}"
            )

    def finish_current(self) -> None:
        """Hash the rest of the part being read; DigestError if it was altered."""
        if self._current is None:
            return
        part, it, sha = self._current
        self._current = None
        try:
            for chunk in it:
                sha.update(chunk)  # type: ignore[attr-defined]
        except BundleError:
            return
        self._check(part, sha)


def _decrypt(chunks: Iterator[bytes], key: str, iv: str) -> Iterator[bytes]:
    aes = crypto.AesCbcDecryptor(key, iv)
    for chunk in chunks:
        out = aes.update(chunk)
        if out:
            yield out
    tail = aes.finalize()
    if tail:
        yield tail


def _gunzip(chunks: Iterator[bytes]) -> Iterator[bytes]:
    inflater = zlib.decompressobj(31)
    seen = False
    for chunk in chunks:
        data = chunk
        while data:
            seen = True
            out = inflater.decompress(data, CHUNK)
            if out:
                yield out
            while inflater.unconsumed_tail:
                out = inflater.decompress(inflater.unconsumed_tail, CHUNK)
                if out:
                    yield out
            data = b""
            if inflater.eof:
                data = inflater.unused_data
                if data.strip(b"\x00"):
                    inflater = zlib.decompressobj(31)  # another gzip member follows
                else:
                    data = b""
    if not seen or not inflater.eof:
        out = inflater.flush()
        if out:
            yield out
        if not inflater.eof:
            raise CorruptBundle("the decrypted stream ends inside its gzip data (truncated?)")


class _Reader:
    """A read()-able file over an iterator of bytes, hashing all it hands out (SHA-1)."""

    def __init__(self, chunks: Iterator[bytes]) -> None:
        self._chunks = chunks
        self._buf = b""
        self.sha1 = hashlib.sha1()

    def read(self, n: int = -1) -> bytes:
        if n is None or n < 0:
            data = self._buf + b"".join(self._chunks)
            self._buf = b""
        else:
            pieces, have = [self._buf], len(self._buf)
            while have < n:
                chunk = next(self._chunks, None)
                if chunk is None:
                    break
                pieces.append(chunk)
                have += len(chunk)
            buf = pieces[0] if len(pieces) == 1 else b"".join(pieces)
            data, self._buf = buf[:n], buf[n:]
        self.sha1.update(data)
        return data

    def read_some(self, n: int) -> bytes:
        """Up to ``n`` bytes, at most one upstream chunk: no joining, usually no copy."""
        if not self._buf:
            self._buf = next(self._chunks, b"")
        data, self._buf = self._buf[:n], self._buf[n:]
        self.sha1.update(data)
        return data

    def peek(self, n: int) -> bytes:
        """The next ``n`` bytes (fewer at the end), left unread."""
        pieces, have = [self._buf], len(self._buf)
        while have < n:
            chunk = next(self._chunks, None)
            if chunk is None:
                break
            pieces.append(chunk)
            have += len(chunk)
        self._buf = b"".join(pieces)
        return self._buf[:n]

    def drain(self) -> None:
        while self.read_some(CHUNK):
            pass


def _safe_name(name: str) -> str:
    base = name.replace("\\", "/").rsplit("/", 1)[-1]
    if not base or base in (".", "..") or "\x00" in base:
        raise CorruptBundle(f"the tar member has an unusable name {name!r}")
    return base


class _Writer:
    """Hashes (SHA-256) and writes the image on a thread of its own, behind a short queue.

    Hashing and writing then overlap with decryption and decompression (both
    release the GIL); the queue keeps memory bounded (``DEPTH`` chunks).
    """

    DEPTH = 4

    def __init__(self, out: IO[bytes]) -> None:
        self.sha = hashlib.sha256()
        self.size = 0
        self.head = b""
        self._out = out
        self._queue: queue.Queue[bytes | None] = queue.Queue(self.DEPTH)
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="unbundle-writer", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while (chunk := self._queue.get()) is not None:
            if self._error is not None:
                continue  # keep draining so the producer never blocks
            try:
                self.sha.update(chunk)
                self._out.write(chunk)
            except BaseException as exc:
                self._error = exc

    def write(self, chunk: bytes) -> None:
        if self._error is not None:
            raise self._error
        if len(self.head) < 4:
            self.head += chunk[:4]
        self.size += len(chunk)
        self._queue.put(chunk)

    def close(self) -> None:
        """Wait for the writes; re-raise the first write error."""
        self._queue.put(None)
        self._thread.join()
        if self._error is not None:
            raise self._error


def _plain_member(header: bytes) -> tarfile.TarInfo | None:
    """The member a lone ustar/GNU header describes, if it is a plain regular file."""
    if len(header) < tarfile.BLOCKSIZE:
        return None
    try:
        info = tarfile.TarInfo.frombuf(header, "utf-8", "surrogateescape")
    except tarfile.HeaderError:
        return None
    return info if info.type in (tarfile.REGTYPE, tarfile.AREGTYPE) else None


def _extract(reader: _Reader, out: IO[bytes]) -> tuple[str, int, str, bytes]:
    """The tar stream's first member into ``out``; any further members are skipped.

    A plain regular file (what ``tar -c`` and the EC2 tools write) is copied
    straight from the stream; anything else (long names, PAX headers, sparse
    files) goes through :mod:`tarfile`.
    """
    writer = _Writer(out)
    try:
        member = _plain_member(reader.peek(tarfile.BLOCKSIZE))
        if member is not None:
            reader.read(tarfile.BLOCKSIZE)
            left = member.size
            while left:
                chunk = reader.read_some(min(CHUNK, left))
                if not chunk:
                    raise CorruptBundle("the tar stream ends inside the image (truncated?)")
                writer.write(chunk)
                left -= len(chunk)
            name = _safe_name(member.name)
        else:
            with tarfile.open(mode="r|", fileobj=reader,  # type: ignore[call-overload]
                              bufsize=CHUNK) as tar:
                first = tar.next()
                if first is None or not first.isreg():
                    raise CorruptBundle(
                        "the bundle's tar stream does not start with a regular file")
                name = _safe_name(first.name)
                src = tar.extractfile(first)
                assert src is not None
                while chunk := src.read(CHUNK):
                    writer.write(chunk)
                while tar.next() is not None:
                    pass
    finally:
        writer.close()
    return name, writer.size, writer.sha.hexdigest(), writer.head


def unbundle(manifest: Manifest, key: str, iv: str, source: PartSource, out: IO[bytes],
             progress: Progress | None = None) -> Unbundled:
    """Decrypt the bundle into ``out``; every check in the module docstring, or an error."""
    parts = _Parts(manifest, source, progress)
    reader = _Reader(_gunzip(_decrypt(parts.chunks(), key, iv)))
    try:
        name, size, sha256, head = _extract(reader, out)
        reader.drain()
    except DigestError:
        raise
    except BundleError:
        parts.finish_current()
        raise
    except (tarfile.TarError, zlib.error, EOFError) as exc:
        parts.finish_current()
        raise CorruptBundle(f"the decrypted bundle is not a gzipped tar stream: {exc}") from exc
    if reader.sha1.hexdigest() != manifest.digest:
        raise DigestError(
            f"the image's tar stream has SHA-1 {reader.sha1.hexdigest()}, but the signed "
            f"manifest says {manifest.digest}"
        )
    if size != manifest.size:
        raise DigestError(f"the image has {size} bytes, the manifest says {manifest.size}")
    fmt = "qcow2" if head.startswith(QCOW2_MAGIC) else "raw"
    return Unbundled(name=name, size=size, sha256=sha256, tar_sha1=reader.sha1.hexdigest(),
                     disk_format=fmt)


def directory_source(directory: Path) -> PartSource:
    """Parts read from files in ``directory`` (as ``bundle image`` wrote them)."""

    def read(part: ManifestPart) -> Iterator[bytes]:
        path = directory / part.filename
        try:
            fh = path.open("rb")
        except FileNotFoundError:
            raise PartMissing(f"part {part.index} ({path}) is missing") from None
        with fh:
            while chunk := fh.read(CHUNK):
                yield chunk

    return read
