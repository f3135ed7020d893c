"""Just enough ELF64 parsing to build a guest image without running foreign tools.

* :func:`modinfo` reads a kernel module's ``.modinfo`` section (``depends=``, ``vermagic=``)
  so the initramfs can load modules in dependency order without ``modules.dep``.
* :func:`needed_libraries` reads an executable's ``DT_NEEDED`` entries so the rootfs
  gets exactly the shared libraries its dynamically linked programs need.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path

_DT_NEEDED = 1
_SHT_DYNAMIC = 6


class ElfError(ValueError):
    pass


@dataclass(frozen=True)
class _Section:
    name: str
    type: int
    offset: int
    size: int
    link: int


def _sections(data: bytes) -> list[_Section]:
    if data[:4] != b"\x7fELF":
        raise ElfError("not an ELF file")
    if data[4] != 2 or data[5] != 1:
        raise ElfError("only little-endian ELF64 is supported")
    (e_shoff,) = struct.unpack_from("<Q", data, 0x28)
    e_shentsize, e_shnum, e_shstrndx = struct.unpack_from("<HHH", data, 0x3A)
    raw = []
    for i in range(e_shnum):
        off = e_shoff + i * e_shentsize
        sh_name, sh_type, _flags, _addr, sh_offset, sh_size, sh_link = struct.unpack_from(
            "<IIQQQQI", data, off
        )
        raw.append((sh_name, sh_type, sh_offset, sh_size, sh_link))
    if not raw:
        return []
    str_off, str_size = raw[e_shstrndx][2], raw[e_shstrndx][3]
    strtab = data[str_off : str_off + str_size]
    out = []
    for sh_name, sh_type, sh_offset, sh_size, sh_link in raw:
        end = strtab.find(b"\0", sh_name)
        out.append(_Section(strtab[sh_name:end].decode(), sh_type, sh_offset, sh_size, sh_link))
    return out


def modinfo(path: Path) -> dict[str, str]:
    """Return the ``key=value`` pairs of a ``.ko`` file's ``.modinfo`` section.

    Repeated keys (``alias=``) keep their last value; callers here only need
    ``depends``, ``name`` and ``vermagic``.
    """
    data = path.read_bytes()
    for sec in _sections(data):
        if sec.name == ".modinfo":
            blob = data[sec.offset : sec.offset + sec.size]
            info: dict[str, str] = {}
            for item in blob.split(b"\0"):
                if b"=" in item:
                    key, _, value = item.decode(errors="replace").partition("=")
                    info[key] = value
            return info
    raise ElfError(f"{path}: no .modinfo section")


def module_depends(path: Path) -> list[str]:
    deps = modinfo(path).get("depends", "")
    return [d for d in deps.split(",") if d]


def needed_libraries(path: Path) -> list[str]:
    """Return the ``DT_NEEDED`` sonames of a dynamically linked ELF file (empty if static)."""
    data = path.read_bytes()
    secs = _sections(data)
    out: list[str] = []
    for sec in secs:
        if sec.type != _SHT_DYNAMIC:
            continue
        strsec = secs[sec.link]
        strtab = data[strsec.offset : strsec.offset + strsec.size]
        for off in range(sec.offset, sec.offset + sec.size, 16):
            tag, val = struct.unpack_from("<qQ", data, off)
            if tag == 0:
                break
            if tag == _DT_NEEDED:
                end = strtab.find(b"\0", val)
                out.append(strtab[val:end].decode())
    return out


def interpreter(path: Path) -> str | None:
    """Return the ``PT_INTERP`` program interpreter path, or None for static binaries."""
    data = path.read_bytes()
    if data[:4] != b"\x7fELF":
        raise ElfError("not an ELF file")
    (e_phoff,) = struct.unpack_from("<Q", data, 0x20)
    e_phentsize, e_phnum = struct.unpack_from("<HH", data, 0x36)
    for i in range(e_phnum):
        off = e_phoff + i * e_phentsize
        p_type, _flags, p_offset, _vaddr, _paddr, p_filesz = struct.unpack_from(
            "<IIQQQQ", data, off
        )
        if p_type == 3:  # PT_INTERP
            return data[p_offset : p_offset + p_filesz].rstrip(b"\0").decode()
    return None
