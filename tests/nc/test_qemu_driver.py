"""The qemu driver without booting: its command line, and pid files it must not trust."""

from __future__ import annotations

import asyncio
import os
import shutil
from pathlib import Path

import pytest

from eucalypt.nc.hypervisors.base import DomainSpec, NicSpec
from eucalypt.nc.hypervisors.qemu import QemuDriver

needs_qemu = pytest.mark.skipif(shutil.which("qemu-system-x86_64") is None, reason="no qemu")


def spec(tmp_path: Path, nic: NicSpec, *, kernel: bool = True) -> DomainSpec:
    return DomainSpec(
        instance_id="i-0000cafe",
        workdir=tmp_path,
        cores=2,
        memory_mib=384,
        disk=tmp_path / "root.qcow2",
        nic=nic,
        kernel=tmp_path / "kernel" if kernel else None,
        ramdisk=tmp_path / "ramdisk" if kernel else None,
        kernel_args="console=ttyS0 panic=-1",
        console_log=tmp_path / "console.log",
    )


def after(argv: list[str], flag: str) -> list[str]:
    return [argv[i + 1] for i, a in enumerate(argv) if a == flag]


@needs_qemu
def test_command_for_a_tap_nic_and_a_paravirtual_image(tmp_path: Path) -> None:
    driver = QemuDriver(accel="tcg", probe_dir=tmp_path)
    nic = NicSpec(mac="d0:0d:00:00:ca:fe", kind="tap", tap="tap0000cafe")
    argv = driver.command(spec(tmp_path, nic), "tcg")
    assert after(argv, "-accel") == ["tcg"] and after(argv, "-cpu") == ["max"]
    assert after(argv, "-smp") == ["2"] and after(argv, "-m") == ["384"]
    assert after(argv, "-kernel") == [str(tmp_path / "kernel")]
    assert after(argv, "-initrd") == [str(tmp_path / "ramdisk")]
    assert after(argv, "-append") == ["console=ttyS0 panic=-1"]
    assert after(argv, "-netdev") == ["tap,id=n0,ifname=tap0000cafe,script=no,downscript=no"]
    assert after(argv, "-device")[-1] == "virtio-net-pci,netdev=n0,mac=d0:0d:00:00:ca:fe,romfile="
    assert after(argv, "-qmp") == ["unix:qmp.sock,server=on,wait=off"]
    assert after(argv, "-pidfile") == [str(tmp_path / "qemu.pid")]
    assert after(argv, "-chardev") == [f"file,id=serial0,path={tmp_path / 'console.log'}"]
    assert "-daemonize" in argv and "-nodefaults" in argv
    assert after(argv, "-name") == ["guest=i-0000cafe,process=qemu-i-0000cafe"]


@needs_qemu
def test_command_for_user_networking_and_a_whole_disk_image(tmp_path: Path) -> None:
    driver = QemuDriver(accel="kvm", probe_dir=tmp_path)
    nic = NicSpec(
        mac="d0:0d:00:00:ca:fe", kind="user", metadata_forward="127.0.0.1:8080",
        host_forwards={2222: 22},
    )  # fmt: skip
    argv = driver.command(spec(tmp_path, nic, kernel=False), "kvm")
    assert "-kernel" not in argv and "-initrd" not in argv
    assert after(argv, "-cpu") == ["qemu64"]  # `-cpu host` fails under KVM on some hosts
    (netdev,) = after(argv, "-netdev")
    assert netdev.startswith("user,id=n0,net=169.254.169.0/24,restrict=on,")
    assert "hostfwd=tcp:127.0.0.1:2222-:22" in netdev
    assert "guestfwd=tcp:169.254.169.254:80-cmd:" in netdev and "127.0.0.1 8080" in netdev
    none = driver.command(spec(tmp_path, NicSpec(mac="", kind="none")), "tcg")
    assert "-netdev" not in none


def test_configured_accel_is_used_without_probing(tmp_path: Path) -> None:
    driver = QemuDriver(accel="tcg", probe_dir=tmp_path)
    nic = NicSpec(mac="d0:0d:00:00:ca:fe", kind="none")
    assert asyncio.run(driver.accel_for(spec(tmp_path, nic))) == "tcg"
    with pytest.raises(ValueError):
        QemuDriver(accel="xen", probe_dir=tmp_path)


def test_a_reused_pid_is_never_taken_for_the_domain(tmp_path: Path) -> None:
    """A pid file naming some other process (pid reuse after a reboot) is not QEMU's."""
    driver = QemuDriver(accel="tcg", probe_dir=tmp_path)
    workdir = tmp_path / "instances" / "i-0000cafe"
    workdir.mkdir(parents=True)
    (workdir / "qemu.pid").write_text(str(os.getpid()))
    info = asyncio.run(driver.info("i-0000cafe", workdir))
    assert not info.running
    assert info.reason == f"qemu pid {os.getpid()} died without exiting"
    listed = asyncio.run(driver.list(tmp_path / "instances"))
    assert [(d.instance_id, d.running) for d in listed] == [("i-0000cafe", False)]
    asyncio.run(driver.destroy("i-0000cafe", workdir))  # must not kill this test process
    assert not (workdir / "qemu.pid").exists()
    info = asyncio.run(driver.info("i-0000cafe", workdir))
    assert (info.running, info.reason) == (False, "qemu exited (no pid file)")
    assert asyncio.run(driver.list(tmp_path / "instances")) == []
