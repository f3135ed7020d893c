"""Boot the test guest image under QEMU and log in with ssh (slow: real VMs).

Networking is QEMU user mode with ``restrict=on``: the guest reaches only the two
forwards set up here, both on 127.0.0.1 (ssh in, metadata out).
"""

from __future__ import annotations

from pathlib import Path

import pytest
from guestimage_helpers import MetadataServer, free_port

from eucalypt.nc.guestimage import detect_accel, user_netdev

pytestmark = pytest.mark.slow

USER_DATA_SCRIPT = b"""#!/bin/sh
echo hello-from-userdata > /tmp/marker
echo "user-data ran as $(id -u)"
"""


@pytest.fixture(scope="module")
def accel(image_cache_dir: Path, guest_image) -> str:  # type: ignore[no-untyped-def]
    verdict = detect_accel(image_cache_dir, guest_image.kernel)
    print(f"[guestimage] accelerator: {verdict}")
    return verdict


def test_boot_imdsv2_ssh_and_user_data(boot_guest, ssh_keypair, accel: str) -> None:  # type: ignore[no-untyped-def]
    key, pubkey = ssh_keypair
    ssh_port = free_port()
    with MetadataServer("i-0badc0de", pubkey, USER_DATA_SCRIPT) as md:
        netdev = user_netdev(
            hostfwd=[("127.0.0.1", ssh_port, 22)], metadata_port=md.port, restrict=True
        )
        guest = boot_guest(
            accel=accel, netdev_args=[netdev], ssh_port=ssh_port, ssh_key=key, name="v2"
        )
        took = guest.wait_ready(timeout=180)
        print(f"\n[guestimage] boot to READY under {accel}: {took:.2f} s")
        print(f"[guestimage] {guest.ready_line}")
        assert guest.ready_line is not None
        assert guest.ready_line.startswith("EUCALYPT-GUEST-READY instance-id=i-0badc0de ip=")
        assert guest.ready_line.split("ip=")[1].count(".") == 3
        assert guest.console().count("EUCALYPT-GUEST-READY") == 1

        res = guest.ssh("cat /tmp/marker")
        assert res.returncode == 0, res.stderr
        assert res.stdout.strip() == "hello-from-userdata"

        res = guest.ssh("hostname; stat -c %a /root/.ssh/authorized_keys; cat /run/user-data")
        assert res.returncode == 0, res.stderr
        hostname, mode, *script = res.stdout.splitlines()
        assert hostname == "i-0badc0de"
        assert mode == "600"
        assert "\n".join(script).encode() + b"\n" == USER_DATA_SCRIPT

        # IMDSv2: a token was requested and every GET carried it.
        assert ("PUT", "/latest/api/token", False) in md.requests
        gets = [r for r in md.requests if r[0] == "GET"]
        assert gets and all(sent for _, _, sent in gets)
    assert "user-data: user-data ran as 0" in guest.console()


def test_boot_imdsv1_fallback_plain_user_data(boot_guest, ssh_keypair, accel: str) -> None:  # type: ignore[no-untyped-def]
    key, pubkey = ssh_keypair
    ssh_port = free_port()
    with MetadataServer("i-000v1", pubkey, b"just some data\n", v1_only=True) as md:
        netdev = user_netdev(hostfwd=[("127.0.0.1", ssh_port, 22)], metadata_port=md.port)
        guest = boot_guest(
            accel=accel, netdev_args=[netdev], ssh_port=ssh_port, ssh_key=key, name="v1"
        )
        took = guest.wait_ready(timeout=180)
        print(f"\n[guestimage] boot to READY (IMDSv1) under {accel}: {took:.2f} s")
        assert guest.ready_line is not None
        assert "instance-id=i-000v1" in guest.ready_line
        res = guest.ssh("cat /run/user-data; ls /tmp")
        assert res.returncode == 0, res.stderr
        assert res.stdout.splitlines()[0] == "just some data"
        assert "marker" not in res.stdout
        gets = [r for r in md.requests if r[0] == "GET"]
        assert gets and not any(sent for _, _, sent in gets)
    assert "metadata: IMDSv1" in guest.console()


def test_boot_without_disk_reports_error(boot_guest, accel: str) -> None:  # type: ignore[no-untyped-def]
    guest = boot_guest(
        accel=accel, netdev_args=[], disk=False, name="nodisk", extra_cmdline="eucalypt.rootwait=2"
    )
    took = guest.wait_for(b"EUCALYPT-GUEST-ERROR: no root disk", timeout=120)
    assert took is not None, guest.console()
    print(f"\n[guestimage] no-disk error after {took:.2f} s")
    # The initramfs powers the VM off after the error.
    guest.proc.wait(timeout=60)
