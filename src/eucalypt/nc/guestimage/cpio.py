"""A minimal writer for the "newc" cpio format the Linux kernel unpacks as an initramfs.

Writing the archive ourselves (instead of shelling out to ``cpio``) lets the build
create device nodes such as ``/dev/console`` and force every entry to be owned by
root, without needing root privileges on the build host.
"""

from __future__ import annotations

import gzip
import stat
from dataclasses import dataclass
from pathlib import Path

_TRAILER = "TRAILER!!!"


@dataclass(frozen=True)
class CpioEntry:
    """One archive member. ``name`` is relative to the archive root (no leading ``/``)."""

    name: str
    mode: int  # full st_mode, including the file type bits
    data: bytes = b""
    rdev_major: int = 0
    rdev_minor: int = 0


def _pad4(n: int) -> bytes:
    return b"\0" * ((4 - n % 4) % 4)


def _header(ino: int, entry: CpioEntry, nlink: int, filesize: int) -> bytes:
    name = entry.name.encode() + b"\0"
    fields = [
        ino,
        entry.mode,
        0,  # uid
        0,  # gid
        nlink,
        0,  # mtime: fixed so the archive is reproducible
        filesize,
        0,  # devmajor
        0,  # devminor
        entry.rdev_major,
        entry.rdev_minor,
        len(name),
        0,  # check
    ]
    head = b"070701" + b"".join(f"{f:08x}".encode() for f in fields)
    return head + name + _pad4(len(head) + len(name))


def write_newc(entries: list[CpioEntry]) -> bytes:
    """Serialise ``entries`` (parents before children) as an uncompressed newc archive."""
    out = bytearray()
    for ino, entry in enumerate(entries, start=1):
        nlink = 2 if stat.S_ISDIR(entry.mode) else 1
        out += _header(ino, entry, nlink, len(entry.data))
        out += entry.data + _pad4(len(entry.data))
    out += _header(0, CpioEntry(_TRAILER, 0), 1, 0)
    # Pad the archive to a 512-byte boundary like GNU cpio does.
    out += b"\0" * ((512 - len(out) % 512) % 512)
    return bytes(out)


class CpioBuilder:
    """Collects directories, files, symlinks and device nodes, then writes a gzip'd newc."""

    def __init__(self) -> None:
        self._entries: dict[str, CpioEntry] = {}

    def _add(self, entry: CpioEntry) -> None:
        parent = entry.name.rpartition("/")[0]
        if parent and parent not in self._entries:
            self.dir(parent)
        self._entries[entry.name] = entry

    @staticmethod
    def _norm(name: str) -> str:
        return name.strip("/")

    def dir(self, name: str, perm: int = 0o755) -> None:
        self._add(CpioEntry(self._norm(name), stat.S_IFDIR | perm))

    def file(self, name: str, data: bytes, perm: int = 0o644) -> None:
        self._add(CpioEntry(self._norm(name), stat.S_IFREG | perm, data))

    def file_from(self, name: str, src: Path, perm: int | None = None) -> None:
        mode = src.stat().st_mode & 0o7777 if perm is None else perm
        self.file(name, src.read_bytes(), mode)

    def symlink(self, name: str, target: str) -> None:
        self._add(CpioEntry(self._norm(name), stat.S_IFLNK | 0o777, target.encode()))

    def chardev(self, name: str, major: int, minor: int, perm: int = 0o600) -> None:
        self._add(CpioEntry(self._norm(name), stat.S_IFCHR | perm, b"", major, minor))

    def names(self) -> list[str]:
        return list(self._entries)

    def build(self) -> bytes:
        return write_newc(list(self._entries.values()))

    def write_gzip(self, path: Path) -> None:
        # mtime=0 keeps the gzip header reproducible too.
        path.write_bytes(gzip.compress(self.build(), compresslevel=6, mtime=0))
