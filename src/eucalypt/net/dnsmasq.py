"""DHCP with fixed leases: one dnsmasq per interface, started and stopped by PID.

dnsmasq answers only the MACs listed in its hosts file (``--dhcp-ignore=
tag:!known``), each with its fixed address, and serves no DNS (``--port=0``).
Its files live in ``state_dir``: ``<iface>.pid``, ``<iface>.hosts``,
``<iface>.leases``. A change of hosts rewrites the hosts file and sends
SIGHUP (dnsmasq rereads it); a change of ranges restarts the process.
Whether it runs is read from the pid file and ``/proc/<pid>/cmdline``, so a
restarted CC finds the dnsmasq it left running (soft state).

dnsmasq drops to the ``nobody`` user: ``state_dir`` and its parents must be
traversable by it (``state_dir`` itself is made 0755; a parent that is not
traversable is reported as an error rather than left to fail silently).
"""

from __future__ import annotations

import asyncio
import ipaddress
import os
import signal
import stat
from dataclasses import dataclass
from pathlib import Path

from eucalypt.net.runner import Runner

LEASE_TIME = "1h"


@dataclass(frozen=True)
class DhcpRange:
    """A subnet served on the interface; ``tag`` names it in dnsmasq's options."""

    tag: str
    subnet: str
    router: str | None = None
    mtu: int | None = None


@dataclass(frozen=True)
class DhcpHost:
    mac: str
    ip: str


def _proc_cmdline(pid: int) -> list[str]:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return []
    return [a.decode() for a in raw.split(b"\0") if a]


class Dnsmasq:
    """The dnsmasq of one interface (in ``netns``, if given)."""

    def __init__(
        self, runner: Runner, interface: str, state_dir: Path, netns: str | None = None
    ) -> None:
        self.runner = runner
        self.interface = interface
        self.state_dir = state_dir
        self.netns = netns
        self.pid_file = state_dir / f"{interface}.pid"
        self.hosts_file = state_dir / f"{interface}.hosts"
        self.lease_file = state_dir / f"{interface}.leases"

    def argv(self, ranges: list[DhcpRange]) -> list[str]:
        argv = [
            "dnsmasq",
            "--conf-file=/dev/null",
            f"--pid-file={self.pid_file}",
            f"--dhcp-leasefile={self.lease_file}",
            f"--dhcp-hostsfile={self.hosts_file}",
            "--bind-interfaces",
            f"--interface={self.interface}",
            "--except-interface=lo",
            "--port=0",
            "--dhcp-ignore=tag:!known",
        ]
        for r in sorted(ranges, key=lambda r: r.tag):
            net = ipaddress.ip_network(r.subnet)
            argv.append(
                f"--dhcp-range=set:{r.tag},{net.network_address},static,{net.netmask},{LEASE_TIME}"
            )
            if r.router:
                argv.append(f"--dhcp-option=tag:{r.tag},option:router,{r.router}")
            if r.mtu:
                # Forced: sent even to clients that do not ask for it (busybox udhcpc
                # does not), or they stay at 1500 and full-size packets routed into
                # the VXLAN network by the CC are lost.
                argv.append(f"--dhcp-option-force=tag:{r.tag},option:mtu,{r.mtu}")
        return argv

    def pid(self) -> int | None:
        """The PID of our running dnsmasq, or None."""
        try:
            pid = int(self.pid_file.read_text().strip())
        except (OSError, ValueError):
            return None
        cmd = _proc_cmdline(pid)
        if cmd[:1] == ["dnsmasq"] and f"--pid-file={self.pid_file}" in cmd:
            return pid
        return None

    def _write_hosts(self, hosts: list[DhcpHost]) -> bool:
        text = "".join(f"{h.mac},{h.ip}\n" for h in sorted(hosts, key=lambda h: h.ip))
        try:
            if self.hosts_file.read_text() == text:
                return False
        except OSError:
            pass
        tmp = self.hosts_file.with_suffix(".tmp")
        tmp.write_text(text)
        tmp.chmod(0o644)
        tmp.replace(self.hosts_file)
        return True

    def _check_readable(self) -> None:
        # dnsmasq rereads the hosts file as nobody: a 0700 parent (e.g. /root)
        # would make every later lease change fail silently.
        for d in self.state_dir.resolve().parents:
            if not d.stat().st_mode & stat.S_IXOTH:
                raise RuntimeError(
                    f"dnsmasq (user nobody) cannot reach {self.state_dir}: {d} is not "
                    "traversable by others; choose another directory (cc.network_state_dir)"
                )

    async def ensure(self, ranges: list[DhcpRange], hosts: list[DhcpHost]) -> None:
        """Run dnsmasq with these ranges and fixed leases; does nothing if it already does."""
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self.state_dir.chmod(0o755)
        self._check_readable()
        argv = self.argv(ranges)
        pid = self.pid()
        if pid is not None and _proc_cmdline(pid) != argv:
            await self.stop()
            pid = None
        changed = self._write_hosts(hosts)
        if pid is None:
            await self.runner.run(argv, netns=self.netns)
            if self.pid() is None:
                raise RuntimeError(f"dnsmasq for {self.interface} did not start")
        elif changed:
            os.kill(pid, signal.SIGHUP)

    async def stop(self) -> None:
        """Stop our dnsmasq (by PID) and remove its files; succeeds when none runs."""
        pid = self.pid()
        if pid is not None:
            os.kill(pid, signal.SIGTERM)
            for _ in range(100):
                if self.pid() is None:
                    break
                await asyncio.sleep(0.05)
            else:
                os.kill(pid, signal.SIGKILL)
        for f in (self.pid_file, self.hosts_file, self.lease_file):
            f.unlink(missing_ok=True)
