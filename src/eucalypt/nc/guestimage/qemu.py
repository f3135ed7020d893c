"""QEMU helpers for booting a :class:`~eucalypt.nc.guestimage.build.GuestImage`.

Used by the tests here and by the Node Controller's QEMU driver:

* :func:`detect_accel` -- ``"kvm"`` only if a KVM guest really boots on this host,
  else ``"tcg"``. (``/dev/kvm`` existing is not enough: on some hosts KVM_CREATE_VM
  works but the guest spins forever without printing.) The verdict is cached.
* :func:`qemu_command` -- a complete ``qemu-system-x86_64`` argv: direct kernel boot,
  root disk as virtio-blk (``/dev/vda``), one virtio-net-pci NIC per ``-netdev``,
  serial console to a log file, optional QMP socket. No display, no default devices.
* :func:`user_netdev` -- a user-mode (slirp) ``-netdev`` spec with host port forwards and
  an optional forward of the EC2 metadata address to a server on the host loopback.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import platform
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from .build import GuestImage

QEMU_BINARY = "qemu-system-x86_64"
METADATA_ADDR = "169.254.169.254"
#: slirp network used when forwarding the metadata address (it must lie inside it).
USER_NET = "169.254.169.0/24"
_ACCELS = ("kvm", "tcg")


def find_qemu(binary: str | None = None) -> str:
    path = shutil.which(binary or os.environ.get("EUCALYPT_QEMU", QEMU_BINARY))
    if path is None:
        raise FileNotFoundError(
            f"{binary or QEMU_BINARY} not found (Debian package qemu-system-x86)"
        )
    return path


def qemu_version(binary: str | None = None) -> str:
    out = subprocess.run(
        [find_qemu(binary), "--version"], capture_output=True, text=True, check=True
    ).stdout
    return out.splitlines()[0].strip() if out else "unknown"


def _escape(value: str | os.PathLike[str]) -> str:
    """Escape a value for QEMU's ``key=value,...`` option syntax (``,`` -> ``,,``)."""
    return str(value).replace(",", ",,")


# --------------------------------------------------------------------------- accel


def detect_accel(
    cache_dir: Path,
    kernel: Path | None = None,
    *,
    timeout: float = 8.0,
    qemu: str | None = None,
) -> str:
    """Return ``"kvm"`` if a KVM guest boots here, else ``"tcg"``.

    ``$EUCALYPT_QEMU_ACCEL`` (``kvm`` or ``tcg``) overrides the probe. Without a
    usable ``/dev/kvm`` the answer is ``"tcg"`` at once. Otherwise the probe boots
    ``kernel`` (default: the test image's kernel, built into ``cache_dir`` if needed)
    under KVM with no root filesystem and waits up to ``timeout`` seconds for the
    kernel to get all the way to its "VFS: Unable to mount root" panic on the serial
    port; a working KVM gets there in about a second. The verdict is cached in
    ``cache_dir/accel-<hash>.json`` keyed by the host kernel release and QEMU version.
    """
    forced = os.environ.get("EUCALYPT_QEMU_ACCEL", "").strip().lower()
    if forced:
        if forced not in _ACCELS:
            raise ValueError(f"EUCALYPT_QEMU_ACCEL={forced!r}: expected one of {_ACCELS}")
        return forced
    if not os.access("/dev/kvm", os.R_OK | os.W_OK):
        return "tcg"

    qemu_bin = find_qemu(qemu)
    qver = qemu_version(qemu_bin)
    host = f"{platform.release()} {platform.machine()}"
    key = hashlib.sha256(f"{host}\0{qver}".encode()).hexdigest()[:16]
    cache_dir = Path(cache_dir)
    cache_file = cache_dir / f"accel-{key}.json"
    with contextlib.suppress(OSError, ValueError, KeyError):
        verdict = json.loads(cache_file.read_text())["accel"]
        if verdict in _ACCELS:
            return verdict

    if kernel is None:
        from .build import build_test_image

        kernel = build_test_image(cache_dir).kernel
    ok, detail = _probe_kvm(qemu_bin, kernel, timeout)
    verdict = "kvm" if ok else "tcg"
    cache_dir.mkdir(parents=True, exist_ok=True)
    tmp = cache_file.with_suffix(f".tmp{os.getpid()}")
    tmp.write_text(
        json.dumps(
            {"accel": verdict, "host": host, "qemu": qver, "detail": detail, "at": time.time()}
        )
    )
    tmp.replace(cache_file)
    return verdict


_BOOTED = re.compile(rb"Kernel panic|VFS: |Run /init|Freeing unused kernel")


def _probe_kvm(qemu_bin: str, kernel: Path, timeout: float) -> tuple[bool, str]:
    with tempfile.TemporaryDirectory(prefix="eucalypt-kvm-probe-") as tmp:
        log = Path(tmp) / "serial.log"
        cmd = [
            qemu_bin, "-accel", "kvm", "-m", "128", "-nodefaults", "-no-user-config",
            "-display", "none", "-no-reboot", "-serial", f"file:{_escape(log)}",
            "-kernel", str(kernel),
            "-append", "console=ttyS0 earlyprintk=serial,ttyS0,115200 panic=-1",
        ]  # fmt: skip
        start = time.monotonic()
        proc = subprocess.Popen(
            cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
        )
        try:
            while time.monotonic() - start < timeout:
                with contextlib.suppress(OSError):
                    if _BOOTED.search(log.read_bytes()):
                        return True, f"kernel booted under kvm in {time.monotonic() - start:.1f} s"
                if proc.poll() is not None:
                    err = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
                    with contextlib.suppress(OSError):
                        if _BOOTED.search(log.read_bytes()):
                            return True, "kernel booted under kvm"
                    return False, f"qemu -accel kvm exited {proc.returncode}: {err.strip()[:500]}"
                time.sleep(0.1)
            return False, f"no kernel output under kvm within {timeout:.0f} s"
        finally:
            if proc.poll() is None:
                proc.kill()
            proc.wait()
            if proc.stderr:
                proc.stderr.close()


# --------------------------------------------------------------------------- command


def user_netdev(
    netdev_id: str = "n0",
    *,
    hostfwd: Sequence[tuple[str, int, int]] = (),
    metadata_port: int | None = None,
    metadata_host: str = "127.0.0.1",
    restrict: bool = True,
) -> str:
    """A user-mode (slirp) ``-netdev`` spec for :func:`qemu_command`.

    ``hostfwd`` is ``(host_addr, host_port, guest_port)`` TCP forwards, e.g.
    ``("127.0.0.1", 2222, 22)``. With ``metadata_port``, guest connections to
    ``169.254.169.254:80`` go to ``metadata_host:metadata_port`` on the host.
    ``restrict=True`` (the default) cuts the guest off from everything but these
    forwards: without it slirp routes guest traffic to any address, including a real
    169.254.169.254 on the host's network when no metadata forward is given.

    QEMU (libslirp) refuses a ``guestfwd`` to an address outside the user network,
    so with ``metadata_port`` the network is ``169.254.169.0/24``: the guest gets
    169.254.169.15 by DHCP, gateway 169.254.169.2. Otherwise slirp's default
    10.0.2.0/24 (guest 10.0.2.15, gateway 10.0.2.2).

    The metadata forward is ``guestfwd=...-cmd:python relay.py HOST PORT``: QEMU runs
    the relay (:mod:`.relay`) once per guest connection. (``guestfwd=...-tcp:HOST:PORT``
    connects a single chardev once at startup and serves only the first guest
    connection, so a client making several requests hangs.)
    """
    parts = [f"user,id={netdev_id}"]
    if metadata_port is not None:
        # slirp only accepts a guestfwd address inside its own virtual network.
        parts.append(f"net={USER_NET}")
    if restrict:
        parts.append("restrict=on")
    for addr, hport, gport in hostfwd:
        parts.append(f"hostfwd=tcp:{addr}:{int(hport)}-:{int(gport)}")
    if metadata_port is not None:
        relay = [sys.executable, "-I", str(Path(__file__).with_name("relay.py"))]
        argv = [*relay, metadata_host, str(int(metadata_port))]
        parts.append(f"guestfwd=tcp:{METADATA_ADDR}:80-cmd:{shlex.join(argv)}")
    return ",".join(p.replace(",", ",,") if p.startswith("guestfwd=") else p for p in parts)


def _disk_format(disk: Path) -> str:
    with disk.open("rb") as f:
        return "qcow2" if f.read(4) == b"QFI\xfb" else "raw"


def qemu_command(
    image: GuestImage,
    *,
    accel: str,
    memory_mib: int = 256,
    disk: Path | None,
    netdev_args: Sequence[str] = (),
    serial_log: Path,
    qmp_socket: Path | None = None,
    cpus: int = 1,
    macs: Sequence[str] | None = None,
    extra_cmdline: str = "",
    disk_format: str | None = None,
    no_reboot: bool = False,
    pidfile: Path | None = None,
    name: str = "eucalypt-guest",
    qemu: str | None = None,
) -> list[str]:
    """Build the argv that boots ``image`` with ``disk`` as its root disk.

    * ``accel``: ``"kvm"`` or ``"tcg"`` (see :func:`detect_accel`). Under TCG the CPU
      model is ``max``; under KVM QEMU's default model (``-cpu host`` fails on some hosts).
    * ``disk``: the root disk, attached as virtio-blk (``/dev/vda`` in the guest). Use a
      qcow2 overlay on ``image.rootfs`` (``qemu-img create -f qcow2 -F raw -b rootfs
      overlay.qcow2``) so the shared raw image stays pristine. The format is detected
      from the file header unless ``disk_format`` is given. With ``disk=None`` the
      initramfs prints ``EUCALYPT-GUEST-ERROR: no root disk ...`` and powers off.
    * ``netdev_args``: ``-netdev`` specs (without the ``-netdev`` flag), each with an
      ``id=``, e.g. ``user_netdev(...)`` or ``"tap,id=n0,ifname=vnet0,script=no,
      downscript=no"``; each gets its own virtio-net-pci NIC (``eth0``, ``eth1``... in
      order), with the MAC from ``macs`` when given. The NIC option ROM is disabled.
    * ``serial_log``: the guest's serial console (ttyS0) is written to this file.
    * ``qmp_socket``: if set, a QMP server listens on this unix socket (no wait).
    * ``name`` is the VM name (``-name``; also the QEMU process title).
    * ``extra_cmdline`` is appended to ``image.cmdline``; ``no_reboot`` makes a guest
      reboot (or kernel panic, given ``panic=-1``) exit QEMU.
    """
    if accel not in _ACCELS:
        raise ValueError(f"accel must be one of {_ACCELS}, not {accel!r}")
    if macs is not None and len(macs) != len(netdev_args):
        raise ValueError("macs must have one entry per netdev")
    cmdline = " ".join(x for x in (image.cmdline, extra_cmdline) if x)
    cmd = [
        find_qemu(qemu),
        "-name", f"{_escape(name)},process={_escape(name)}",
        "-machine", "pc",
        "-accel", accel,
        "-cpu", "max" if accel == "tcg" else "qemu64",
        "-smp", str(int(cpus)),
        "-m", str(int(memory_mib)),
        "-nodefaults", "-no-user-config",
        "-display", "none",
        "-rtc", "base=utc",
        "-kernel", str(image.kernel),
        "-initrd", str(image.ramdisk),
        "-append", cmdline,
        "-chardev", f"file,id=serial0,path={_escape(serial_log)}",
        "-serial", "chardev:serial0",
    ]  # fmt: skip
    if disk is not None:
        fmt = disk_format or _disk_format(Path(disk))
        cmd += [
            "-drive", f"file={_escape(disk)},format={fmt},if=none,id=root,cache=writeback",
            "-device", "virtio-blk-pci,drive=root",
        ]  # fmt: skip
    for i, spec in enumerate(netdev_args):
        if spec.startswith("-"):
            raise ValueError(f"netdev spec {spec!r}: give the value of -netdev, not the flag")
        m = re.search(r"(?:^|,)id=([^,]+)", spec)
        if m is None:
            raise ValueError(f"netdev spec {spec!r} has no id=")
        dev = f"virtio-net-pci,netdev={m.group(1)},romfile="
        if macs is not None:
            dev += f",mac={macs[i]}"
        cmd += ["-netdev", spec, "-device", dev]
    if qmp_socket is not None:
        cmd += ["-qmp", f"unix:{_escape(qmp_socket)},server=on,wait=off"]
    if pidfile is not None:
        cmd += ["-pidfile", str(pidfile)]
    if no_reboot:
        cmd.append("-no-reboot")
    return cmd


def create_overlay(base: Path, overlay: Path, *, base_format: str = "raw") -> Path:
    """``qemu-img create -f qcow2 -F <base_format> -b <base> <overlay>``."""
    qemu_img = shutil.which("qemu-img")
    if qemu_img is None:
        raise FileNotFoundError("qemu-img not found (Debian package qemu-utils)")
    subprocess.run(
        [qemu_img, "create", "-q", "-f", "qcow2", "-F", base_format, "-b", str(base), str(overlay)],
        check=True,
        capture_output=True,
    )
    return overlay
