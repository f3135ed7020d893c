"""The ``qemu`` driver: QEMU driven directly through QMP, no daemon.

Each domain is one ``qemu-system-x86_64 -daemonize`` process whose files live
in the instance's directory::

    qemu.pid      written by QEMU (-pidfile); QEMU removes it when it exits normally
    qmp.sock      the QMP socket (created relative to the directory: no 108-byte limit)
    console.log   the serial console (ttyS0)
    qemu.log      QEMU's own messages until it daemonizes

QEMU calls ``setsid()`` when it daemonizes, so domains outlive the NC; a
restarted NC finds them again from ``qemu.pid``, checking that the process
really is QEMU running that instance (PIDs get reused).

With ``netns`` (``nc.netns``) a domain whose NIC is a tap runs inside that
network namespace, where the NC made its tap: the command is prefixed with
``ip netns exec <netns>``, which execs QEMU in the same process, so the pid
file still names QEMU itself (``/proc/<pid>/cmdline`` is QEMU's). User-mode
and NIC-less domains run in the NC's own namespace.

The accelerator is KVM only when a KVM guest really boots here: ``/dev/kvm``
opening is not enough (see DESIGN.md, facts). With ``accel="auto"`` the
first paravirtual launch probes it with the instance's own kernel
(:func:`eucalypt.nc.guestimage.qemu.detect_accel`, cached on disk per host
kernel and QEMU version) and falls back to TCG.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import time
from pathlib import Path

from qemu.qmp import QMPClient

from eucalypt.config import Config
from eucalypt.nc.errors import SpawnError
from eucalypt.nc.guestimage.qemu import detect_accel, find_qemu, user_netdev
from eucalypt.nc.hypervisors.base import DomainInfo, DomainSpec, HostResources, NicSpec
from eucalypt.nc.resources import discover

log = logging.getLogger("eucalypt.nc.qemu")

PIDFILE = "qemu.pid"
QMP_SOCKET = "qmp.sock"
QEMU_LOG = "qemu.log"
CONSOLE_LOG = "console.log"
ACCELS = ("auto", "kvm", "tcg")


def _escape(value: object) -> str:
    """QEMU's ``key=value,...`` syntax doubles commas inside values."""
    return str(value).replace(",", ",,")


def _read_pid(workdir: Path) -> int | None:
    try:
        return int((workdir / PIDFILE).read_text().strip())
    except (OSError, ValueError):
        return None


def _process_state(pid: int) -> str | None:
    """The process state letter from /proc (``Z`` for a zombie), None when gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[0]


def _alive(pid: int) -> bool:
    state = _process_state(pid)
    return state is not None and state not in ("Z", "X")


def _is_our_qemu(pid: int, instance_id: str, workdir: Path) -> bool:
    """Whether ``pid`` is a QEMU running ``instance_id`` from ``workdir`` (not a reused pid)."""
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    name = f"guest={instance_id},".encode()
    where = str(workdir).encode()
    return (
        bool(argv)
        and b"qemu" in Path(argv[0].decode(errors="replace")).name.encode()
        and any(a.startswith(name) for a in argv)
        and any(where in a for a in argv)
    )


class _Qmp:
    """One short QMP session with a domain (connect by a /proc/self/fd path: any length)."""

    def __init__(self, workdir: Path, name: str) -> None:
        self._workdir = workdir
        self._client = QMPClient(name)
        self._dirfd = -1

    async def __aenter__(self) -> QMPClient:
        self._dirfd = os.open(self._workdir, os.O_PATH | os.O_DIRECTORY)
        try:
            await asyncio.wait_for(
                self._client.connect(f"/proc/self/fd/{self._dirfd}/{QMP_SOCKET}"), 5.0
            )
        except BaseException:
            os.close(self._dirfd)
            raise
        return self._client

    async def __aexit__(self, *exc: object) -> None:
        try:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._client.disconnect(), 5.0)
        finally:
            os.close(self._dirfd)


class QemuDriver:
    """QEMU + QMP. See the module docstring; contracts are the Protocol's."""

    name = "qemu"
    simulated = False

    def __init__(
        self,
        *,
        accel: str = "auto",
        probe_dir: Path,
        qemu_binary: str | None = None,
        netns: str | None = None,
    ) -> None:
        if accel not in ACCELS:
            raise ValueError(f"qemu accel must be one of {ACCELS}, not {accel!r}")
        self._accel_mode = accel
        self._accel: str | None = None if accel == "auto" else accel
        self._accel_lock = asyncio.Lock()
        self._probe_dir = probe_dir
        self._qemu_binary = qemu_binary
        self.netns = netns or None
        # qemu.qmp logs a QEMU that quits under it as an error; ours quit on purpose.
        logging.getLogger("qemu.qmp").setLevel(logging.CRITICAL)

    @classmethod
    def from_config(cls, config: Config) -> QemuDriver:
        return cls(
            accel=config.nc.qemu_accel,
            probe_dir=Path(config.nc.cache_dir),
            netns=config.nc.netns or None,
        )

    # ------------------------------------------------------------------ accel
    async def accel_for(self, spec: DomainSpec) -> str:
        """``kvm`` or ``tcg`` for this domain (probing KVM once when ``auto``)."""
        if self._accel is not None:
            return self._accel
        async with self._accel_lock:
            if self._accel is not None:
                return self._accel
            if not os.access("/dev/kvm", os.R_OK | os.W_OK):
                self._accel = "tcg"
            elif spec.kernel is None:
                # The probe boots a kernel; a whole-disk image brings none. TCG always
                # works; a later paravirtual launch settles the question for good.
                log.warning("kvm not probed yet (whole-disk image): booting with tcg")
                return "tcg"
            else:
                log.info("probing kvm", extra={"kernel": str(spec.kernel)})
                self._accel = await asyncio.to_thread(
                    detect_accel, self._probe_dir, spec.kernel, qemu=self._qemu_binary
                )
            log.info("qemu accelerator", extra={"accel": self._accel})
            return self._accel

    # ------------------------------------------------------------------ command
    def command(self, spec: DomainSpec, accel: str) -> list[str]:
        """The QEMU argv for ``spec`` (run with the instance's directory as cwd).

        A tap NIC with a ``netns`` prefixes ``ip netns exec <netns>`` (see the module).
        """
        workdir = spec.workdir
        console = spec.console_log or workdir / CONSOLE_LOG
        iid = spec.instance_id
        argv = [
            find_qemu(self._qemu_binary),
            "-name", f"guest={_escape(iid)},process=qemu-{_escape(iid)}",
            "-machine", "pc",
            "-accel", accel,
            "-cpu", "max" if accel == "tcg" else "qemu64",
            "-smp", str(spec.cores),
            "-m", str(spec.memory_mib),
            "-nodefaults", "-no-user-config",
            "-display", "none",
            "-rtc", "base=utc",
            "-chardev", f"file,id=serial0,path={_escape(console)}",
            "-serial", "chardev:serial0",
            "-drive", f"file={_escape(spec.disk)},format=qcow2,if=none,id=root,cache=writeback",
            "-device", "virtio-blk-pci,drive=root",
            # Relative: QEMU creates it before daemonizing, in its cwd = workdir.
            "-qmp", f"unix:{QMP_SOCKET},server=on,wait=off",
            "-pidfile", str(workdir / PIDFILE),
            "-daemonize",
        ]  # fmt: skip
        if spec.kernel is not None:
            argv += ["-kernel", str(spec.kernel), "-append", spec.kernel_args]
            if spec.ramdisk is not None:
                argv += ["-initrd", str(spec.ramdisk)]
        argv += self._nic_args(spec.nic)
        if self.netns and spec.nic.kind == "tap":
            argv = ["ip", "netns", "exec", self.netns, *argv]
        return argv

    @staticmethod
    def _nic_args(nic: NicSpec) -> list[str]:
        if nic.kind == "none":
            return []
        if nic.kind == "tap":
            if not nic.tap:
                raise SpawnError("a tap NIC needs a tap device name")
            netdev = f"tap,id=n0,ifname={_escape(nic.tap)},script=no,downscript=no"
        else:
            metadata_host, metadata_port = None, None
            if nic.metadata_forward:
                host, _, port = nic.metadata_forward.rpartition(":")
                metadata_host, metadata_port = host or "127.0.0.1", int(port)
            netdev = user_netdev(
                "n0",
                hostfwd=[("127.0.0.1", h, g) for h, g in sorted(nic.host_forwards.items())],
                metadata_port=metadata_port,
                metadata_host=metadata_host or "127.0.0.1",
            )
        return ["-netdev", netdev, "-device", f"virtio-net-pci,netdev=n0,mac={nic.mac},romfile="]

    # ------------------------------------------------------------------ Protocol
    async def spawn(self, spec: DomainSpec) -> DomainInfo:
        workdir = spec.workdir
        for name in (PIDFILE, QMP_SOCKET):
            (workdir / name).unlink(missing_ok=True)
        proc: asyncio.subprocess.Process | None = None
        try:
            accel = await self.accel_for(spec)
            argv = self.command(spec, accel)
            log.info("booting", extra={"instance_id": spec.instance_id, "accel": accel})
            with (workdir / QEMU_LOG).open("ab") as qlog:
                proc = await asyncio.create_subprocess_exec(
                    *argv,
                    stdin=asyncio.subprocess.DEVNULL,
                    stdout=qlog,
                    stderr=qlog,
                    cwd=workdir,
                    start_new_session=True,
                )
            # -daemonize: the first process exits once the VM is set up (0) or failed.
            rc = await asyncio.wait_for(proc.wait(), 60.0)
            if rc != 0:
                raise SpawnError(f"qemu exited with status {rc}: {self._log_tail(workdir)}")
            pid = _read_pid(workdir)
            if pid is None or not _alive(pid):
                raise SpawnError(f"qemu is not running after start: {self._log_tail(workdir)}")
            async with _Qmp(workdir, spec.instance_id) as qmp:
                status = await qmp.execute("query-status")
            if not isinstance(status, dict) or status.get("status") != "running":
                raise SpawnError(f"qemu reports status {status!r}, not running")
        except (SpawnError, asyncio.CancelledError):
            await asyncio.shield(self._cleanup_failed_spawn(spec, proc))
            raise
        except Exception as exc:
            await asyncio.shield(self._cleanup_failed_spawn(spec, proc))
            raise SpawnError(f"qemu did not start: {exc!r}") from exc
        log.info("booted", extra={"instance_id": spec.instance_id, "pid": pid})
        return DomainInfo(spec.instance_id, True, pid)

    async def _cleanup_failed_spawn(
        self, spec: DomainSpec, proc: asyncio.subprocess.Process | None
    ) -> None:
        if proc is not None and proc.returncode is None:
            try:
                await asyncio.wait_for(proc.wait(), 30.0)
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
                await proc.wait()
        await self.destroy(spec.instance_id, spec.workdir)

    @staticmethod
    def _log_tail(workdir: Path) -> str:
        try:
            return (workdir / QEMU_LOG).read_text(errors="replace").strip()[-500:] or "no output"
        except OSError:
            return "no output"

    def _our_pid(self, instance_id: str, workdir: Path) -> int | None:
        pid = _read_pid(workdir)
        if pid is not None and _alive(pid) and _is_our_qemu(pid, instance_id, workdir):
            return pid
        return None

    async def destroy(self, instance_id: str, workdir: Path) -> None:
        pid = self._our_pid(instance_id, workdir)
        if pid is not None:
            with contextlib.suppress(Exception):
                async with _Qmp(workdir, instance_id) as qmp:
                    await asyncio.wait_for(qmp.execute("quit"), 2.0)
            if not await _wait_gone(pid, 3.0):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
                if not await _wait_gone(pid, 10.0):
                    raise RuntimeError(f"qemu pid {pid} of {instance_id} does not die")
            log.info("destroyed", extra={"instance_id": instance_id, "pid": pid})
        for name in (PIDFILE, QMP_SOCKET):
            with contextlib.suppress(OSError):
                (workdir / name).unlink()

    async def reboot(self, instance_id: str, workdir: Path) -> None:
        if self._our_pid(instance_id, workdir) is None:
            raise RuntimeError(f"{instance_id} is not running")
        async with _Qmp(workdir, instance_id) as qmp:
            await qmp.execute("system_reset")

    async def info(self, instance_id: str, workdir: Path) -> DomainInfo:
        pid = _read_pid(workdir)
        if pid is None:
            return DomainInfo(instance_id, False, None, "qemu exited (no pid file)")
        if _alive(pid) and _is_our_qemu(pid, instance_id, workdir):
            return DomainInfo(instance_id, True, pid)
        # QEMU removes its pid file when it exits normally: a pid file left
        # behind means it died from a signal (killed, crashed, OOM).
        return DomainInfo(instance_id, False, pid, f"qemu pid {pid} died without exiting")

    async def list(self, instances_dir: Path) -> list[DomainInfo]:
        if not instances_dir.is_dir():
            return []
        found = []
        for workdir in sorted(instances_dir.iterdir()):
            if (workdir / PIDFILE).exists():
                found.append(await self.info(workdir.name, workdir))
        return found

    async def console_output(self, instance_id: str, workdir: Path, limit: int) -> bytes:
        return await asyncio.to_thread(_tail, workdir / CONSOLE_LOG, limit)

    def host_resources(self, instances_dir: Path) -> HostResources:
        return discover(instances_dir)


async def _wait_gone(pid: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while _alive(pid):
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(0.05)
    return True


def _tail(path: Path, limit: int) -> bytes:
    try:
        with path.open("rb") as fh:
            fh.seek(0, os.SEEK_END)
            size = fh.tell()
            fh.seek(max(size - limit, 0))
            return fh.read(limit)
    except OSError:
        return b""
