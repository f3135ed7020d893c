"""Bundling: image file -> tar -> gzip -> AES-128-CBC -> parts + signed manifest.

One streaming pass with bounded memory (about a megabyte of buffers,
whatever the image size): the image is read in chunks into a tar stream
(one member, the image's base name), whose bytes are SHA-1 hashed (the
manifest's image digest), gzipped, encrypted and cut into parts of
``part_size`` bytes, each SHA-1 hashed as it is written. The manifest is
written last, so a directory with a manifest always has all of its parts.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import tarfile
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import rsa

from eucalypt import __version__
from eucalypt.bundle import crypto
from eucalypt.bundle.errors import BundleError
from eucalypt.bundle.manifest import (
    ARCHITECTURES,
    IMAGE_TYPES,
    Manifest,
    ManifestPart,
    manifest_name,
    part_name,
    render,
)

DEFAULT_PART_SIZE = 10 * 1024 * 1024
CHUNK = 1 << 20
Progress = Callable[[int], None]  # called with the number of image bytes read so far


@dataclass(frozen=True)
class BundleSpec:
    """What to bundle and how."""

    image: Path
    destination: Path
    user: str  # the account id (the manifest's <user>)
    prefix: str = ""  # default: the image's file name
    image_type: str = "machine"
    architecture: str = "x86_64"
    kernel_id: str | None = None
    ramdisk_id: str | None = None
    part_size: int = DEFAULT_PART_SIZE
    compress_level: int = 6


@dataclass(frozen=True)
class BundleKeys:
    """The user's private key and certificate, and the cloud's certificate."""

    private_key: rsa.RSAPrivateKey
    user_cert: x509.Certificate
    cloud_cert: x509.Certificate

    @classmethod
    def from_files(cls, private_key: Path, user_cert: Path, cloud_cert: Path) -> BundleKeys:
        return cls(
            private_key=crypto.load_private_key(private_key.read_bytes()),
            user_cert=crypto.load_certificate(user_cert.read_bytes()),
            cloud_cert=crypto.load_certificate(cloud_cert.read_bytes()),
        )


@dataclass(frozen=True)
class Bundle:
    manifest_path: Path
    part_paths: tuple[Path, ...]
    manifest: Manifest

    @property
    def files(self) -> list[Path]:
        """Every file of the bundle, parts first (the upload order)."""
        return [*self.part_paths, self.manifest_path]


class _PartWriter:
    """Cuts the encrypted stream into ``<prefix>.part.NN`` files of ``size`` bytes."""

    def __init__(self, directory: Path, prefix: str, size: int) -> None:
        self.directory, self.prefix, self.size = directory, prefix, size
        self.parts: list[ManifestPart] = []
        self.paths: list[Path] = []
        self.total = 0
        self._fh: IO[bytes] | None = None
        self._sha = hashlib.sha1()
        self._in_part = 0

    def _open(self) -> IO[bytes]:
        path = self.directory / part_name(self.prefix, len(self.paths))
        self.paths.append(path)
        self._fh = path.open("wb")
        self._sha = hashlib.sha1()
        self._in_part = 0
        return self._fh

    def _close_part(self) -> None:
        if self._fh is None:
            return
        self._fh.close()
        self._fh = None
        index = len(self.paths) - 1
        self.parts.append(ManifestPart(index, self.paths[-1].name, self._sha.hexdigest()))

    def write(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            fh = self._fh if self._fh is not None else self._open()
            n = min(len(view), self.size - self._in_part)
            fh.write(view[:n])
            self._sha.update(view[:n])
            self._in_part += n
            self.total += n
            view = view[n:]
            if self._in_part >= self.size:
                self._close_part()

    def close(self) -> None:
        if self._fh is None and not self.paths:
            self._open()  # an empty stream still makes one (empty) part
        self._close_part()

    def abort(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None
        for path in self.paths:
            with contextlib.suppress(FileNotFoundError):
                path.unlink()


class _TarSink:
    """The file object tarfile writes to: SHA-1 (the image digest), gzip, encrypt, parts."""

    def __init__(self, parts: _PartWriter, key: str, iv: str, level: int) -> None:
        self.sha1 = hashlib.sha1()
        self._zip = zlib.compressobj(level, zlib.DEFLATED, 31)  # 31: gzip framing
        self._aes = crypto.AesCbcEncryptor(key, iv)
        self._parts = parts

    def write(self, data: bytes) -> int:
        self.sha1.update(data)
        packed = self._zip.compress(data)
        if packed:
            self._parts.write(self._aes.update(packed))
        return len(data)

    def finish(self) -> None:
        self._parts.write(self._aes.update(self._zip.flush()) + self._aes.finalize())
        self._parts.close()


def _check(spec: BundleSpec) -> str:
    if spec.image_type not in IMAGE_TYPES:
        raise BundleError(f"image type must be one of {', '.join(IMAGE_TYPES)}")
    if spec.architecture not in ARCHITECTURES:
        raise BundleError(f"architecture must be one of {', '.join(ARCHITECTURES)}")
    if spec.part_size < 1024:
        raise BundleError("the part size must be at least 1 KiB")
    if not 0 <= spec.compress_level <= 9:
        raise BundleError("the compression level is 0..9")
    prefix = spec.prefix or spec.image.name
    if not prefix or "/" in prefix or prefix in (".", ".."):
        raise BundleError(f"bad bundle prefix {prefix!r}")
    if not spec.image.is_file():
        raise BundleError(f"{spec.image} is not a file")
    return prefix


def _remove_stale_parts(directory: Path, prefix: str) -> None:
    """Parts of an earlier bundle under the same prefix would be mistaken for ours."""
    pattern = re.compile(re.escape(prefix) + r"\.part\.\d+$")
    for entry in directory.iterdir():
        if pattern.match(entry.name) and entry.is_file():
            entry.unlink()


def _tarinfo(image: Path) -> tarfile.TarInfo:
    st = image.stat()
    info = tarfile.TarInfo(image.name)
    info.size = st.st_size
    info.mtime = int(st.st_mtime)
    info.mode = 0o644
    info.uid = info.gid = 0
    info.uname = info.gname = "root"
    return info


def _write_tar(fh: IO[bytes], info: tarfile.TarInfo, sink: _TarSink,
               progress: Progress | None) -> int:
    """A one-member GNU tar stream, as ``tar -c`` writes it, straight into ``sink``.

    (tarfile's own stream writer copies its buffer on every write; this does
    not, which makes bundling several times faster.)
    """
    sink.write(info.tobuf(tarfile.GNU_FORMAT, "utf-8", "surrogateescape"))
    done = 0
    while done < info.size:
        data = fh.read(min(CHUNK, info.size - done))
        if not data:
            raise BundleError(f"{info.name} shrank while being bundled")
        sink.write(data)
        done += len(data)
        if progress is not None:
            progress(done)
    tail = -done % tarfile.BLOCKSIZE + 2 * tarfile.BLOCKSIZE  # pad the member, end marker
    total = len(info.tobuf(tarfile.GNU_FORMAT, "utf-8", "surrogateescape")) + done + tail
    tail += -total % tarfile.RECORDSIZE  # tar pads the archive to whole records
    sink.write(bytes(tail))
    return done


def bundle_image(spec: BundleSpec, keys: BundleKeys, progress: Progress | None = None) -> Bundle:
    """Bundle ``spec.image`` into ``spec.destination``; see the module docstring."""
    prefix = _check(spec)
    spec.destination.mkdir(parents=True, exist_ok=True)
    _remove_stale_parts(spec.destination, prefix)
    key, iv = crypto.new_key_iv()
    parts = _PartWriter(spec.destination, prefix, spec.part_size)
    sink = _TarSink(parts, key, iv, spec.compress_level)
    try:
        with spec.image.open("rb") as fh:
            size = _write_tar(fh, _tarinfo(spec.image), sink, progress)
        sink.finish()
    except BaseException:
        parts.abort()
        raise
    manifest = Manifest(
        name=prefix,
        user=spec.user,
        image_type=spec.image_type,
        architecture=spec.architecture,
        digest=sink.sha1.hexdigest(),
        size=size,
        bundled_size=parts.total,
        ec2_encrypted_key=crypto.encrypt_hex(keys.cloud_cert, key),
        user_encrypted_key=crypto.encrypt_hex(keys.user_cert, key),
        ec2_encrypted_iv=crypto.encrypt_hex(keys.cloud_cert, iv),
        user_encrypted_iv=crypto.encrypt_hex(keys.user_cert, iv),
        parts=tuple(parts.parts),
        kernel_id=spec.kernel_id,
        ramdisk_id=spec.ramdisk_id,
        bundler=("eucalypt", __version__, "0"),
    )
    path = spec.destination / manifest_name(prefix)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{time.monotonic_ns()}")
    try:
        tmp.write_bytes(render(manifest, keys.private_key))
        tmp.replace(path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        parts.abort()
        raise
    return Bundle(manifest_path=path, part_paths=tuple(parts.paths), manifest=manifest)
