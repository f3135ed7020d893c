"""Fixtures for the guest image tests: the (cached) image, a VM factory, an ssh key.

All network traffic of these tests stays on 127.0.0.1: the guest's user-mode network
is ``restrict=on`` and only reaches the host through explicit forwards to loopback.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from guestimage_helpers import Guest, require_tools

from eucalypt.nc.guestimage import GuestImage, build_test_image, default_cache_dir
from eucalypt.nc.guestimage.qemu import create_overlay, qemu_command


@pytest.fixture(scope="session")
def image_cache_dir() -> Path:
    """The shared image cache ($EUCALYPT_CACHE_DIR or ~/.cache/eucalypt/images)."""
    path = default_cache_dir()
    path.mkdir(parents=True, exist_ok=True)
    return path


@pytest.fixture(scope="session")
def guest_image(image_cache_dir: Path) -> GuestImage:
    require_tools("apt-get", "apt-cache", "dpkg-deb", "mke2fs")
    started = time.monotonic()
    img = build_test_image(image_cache_dir, progress=lambda m: print(f"[guestimage] {m}"))
    print(f"[guestimage] image ready in {time.monotonic() - started:.2f} s: {img.version}")
    return img


@pytest.fixture
def boot_guest(tmp_path: Path, guest_image: GuestImage) -> Iterator:
    """Factory: ``boot_guest(netdev_args=..., disk=True, accel=...) -> Guest``.

    Every guest is killed (by PID) at teardown.
    """
    require_tools("qemu-system-x86_64", "qemu-img")
    guests: list[Guest] = []

    def start(
        *, accel: str, netdev_args: list[str], disk: bool = True, ssh_port: int | None = None,
        ssh_key: Path | None = None, name: str = "guest", extra_cmdline: str = "",
    ) -> Guest:  # fmt: skip
        overlay = None
        if disk:
            overlay = create_overlay(guest_image.rootfs, tmp_path / f"{name}.qcow2")
        serial = tmp_path / f"{name}-serial.log"
        cmd = qemu_command(
            guest_image,
            accel=accel,
            memory_mib=256,
            disk=overlay,
            netdev_args=netdev_args,
            serial_log=serial,
            qmp_socket=tmp_path / f"{name}.qmp",
            no_reboot=True,
            extra_cmdline=extra_cmdline,
        )
        qemu_log = tmp_path / f"{name}-qemu.log"
        started = time.monotonic()
        with qemu_log.open("wb") as log:
            proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=log)
        guest = Guest(proc, serial, started, qemu_log, ssh_port, ssh_key, cmd=cmd)
        guests.append(guest)
        return guest

    try:
        yield start
    finally:
        for g in guests:
            g.stop()


@pytest.fixture
def ssh_keypair(tmp_path: Path) -> tuple[Path, str]:
    require_tools("ssh", "ssh-keygen")
    key = tmp_path / "id_ed25519"
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "eucalypt-test", "-f", str(key)],
        check=True,
    )
    return key, (tmp_path / "id_ed25519.pub").read_text()
