"""Fast unit tests of the guest image helpers (no network, no VM)."""

from __future__ import annotations

import gzip
import json
import shutil
import socket
import struct
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from guestimage_helpers import parse_newc

from eucalypt.nc.guestimage import GuestImage, qemu, qemu_command, user_netdev
from eucalypt.nc.guestimage.build import BuildError, module_load_order
from eucalypt.nc.guestimage.cpio import CpioBuilder
from eucalypt.nc.guestimage.elf import interpreter, modinfo, module_depends, needed_libraries

PKG = Path(qemu.__file__).parent


# --------------------------------------------------------------------------- cpio


def test_cpio_newc_roundtrip(tmp_path: Path) -> None:
    cb = CpioBuilder()
    cb.file("init", b"#!/bin/sh\necho hi\n", 0o755)
    cb.file("lib/modules/x.ko", b"\x7fELF" + b"\0" * 13)  # parent dirs are implied
    cb.symlink("bin/sh", "/bin/busybox")
    cb.chardev("dev/console", 5, 1)
    out = tmp_path / "initrd.gz"
    cb.write_gzip(out)
    raw = gzip.decompress(out.read_bytes())
    assert len(raw) % 512 == 0
    entries = parse_newc(raw)
    assert list(entries) == [
        "init",
        "lib",
        "lib/modules",
        "lib/modules/x.ko",
        "bin",
        "bin/sh",
        "dev",
        "dev/console",
    ]
    assert entries["init"].data == b"#!/bin/sh\necho hi\n"
    assert entries["init"].mode == 0o100755
    assert entries["lib"].mode == 0o040755
    assert entries["bin/sh"].mode & 0o170000 == 0o120000
    assert entries["bin/sh"].data == b"/bin/busybox"
    assert entries["dev/console"].is_chardev and entries["dev/console"].rdev == (5, 1)
    # Reproducible: same input, same bytes.
    cb.write_gzip(tmp_path / "again.gz")
    assert (tmp_path / "again.gz").read_bytes() == out.read_bytes()


@pytest.mark.skipif(shutil.which("cpio") is None, reason="GNU cpio not installed")
def test_cpio_readable_by_gnu_cpio(tmp_path: Path) -> None:
    cb = CpioBuilder()
    cb.file("a/b/c.txt", b"hello\n")
    cb.symlink("a/link", "b/c.txt")
    res = subprocess.run(
        ["cpio", "-it", "--quiet"], input=cb.build(), capture_output=True, check=True
    )
    assert res.stdout.decode().split() == ["a", "a/b", "a/b/c.txt", "a/link"]


# --------------------------------------------------------------------------- elf


def _fake_ko(path: Path, name: str, depends: list[str]) -> Path:
    """A minimal ELF64 relocatable object with only a .modinfo section."""
    modinfo_data = (
        f"license=GPL\0depends={','.join(depends)}\0name={name}\0vermagic=6.1.0-test SMP\0"
    ).encode()
    shstrtab = b"\0.modinfo\0.shstrtab\0"
    off_modinfo = 64
    off_shstr = off_modinfo + len(modinfo_data)
    shoff = (off_shstr + len(shstrtab) + 7) & ~7
    ident = b"\x7fELF" + bytes([2, 1, 1, 0]) + b"\0" * 8
    header = ident + struct.pack("<HHIQQQIHHHHHH", 1, 62, 1, 0, 0, shoff, 0, 64, 0, 0, 64, 3, 2)
    body = header + modinfo_data + shstrtab
    body += b"\0" * (shoff - len(body))

    def sh(name_off: int, typ: int, off: int, size: int) -> bytes:
        return struct.pack("<IIQQQQIIQQ", name_off, typ, 0, 0, off, size, 0, 0, 1, 0)

    body += sh(0, 0, 0, 0)
    body += sh(1, 1, off_modinfo, len(modinfo_data))
    body += sh(10, 3, off_shstr, len(shstrtab))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(body)
    return path


def test_modinfo_of_fake_module(tmp_path: Path) -> None:
    ko = _fake_ko(tmp_path / "m.ko", "m", ["a", "b"])
    info = modinfo(ko)
    assert info["name"] == "m" and info["vermagic"] == "6.1.0-test SMP"
    assert module_depends(ko) == ["a", "b"]
    assert module_depends(_fake_ko(tmp_path / "n.ko", "n", [])) == []


def test_module_load_order(tmp_path: Path) -> None:
    moddir = tmp_path / "lib/modules/6.1.0-test"
    k = moddir / "kernel"
    _fake_ko(k / "drivers/virtio/virtio.ko", "virtio", [])
    _fake_ko(k / "drivers/virtio/virtio_ring.ko", "virtio_ring", [])
    _fake_ko(k / "drivers/virtio/virtio_pci.ko", "virtio_pci", ["virtio_ring", "virtio"])
    _fake_ko(k / "net/core/failover.ko", "failover", [])
    _fake_ko(k / "drivers/net/net_failover.ko", "net_failover", ["failover"])
    _fake_ko(k / "drivers/net/virtio_net.ko", "virtio_net", ["virtio", "net_failover", "crc16"])
    _fake_ko(k / "arch/x86/crypto/crc32c-intel.ko", "crc32c_intel", [])
    (moddir / "modules.builtin").write_text("kernel/lib/crc16.ko\n")
    order = [p.stem for p in module_load_order(moddir, ["virtio_pci", "virtio_net"])]
    assert order == [
        "virtio_ring",
        "virtio",
        "virtio_pci",
        "failover",
        "net_failover",
        "virtio_net",
    ]
    # dashes and underscores are the same module name
    assert [p.name for p in module_load_order(moddir, ["crc32c_intel"])] == ["crc32c-intel.ko"]
    with pytest.raises(BuildError, match="not found"):
        module_load_order(moddir, ["nonexistent"])
    _fake_ko(k / "x.ko", "x", ["y"])
    _fake_ko(k / "y.ko", "y", ["x"])
    with pytest.raises(BuildError, match="cycle"):
        module_load_order(moddir, ["x"])


def test_needed_libraries_of_host_binary() -> None:
    env = Path("/usr/bin/env")
    if not env.exists():
        pytest.skip("no /usr/bin/env")
    assert "libc.so.6" in needed_libraries(env)
    assert interpreter(env) in ("/lib64/ld-linux-x86-64.so.2", "/lib/ld-linux-aarch64.so.1")


# --------------------------------------------------------------------------- qemu


@pytest.fixture
def image(tmp_path: Path) -> GuestImage:
    for name in ("vmlinuz", "initrd.gz"):
        (tmp_path / name).write_bytes(b"x")
    raw = tmp_path / "rootfs.ext4"
    raw.write_bytes(b"\0" * 4096)
    return GuestImage(tmp_path / "vmlinuz", tmp_path / "initrd.gz", raw, "test")


@pytest.fixture
def fake_qemu(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(qemu, "find_qemu", lambda binary=None: "/usr/bin/qemu-system-x86_64")


def _opt(cmd: list[str], flag: str) -> list[str]:
    return [cmd[i + 1] for i, a in enumerate(cmd) if a == flag]


def test_qemu_command_tcg(image: GuestImage, tmp_path: Path, fake_qemu: None) -> None:
    overlay = tmp_path / "disk,1.qcow2"
    overlay.write_bytes(b"QFI\xfb" + b"\0" * 100)
    cmd = qemu_command(
        image,
        accel="tcg",
        memory_mib=192,
        disk=overlay,
        netdev_args=["user,id=n0", "tap,id=n1,ifname=vnet0,script=no,downscript=no"],
        serial_log=tmp_path / "serial.log",
        qmp_socket=tmp_path / "qmp.sock",
        macs=["d0:0d:00:00:00:01", "d0:0d:00:00:00:02"],
        extra_cmdline="eucalypt.debug=1",
    )
    assert cmd[0] == "/usr/bin/qemu-system-x86_64"
    assert _opt(cmd, "-accel") == ["tcg"]
    assert _opt(cmd, "-cpu") == ["max"]
    assert _opt(cmd, "-m") == ["192"]
    assert _opt(cmd, "-kernel") == [str(image.kernel)]
    assert _opt(cmd, "-initrd") == [str(image.ramdisk)]
    assert _opt(cmd, "-append") == [image.cmdline + " eucalypt.debug=1"]
    assert _opt(cmd, "-drive") == [
        f"file={tmp_path}/disk,,1.qcow2,format=qcow2,if=none,id=root,cache=writeback"
    ]
    assert "virtio-blk-pci,drive=root" in _opt(cmd, "-device")
    assert _opt(cmd, "-netdev") == ["user,id=n0", "tap,id=n1,ifname=vnet0,script=no,downscript=no"]
    assert "virtio-net-pci,netdev=n0,romfile=,mac=d0:0d:00:00:00:01" in _opt(cmd, "-device")
    assert "virtio-net-pci,netdev=n1,romfile=,mac=d0:0d:00:00:00:02" in _opt(cmd, "-device")
    assert _opt(cmd, "-chardev") == [f"file,id=serial0,path={tmp_path}/serial.log"]
    assert _opt(cmd, "-serial") == ["chardev:serial0"]
    assert _opt(cmd, "-qmp") == [f"unix:{tmp_path}/qmp.sock,server=on,wait=off"]
    assert "-nodefaults" in cmd and "-no-reboot" not in cmd
    assert "-enable-kvm" not in cmd


def test_qemu_command_kvm_raw_disk(image: GuestImage, tmp_path: Path, fake_qemu: None) -> None:
    cmd = qemu_command(
        image, accel="kvm", disk=image.rootfs, serial_log=tmp_path / "s", no_reboot=True
    )
    assert _opt(cmd, "-accel") == ["kvm"]
    assert _opt(cmd, "-cpu") == ["qemu64"]  # not "host": it fails under KVM on some hosts
    assert "format=raw" in _opt(cmd, "-drive")[0]
    assert "-netdev" not in cmd and "-qmp" not in cmd
    assert "-no-reboot" in cmd


def test_qemu_command_rejects_bad_args(image: GuestImage, tmp_path: Path, fake_qemu: None) -> None:
    kw = {"disk": None, "serial_log": tmp_path / "s"}
    with pytest.raises(ValueError, match="accel"):
        qemu_command(image, accel="hvf", **kw)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="no id="):
        qemu_command(image, accel="tcg", netdev_args=["user"], **kw)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="not the flag"):
        qemu_command(image, accel="tcg", netdev_args=["-netdev"], **kw)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="macs"):
        qemu_command(image, accel="tcg", netdev_args=["user,id=a"], macs=[], **kw)  # type: ignore[arg-type]


def test_user_netdev() -> None:
    plain = user_netdev(hostfwd=[("127.0.0.1", 2222, 22)])
    assert plain == "user,id=n0,restrict=on,hostfwd=tcp:127.0.0.1:2222-:22"
    md = user_netdev("net1", metadata_port=8775, restrict=False)
    assert md.startswith("user,id=net1,net=169.254.169.0/24,guestfwd=tcp:169.254.169.254:80-cmd:")
    assert "restrict" not in md
    assert md.endswith(" 127.0.0.1 8775")
    assert str(PKG / "relay.py") in md.replace(",,", ",")


def test_relay_half_close(tmp_path: Path) -> None:
    """relay.py forwards stdin to the server, half-closes, and copies the reply."""
    srv = socket.create_server(("127.0.0.1", 0))
    port = srv.getsockname()[1]

    def serve() -> None:
        conn, _ = srv.accept()
        with conn:
            data = b""
            while chunk := conn.recv(4096):
                data += chunk
            conn.sendall(b"got:" + data)

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    try:
        res = subprocess.run(
            [sys.executable, "-I", str(PKG / "relay.py"), "127.0.0.1", str(port)],
            input=b"PUT /x HTTP/1.0\r\n\r\n",
            capture_output=True,
            timeout=30,
        )
    finally:
        srv.close()
    assert res.returncode == 0
    assert res.stdout == b"got:PUT /x HTTP/1.0\r\n\r\n"
    assert res.stderr == b""


# --------------------------------------------------------------------------- accel


def test_detect_accel_env_override(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EUCALYPT_QEMU_ACCEL", "tcg")
    assert qemu.detect_accel(tmp_path) == "tcg"
    monkeypatch.setenv("EUCALYPT_QEMU_ACCEL", "kvm")
    assert qemu.detect_accel(tmp_path) == "kvm"
    monkeypatch.setenv("EUCALYPT_QEMU_ACCEL", "bogus")
    with pytest.raises(ValueError):
        qemu.detect_accel(tmp_path)


def test_detect_accel_probes_once_and_caches(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fake_qemu: None
) -> None:
    monkeypatch.delenv("EUCALYPT_QEMU_ACCEL", raising=False)
    monkeypatch.setattr(qemu.os, "access", lambda path, mode: True)
    monkeypatch.setattr(qemu, "qemu_version", lambda binary=None: "QEMU emulator version 0.test")
    probes: list[Path] = []

    def probe(qemu_bin: str, kernel: Path, timeout: float) -> tuple[bool, str]:
        probes.append(kernel)
        return False, "spins"

    monkeypatch.setattr(qemu, "_probe_kvm", probe)
    kernel = tmp_path / "vmlinuz"
    kernel.write_bytes(b"x")
    assert qemu.detect_accel(tmp_path, kernel) == "tcg"
    assert qemu.detect_accel(tmp_path, kernel) == "tcg"
    assert probes == [kernel]
    (cached,) = tmp_path.glob("accel-*.json")
    data = json.loads(cached.read_text())
    assert data["accel"] == "tcg" and data["qemu"] == "QEMU emulator version 0.test"

    # A different QEMU version is a different cache entry: probe again.
    monkeypatch.setattr(qemu, "qemu_version", lambda binary=None: "QEMU emulator version 1.test")
    monkeypatch.setattr(qemu, "_probe_kvm", lambda *a: (True, "ok"))
    assert qemu.detect_accel(tmp_path, kernel) == "kvm"


def test_detect_accel_without_dev_kvm(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("EUCALYPT_QEMU_ACCEL", raising=False)
    monkeypatch.setattr(qemu.os, "access", lambda path, mode: False)
    assert qemu.detect_accel(tmp_path) == "tcg"
    assert not list(tmp_path.iterdir())


def test_cli_help() -> None:
    res = subprocess.run(
        [sys.executable, "-m", "eucalypt.nc.guestimage", "build", "--help"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert res.returncode == 0, res.stderr
    assert "--cache-dir" in res.stdout and "EUCALYPT_CACHE_DIR" in res.stdout


def test_prune_keeps_current_versions_only(tmp_path: Path) -> None:
    from eucalypt.nc.guestimage.debs import DebPackage, prune

    cur = DebPackage("zlib1g", "1:1.2.13", "amd64", "")
    for name in ("zlib1g_1%3a1.2.13_amd64.deb", "zlib1g_1%3a1.2.12_amd64.deb", "other_1_amd64.deb"):
        (tmp_path / name).write_bytes(b"")
    removed = prune([cur], tmp_path)
    assert [p.name for p in removed] == ["zlib1g_1%3a1.2.12_amd64.deb"]
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "other_1_amd64.deb",
        "zlib1g_1%3a1.2.13_amd64.deb",
    ]
