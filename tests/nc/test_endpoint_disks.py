"""Tap endpoints (commands recorded at the OS boundary) and qcow2 overlays (real qemu-img)."""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
from pathlib import Path

import pytest

from eucalypt.nc.api import NetworkSpec
from eucalypt.nc.disks import GIB, create_overlay
from eucalypt.nc.endpoint import Endpoints, tap_name
from eucalypt.nc.errors import DiskError, NetworkSetupError
from eucalypt.net.runner import CommandRunner
from tests.nc.conftest import FakeIp


def test_tap_names_fit_linux_and_are_stable() -> None:
    assert tap_name("i-0123abcd") == "tap0123abcd"
    long = tap_name("i-0123456789abcdef0")
    assert len(long) <= 15 and long.startswith("tap")
    assert long == tap_name("i-0123456789abcdef0")
    assert tap_name("i-0123456789abcdef1") != long
    assert len(tap_name("Weird_Instance-Name")) <= 15


def test_tap_on_bridge_commands_and_delete() -> None:
    ip = FakeIp()
    ep = Endpoints(ip)
    net = NetworkSpec(mode="bridge", mac="d0:0d:00:00:00:01", bridge="br0")

    async def go() -> str | None:
        tap = await ep.create("i-0000abcd", net)
        assert tap is not None
        await ep.delete(tap)
        await ep.delete(tap)  # already gone: fine
        return tap

    tap = asyncio.run(go())
    assert tap == "tap0000abcd"
    assert ip.commands == [
        ["ip", "link", "del", "dev", tap],  # a leftover of an earlier attempt goes first
        ["ip", "tuntap", "add", "dev", tap, "mode", "tap"],
        ["ip", "link", "set", tap, "master", "br0", "up"],
        ["ip", "link", "del", "dev", tap],
        ["ip", "link", "del", "dev", tap],
    ]
    assert ip.taps == set()


def test_missing_bridge_fails_and_removes_the_tap() -> None:
    ip = FakeIp()
    net = NetworkSpec(mode="bridge", mac="d0:0d:00:00:00:01", bridge="nosuchbr")
    with pytest.raises(NetworkSetupError, match="nosuchbr"):
        asyncio.run(Endpoints(ip).create("i-0000abcd", net))
    assert ip.taps == set()
    assert ip.commands[-1] == ["ip", "link", "del", "dev", "tap0000abcd"]


def test_user_and_none_modes_make_no_tap() -> None:
    ip = FakeIp()
    for mode in ("user", "none"):
        net = NetworkSpec(mode=mode, mac="d0:0d:00:00:00:01")  # type: ignore[arg-type]
        assert asyncio.run(Endpoints(ip).create("i-1", net)) is None
    assert ip.commands == []


needs_qemu_img = pytest.mark.skipif(shutil.which("qemu-img") is None, reason="no qemu-img")


def _info(path: Path) -> dict[str, object]:
    out = subprocess.run(
        ["qemu-img", "info", "--output=json", "-U", str(path)],
        capture_output=True,
        check=True,
        text=True,
    ).stdout
    info: dict[str, object] = json.loads(out)
    return info


@needs_qemu_img
def test_overlay_on_raw_base_grows_to_the_vm_type_disk(tmp_path: Path) -> None:
    base = tmp_path / "root.base"
    with base.open("wb") as fh:
        fh.truncate(64 * 2**20)
    overlay = tmp_path / "root.qcow2"
    size = asyncio.run(create_overlay(CommandRunner(), base, "raw", overlay, 2))
    assert size == 2 * GIB
    info = _info(overlay)
    assert info["format"] == "qcow2"
    assert info["virtual-size"] == 2 * GIB
    assert info["backing-filename"] == str(base)
    assert info["backing-filename-format"] == "raw"
    assert base.stat().st_size == 64 * 2**20  # the base is untouched


@needs_qemu_img
def test_overlay_keeps_a_bigger_base_size_and_cleans_up_on_failure(tmp_path: Path) -> None:
    base = tmp_path / "base.qcow2"
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(base), "3G"], check=True)
    overlay = tmp_path / "root.qcow2"
    assert asyncio.run(create_overlay(CommandRunner(), base, "qcow2", overlay, 1)) == 3 * GIB
    assert _info(overlay)["virtual-size"] == 3 * GIB
    # a raw file is not a qcow2 base: refused, and no overlay is left behind
    junk = tmp_path / "junk"
    junk.write_bytes(b"not an image")
    bad = tmp_path / "bad.qcow2"
    with pytest.raises(DiskError):
        asyncio.run(create_overlay(CommandRunner(), junk, "qcow2", bad, 1))
    assert not bad.exists()
