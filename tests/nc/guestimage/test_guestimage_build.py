"""Building the test guest image from Debian packages, and its cache.

Needs apt (package lists) the first time; later runs reuse the shared cache
($EUCALYPT_CACHE_DIR or ~/.cache/eucalypt/images).
"""

from __future__ import annotations

import gzip
import json
import shutil
import subprocess
from pathlib import Path

import pytest
from guestimage_helpers import parse_newc, require_tools

from eucalypt.nc.guestimage import GuestImage, build, build_test_image, debs


def _forbid_apt(monkeypatch: pytest.MonkeyPatch, *names: str) -> None:
    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("apt/dpkg used on a cache hit")

    for name in names:
        monkeypatch.setattr(debs, name, refuse)


def test_image_files(guest_image: GuestImage) -> None:
    for path in (guest_image.kernel, guest_image.ramdisk, guest_image.rootfs):
        assert path.is_file() and path.stat().st_size > 0
    assert guest_image.version.startswith("debian-") and "cloud-amd64" in guest_image.version
    assert "console=ttyS0" in guest_image.cmdline

    # Kernel: a bzImage.
    assert guest_image.kernel.read_bytes()[0x202:0x206] == b"HdrS"

    # Rootfs: raw ext4, 64-128 MiB, sparse.
    st = guest_image.rootfs.stat()
    assert 64 << 20 <= st.st_size <= 128 << 20
    assert st.st_blocks * 512 < st.st_size, "rootfs.ext4 should be a sparse file"
    with guest_image.rootfs.open("rb") as f:
        f.seek(1024 + 56)
        assert f.read(2) == b"\x53\xef"


def test_initramfs_contents(guest_image: GuestImage) -> None:
    entries = parse_newc(gzip.decompress(guest_image.ramdisk.read_bytes()))
    assert entries["init"].mode & 0o111
    assert entries["init"].data.startswith(b"#!/bin/busybox sh")
    assert entries["bin/busybox"].size > 500_000
    assert entries["dev/console"].is_chardev and entries["dev/console"].rdev == (5, 1)
    assert entries["bin/sh"].data == b"/bin/busybox"
    assert all(e.uid == 0 and e.gid == 0 for e in entries.values())
    order = entries["lib/modules/load.order"].data.decode().split()
    for mod in order:
        assert f"lib/modules/{mod}.ko" in entries
    # Dependencies first: every module the facts list, in a valid order.
    expected = [
        "virtio",
        "virtio_ring",
        "virtio_pci_modern_dev",
        "virtio_pci_legacy_dev",
        "virtio_pci",
        "failover",
        "net_failover",
        "virtio_net",
        "virtio_blk",
    ]
    assert sorted(order) == sorted(expected)
    for before, after in [
        ("virtio", "virtio_pci"),
        ("virtio_pci_modern_dev", "virtio_pci"),
        ("failover", "net_failover"),
        ("net_failover", "virtio_net"),
        ("virtio_ring", "virtio_blk"),
    ]:
        assert order.index(before) < order.index(after)


def _debugfs(image: Path, request: str) -> str:
    debugfs = shutil.which("debugfs") or "/sbin/debugfs"
    res = subprocess.run(
        [debugfs, "-R", request, str(image)], capture_output=True, text=True, check=True
    )
    return res.stdout


def test_rootfs_contents(guest_image: GuestImage) -> None:
    require_tools("debugfs")
    img = guest_image.rootfs
    assert "root:x:0:0:root:/root:/bin/sh" in _debugfs(img, "cat /etc/passwd")
    assert "/bin/sh" in _debugfs(img, "cat /etc/shells")
    init = _debugfs(img, "cat /sbin/init")
    assert init.startswith("#!/bin/sh") and "EUCALYPT-GUEST-READY" in init
    for path in (
        "/bin/busybox",
        "/usr/sbin/dropbear",
        "/usr/bin/dropbearkey",
        "/etc/udhcpc.script",
        "/lib/x86_64-linux-gnu/libc.so.6",
        "/lib/x86_64-linux-gnu/libtomcrypt.so.1",
        "/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2",
        "/lib64/ld-linux-x86-64.so.2",
    ):
        assert "File not found" not in _debugfs(img, f"stat {path}"), path
    stat_root = _debugfs(img, "stat /root")
    assert "Mode:  0700" in stat_root and "User:     0" in stat_root
    assert "Mode:  0600" in _debugfs(img, "stat /etc/shadow")


def test_second_build_is_cache_hit(
    guest_image: GuestImage, image_cache_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    files = (guest_image.kernel, guest_image.ramdisk, guest_image.rootfs)
    mtimes = [p.stat().st_mtime_ns for p in files]
    count = build.build_count()
    _forbid_apt(monkeypatch, "download", "extract", "candidates", "resolve_metapackage")
    messages: list[str] = []
    again = build_test_image(image_cache_dir, messages.append)
    assert again == guest_image
    assert build.build_count() == count
    assert [p.stat().st_mtime_ns for p in files] == mtimes
    assert any("cached" in m for m in messages)


def test_cache_hit_after_apt_lists_change(
    guest_image: GuestImage, image_cache_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """New apt lists with the same package versions: resolve again, but no rebuild."""
    monkeypatch.setattr(debs, "apt_lists_fingerprint", lambda *a: "lists-changed")
    _forbid_apt(monkeypatch, "download", "extract")
    count = build.build_count()
    again = build_test_image(image_cache_dir)
    assert again == guest_image
    assert build.build_count() == count
    # The resolution cache now records the new fingerprint.
    resolved = image_cache_dir / f"resolved-{build.recipe_hash()[:16]}.json"
    assert json.loads(resolved.read_text())["lists"] == "lists-changed"
    monkeypatch.undo()
    build_test_image(image_cache_dir)  # restore the real fingerprint for other tests


def test_rebuild_when_recipe_changes(
    guest_image: GuestImage, image_cache_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A fresh cache builds once (reusing the .debs), then hits; a new recipe rebuilds."""
    cache = tmp_path / "cache"
    cache.mkdir()
    (cache / "debs").symlink_to(image_cache_dir / "debs")
    real_run = debs._run

    def run_without_downloads(cmd: list[str], **kwargs: object) -> str:
        assert cmd[:2] != ["apt-get", "download"], "the .debs are already downloaded"
        return real_run(cmd, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(debs, "_run", run_without_downloads)
    count = build.build_count()

    first = build_test_image(cache)
    assert build.build_count() == count + 1
    assert first.version == guest_image.version  # same inputs, same key
    assert first.rootfs.parent.parent == cache

    assert build_test_image(cache) == first
    assert build.build_count() == count + 1

    monkeypatch.setattr(build, "FORMAT_VERSION", build.FORMAT_VERSION + 1000)
    changed = build_test_image(cache)
    assert build.build_count() == count + 2
    assert changed.rootfs.parent != first.rootfs.parent
    assert first.rootfs.is_file()  # the old build is left alone


def test_cli_build_prints_paths(guest_image: GuestImage, image_cache_dir: Path) -> None:
    from click.testing import CliRunner

    from eucalypt.nc.guestimage.__main__ import cli

    runner = CliRunner()
    res = runner.invoke(cli, ["build", "--cache-dir", str(image_cache_dir)])
    assert res.exit_code == 0, res.output
    assert f"kernel:  {guest_image.kernel}" in res.stdout
    assert f"ramdisk: {guest_image.ramdisk}" in res.stdout
    assert f"rootfs:  {guest_image.rootfs}" in res.stdout

    help_res = runner.invoke(cli, ["build", "--help"])
    assert help_res.exit_code == 0 and "--cache-dir" in help_res.output
