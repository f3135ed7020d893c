"""Real VMs through the NC's API (qemu driver; TCG where KVM does not really work).

The guest is the project's test image (built once into the shared image cache)
served by an HTTP server on 127.0.0.1, as Walrus would serve it. User-mode
networking forwards the guest's metadata requests and SSH to 127.0.0.1 only;
the bridge test runs its NC, bridge, DHCP server and metadata service inside a
network namespace it creates. Timings are printed, never asserted.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from eucalypt.config import Config
from eucalypt.nc.api import BootImages, ImageRef, InstanceInfo, InstanceState, NetworkSpec, VmSpec
from eucalypt.nc.app import create_app
from eucalypt.nc.guestimage import GuestImage, build_test_image, default_cache_dir
from eucalypt.rpc import ComponentKeys
from tests.nc.conftest import ImageServer, Nc, nc_config, run_request, sha256_of
from tests.support.servers import free_port, serve_in_thread, wait_http

S = InstanceState
READY = "EUCALYPT-GUEST-READY"
VM = VmSpec(name="t1.micro", cores=1, memory_mib=256, disk_gib=1)
REPO = Path(__file__).resolve().parents[2]

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        any(shutil.which(t) is None for t in ("qemu-system-x86_64", "qemu-img", "mke2fs")),
        reason="needs qemu-system-x86, qemu-utils, e2fsprogs",
    ),
]


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="session")
def guest() -> GuestImage:
    return build_test_image(default_cache_dir(), progress=lambda m: print(f"[guestimage] {m}"))


@pytest.fixture(scope="session")
def nc_cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One NC image cache for all VM tests: images are fetched (and KVM probed) once."""
    return tmp_path_factory.mktemp("nc-cache")


@pytest.fixture(scope="session")
def walrus(guest: GuestImage) -> Iterator[tuple[ImageServer, BootImages]]:
    """The guest image's three files served over HTTP, with their digests."""
    with ImageServer() as server:
        refs = {
            name: ImageRef(
                image_id=image_id,
                url=server.add(f"/images/{path.name}", path),
                sha256=sha256_of(path),
                size=path.stat().st_size,
            )
            for name, image_id, path in (
                ("kernel", "eki-test", guest.kernel),
                ("ramdisk", "eri-test", guest.ramdisk),
                ("root", "emi-test", guest.rootfs),
            )
        }
        images = BootImages(
            root=refs["root"], kernel=refs["kernel"], ramdisk=refs["ramdisk"],
            kernel_args=guest.cmdline,
        )  # fmt: skip
        yield server, images


class Metadata:
    """A v1 metadata service on 127.0.0.1 answering the instance id (run as a subprocess)."""

    def __init__(self, instance_id: str, netns: str | None = None, addr: str = "127.0.0.1"):
        self.port = free_port() if netns is None else 80
        argv = [sys.executable, "-m", "tests.nc.nshelpers", "metadata", addr, str(self.port)]
        argv.append(instance_id)
        if netns:
            argv = ["ip", "netns", "exec", netns, *argv]
        self.proc = subprocess.Popen(argv, cwd=REPO, stdin=subprocess.DEVNULL)

    def close(self) -> None:
        self.proc.kill()
        self.proc.wait(10)


def new_id() -> str:
    return "i-" + secrets.token_hex(4)


def new_mac() -> str:
    return "d0:0d:" + ":".join(f"{b:02x}" for b in secrets.token_bytes(4))


def qemu_pids(instances_dir: Path) -> list[int]:
    pids = []
    for pidfile in instances_dir.glob("*/qemu.pid"):
        with contextlib.suppress(OSError, ValueError):
            pid = int(pidfile.read_text())
            if str(pidfile.parent).encode() in Path(f"/proc/{pid}/cmdline").read_bytes():
                pids.append(pid)
    return pids


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state not in ("Z", "X")


@pytest.fixture
def vm_reaper() -> Iterator[list[Path]]:
    """Directories whose QEMUs are killed (by pid) at teardown, whatever the test did."""
    dirs: list[Path] = []
    yield dirs
    for d in dirs:
        for pid in qemu_pids(d):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


def vm_config(tmp_path: Path, cache_dir: Path, **nc: object) -> Config:
    return nc_config(tmp_path / "data", hypervisor="qemu", cache_dir=str(cache_dir), **nc)


def wait_console(
    get: Callable[[], str], marker: str, timeout: float = 180.0, count: int = 1
) -> tuple[str, float]:
    started = time.monotonic()
    while True:
        text = get()
        if text.count(marker) >= count:
            return text, time.monotonic() - started
        if time.monotonic() - started > timeout:
            raise AssertionError(f"no {marker!r} x{count} within {timeout}s; console:\n{text}")
        time.sleep(0.25)


def ready_line(console: str) -> str:
    return [line for line in console.splitlines() if line.startswith(READY)][-1].strip()


def memory_kib(pid: int, guest_mib: int) -> dict[str, int]:
    """RSS and PSS of a QEMU process, and the RSS of its guest RAM and TCG code cache."""
    status = Path(f"/proc/{pid}/status").read_text()
    out = {"rss": int(next(x for x in status.splitlines() if x.startswith("VmRSS:")).split()[1])}
    rollup = Path(f"/proc/{pid}/smaps_rollup").read_text()
    out["pss"] = int(next(x for x in rollup.splitlines() if x.startswith("Pss:")).split()[1])
    out["guest_ram"] = out["tcg_code"] = 0
    size, perms = 0, ""
    for line in Path(f"/proc/{pid}/smaps").read_text().splitlines():
        head = line.split()
        if "-" in head[0] and len(head) >= 5:  # a mapping's header line
            lo, hi = (int(x, 16) for x in head[0].split("-"))
            size, perms = (hi - lo) // 1024, head[1]
        elif head[0] == "Rss:":
            if size == guest_mib * 1024:
                out["guest_ram"] += int(head[1])
            elif perms == "rwxp":
                out["tcg_code"] += int(head[1])
    return out


def ssh_banner(port: int) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        return s.recv(64)


# --------------------------------------------------------------------------- user mode


def test_vm_boots_reboots_and_terminates_cleanly(
    tmp_path: Path,
    walrus: tuple[ImageServer, BootImages],
    nc_cache_dir: Path,
    vm_reaper: list[Path],
) -> None:
    server, images = walrus
    config = vm_config(tmp_path, nc_cache_dir)
    instances = Path(config.nc.instances_dir)
    vm_reaper.append(instances)
    iid, ssh_port = new_id(), free_port()
    md = Metadata(iid)
    try:
        with serve_in_thread(create_app(config), config.nc.port) as url:
            nc = Nc(url, config)
            net = NetworkSpec(
                mode="user", mac=new_mac(), metadata_forward=f"127.0.0.1:{md.port}",
                host_forwards={ssh_port: 22},
            )  # fmt: skip
            t0 = time.monotonic()
            first = nc.run(run_request(iid, vm=VM, images=images, network=net))
            assert first.state == S.PENDING
            running = nc.wait_state(iid, {S.RUNNING, S.TERMINATED}, timeout=300)
            assert running.state == S.RUNNING, running.reason
            t_running = time.monotonic() - t0
            assert running.pid is not None and alive(running.pid)
            console, after_running = wait_console(lambda: nc.console(iid), READY)
            t_ready = time.monotonic() - t0
            line = ready_line(console)
            assert f"instance-id={iid}" in line and "ip=169.254.169.15" in line, line
            assert ssh_banner(ssh_port).startswith(b"SSH-2.0-dropbear")

            # idle memory of the QEMU process (guest -m 256)
            time.sleep(10)
            mem = {k: v / 1024 for k, v in memory_kib(running.pid, VM.memory_mib).items()}
            workdir = instances / iid
            overlay_kib = (workdir / "root.qcow2").stat().st_blocks // 2
            print(
                f"\n[vm] RunInstance -> running {t_running:.1f} s (images fetched: "
                f"{server.gets[f'/images/{Path(images.root.url).name}']}x), running -> "
                f"{READY} {after_running:.1f} s, RunInstance -> ready {t_ready:.1f} s\n"
                f"[vm] idle QEMU (-m {VM.memory_mib}): RSS {mem['rss']:.0f} MiB, PSS "
                f"{mem['pss']:.0f} MiB, of which guest RAM {mem['guest_ram']:.0f} MiB and TCG "
                f"code cache {mem['tcg_code']:.0f} MiB; qcow2 overlay {overlay_kib / 1024:.1f} "
                "MiB on disk"
            )
            assert sorted(p.name for p in workdir.iterdir()) == [
                "console.log", "instance.json", "kernel", "qemu.log", "qemu.pid", "qmp.sock",
                "ramdisk", "root.base", "root.qcow2",
            ]  # fmt: skip

            nc.call(lambda c: c.reboot_instance(iid))
            _, reboot_s = wait_console(lambda: nc.console(iid), READY, count=2)
            assert nc.one(iid).pid == running.pid  # a reset, not a new process
            print(f"[vm] RebootInstance -> {READY} again in {reboot_s:.1f} s")

            done = nc.terminate(iid)
            assert (done.state, done.reason) == (S.TERMINATED, "")
            assert not alive(running.pid)
            assert not workdir.exists()
            assert READY in nc.console(iid)  # the console tail outlives the files
    finally:
        md.close()


def test_qemu_killed_outside_the_nc_shows_terminated_with_reason(
    tmp_path: Path,
    walrus: tuple[ImageServer, BootImages],
    nc_cache_dir: Path,
    vm_reaper: list[Path],
) -> None:
    _, images = walrus
    config = vm_config(tmp_path, nc_cache_dir, monitor_seconds=60.0)
    vm_reaper.append(Path(config.nc.instances_dir))
    iid = new_id()
    with serve_in_thread(create_app(config), config.nc.port) as url:
        nc = Nc(url, config)
        net = NetworkSpec(mode="none", mac=new_mac())
        nc.run(run_request(iid, vm=VM, images=images, network=net))
        info = nc.wait_state(iid, {S.RUNNING, S.TERMINATED}, timeout=300)
        assert info.state == S.RUNNING and info.pid is not None, info.reason
        os.kill(info.pid, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while alive(info.pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        gone = nc.one(iid)  # DescribeInstances notices at once (the monitor is slow here)
        assert gone.state == S.TERMINATED
        assert gone.reason == (
            f"stopped outside the NC's control: qemu pid {info.pid} died without exiting"
        )
        assert not (Path(config.nc.instances_dir) / iid).exists()
        res = nc.call(lambda c: c.describe_resource()).resources
        assert res.memory_mib_free == res.memory_mib_total


# --------------------------------------------------------------------------- NC restarts


class NcProcess:
    """``python -m eucalypt serve nc`` as a child process (optionally inside a netns)."""

    def __init__(self, config: Config, log: Path, netns: str | None = None) -> None:
        self.config, self.log, self.netns = config, log, netns
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        argv = [sys.executable, "-m", "eucalypt", "serve", "nc"]
        argv += ["--config", str(self.config.config_path)]
        if self.netns:
            argv = ["ip", "netns", "exec", self.netns, *argv]
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(
                argv, cwd=REPO, stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                start_new_session=True,
            )  # fmt: skip
        if self.netns:
            ns_call(self.netns, self.config, "health")
        else:
            wait_http(f"{self.config.nc.url}/healthz", timeout=30)

    def kill9(self) -> None:
        assert self.proc is not None
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


def test_nc_killed_and_restarted_adopts_the_running_vm(
    tmp_path: Path,
    walrus: tuple[ImageServer, BootImages],
    nc_cache_dir: Path,
    vm_reaper: list[Path],
) -> None:
    _, images = walrus
    config = vm_config(tmp_path, nc_cache_dir)
    config.save()
    instances = Path(config.nc.instances_dir)
    vm_reaper.append(instances)
    nc_proc = NcProcess(config, tmp_path / "nc.log")
    nc = Nc(config.nc.url, config)
    iid, md = new_id(), None
    try:
        md = Metadata(iid)
        nc_proc.start()
        net = NetworkSpec(mode="user", mac=new_mac(), metadata_forward=f"127.0.0.1:{md.port}")
        t0 = time.monotonic()
        nc.run(run_request(iid, vm=VM, images=images, network=net))
        before = nc.wait_state(iid, {S.RUNNING, S.TERMINATED}, timeout=300)
        assert before.state == S.RUNNING and before.pid is not None, before.reason
        t_running = time.monotonic() - t0
        _, after_running = wait_console(lambda: nc.console(iid), READY)
        print(
            f"\n[vm] warm cache: RunInstance -> running {t_running:.1f} s, running -> "
            f"{READY} {after_running:.1f} s"
        )

        nc_proc.kill9()
        assert alive(before.pid), "QEMU must outlive the NC"
        nc_proc.start()
        after = nc.one(iid)
        assert (after.state, after.pid) == (S.RUNNING, before.pid)
        assert READY in nc.console(iid)
        res = nc.call(lambda c: c.describe_resource()).resources
        assert res.memory_mib_free == res.memory_mib_total - VM.memory_mib
        log = (tmp_path / "nc.log").read_text()
        assert '"msg": "adopted instance"' in log

        done = nc.terminate(iid)
        assert done.state == S.TERMINATED
        assert not alive(before.pid)
        assert not (instances / iid).exists()
    finally:
        nc_proc.stop()
        if md is not None:
            md.close()


# --------------------------------------------------------------------------- bridge mode


def ns_call(netns: str, config: Config, op: str, arg: str = "") -> dict[str, object]:
    argv = ["ip", "netns", "exec", netns, sys.executable, "-m", "tests.nc.nshelpers", "call"]
    argv += [str(config.config_path), op, arg]
    out = subprocess.run(argv, cwd=REPO, capture_output=True, text=True, timeout=90)
    if out.returncode != 0:
        raise AssertionError(f"{op} failed in {netns}: {out.stderr.strip()[-2000:]}")
    result: dict[str, object] = json.loads(out.stdout)
    return result


def ns_instance(netns: str, config: Config, iid: str) -> InstanceInfo:
    doc = ns_call(netns, config, "describe", iid)
    return InstanceInfo.model_validate(doc["instances"][0])  # type: ignore[index]


def links(netns: str) -> dict[str, dict[str, object]]:
    out = subprocess.run(
        ["ip", "-n", netns, "-d", "-j", "link", "show"], capture_output=True, text=True, check=True
    ).stdout
    return {link["ifname"]: link for link in json.loads(out)}


@pytest.fixture
def netns() -> Iterator[str]:
    if os.geteuid() != 0 or shutil.which("ip") is None:
        pytest.skip("needs root and iproute2")
    name = "eucnc-" + secrets.token_hex(3)
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        yield name
    finally:
        subprocess.run(["ip", "netns", "del", name], check=False)


@pytest.mark.netns
def test_bridge_mode_puts_a_tap_on_the_bridge_and_removes_it(
    tmp_path: Path,
    walrus: tuple[ImageServer, BootImages],
    nc_cache_dir: Path,
    vm_reaper: list[Path],
    netns: str,
) -> None:
    if shutil.which("dnsmasq") is None:
        pytest.skip("needs dnsmasq (dnsmasq-base)")
    _, images = walrus
    # The NC inside the namespace fetches images from the host's 127.0.0.1: it cannot.
    # So the cache is warmed on the host first (the previous tests did, or we do here).
    config = vm_config(tmp_path, nc_cache_dir)
    config.save()
    instances = Path(config.nc.instances_dir)
    vm_reaper.append(instances)

    def ip(*args: str) -> None:
        subprocess.run(["ip", "-n", netns, *args], check=True)

    ip("link", "set", "lo", "up")
    ip("link", "add", "br-euc", "type", "bridge")
    ip("addr", "add", "10.77.0.1/24", "dev", "br-euc")
    ip("addr", "add", "169.254.169.254/32", "dev", "br-euc")
    ip("link", "set", "br-euc", "up")
    iid, mac = new_id(), new_mac()
    dnsmasq = subprocess.Popen(
        ["ip", "netns", "exec", netns, "dnsmasq", "--keep-in-foreground", "--conf-file=/dev/null",
         "--bind-interfaces", "--interface=br-euc", "--except-interface=lo", "--port=0",
         "--dhcp-range=10.77.0.10,10.77.0.50,1h", f"--dhcp-host={mac},10.77.0.23",
         f"--dhcp-leasefile={tmp_path / 'leases'}", f"--pid-file={tmp_path / 'dnsmasq.pid'}"],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    md = Metadata(iid, netns=netns, addr="169.254.169.254")
    nc_proc = NcProcess(config, tmp_path / "nc.log", netns=netns)
    try:
        _warm_cache(tmp_path, config, images)
        nc_proc.start()
        net = NetworkSpec(mode="bridge", mac=mac, bridge="br-euc")
        req = run_request(iid, vm=VM, images=images, network=net)
        ns_call(netns, config, "run", req.model_dump_json())
        deadline = time.monotonic() + 300
        info = ns_instance(netns, config, iid)
        while info.state == S.PENDING and time.monotonic() < deadline:
            time.sleep(0.5)
            info = ns_instance(netns, config, iid)
        assert info.state == S.RUNNING, info.reason
        tap = info.tap
        assert tap is not None
        link = links(netns)[tap]
        assert link["master"] == "br-euc"
        assert link["linkinfo"]["info_data"]["type"] == "tap"  # type: ignore[index]
        assert "UP" in link["flags"]  # type: ignore[operator]
        assert tap not in links_on_host()

        def console() -> str:
            return str(ns_call(netns, config, "console", iid)["output"])

        text, took = wait_console(console, READY)
        line = ready_line(text)
        assert f"instance-id={iid}" in line and "ip=10.77.0.23" in line, line
        print(f"\n[vm] bridge mode: running -> {READY} (DHCP over the tap) {took:.1f} s")

        done = ns_call(netns, config, "terminate", iid)
        assert done["instance"]["state"] == "terminated"  # type: ignore[index]
        assert tap not in links(netns)
        assert "br-euc" in links(netns)
        assert not (instances / iid).exists()
        assert qemu_pids(instances) == []
    finally:
        nc_proc.stop()
        md.close()
        dnsmasq.kill()
        dnsmasq.wait(10)


def links_on_host() -> set[str]:
    out = subprocess.run(["ip", "-j", "link", "show"], capture_output=True, text=True, check=True)
    return {link["ifname"] for link in json.loads(out.stdout)}


def _warm_cache(tmp_path: Path, config: Config, images: BootImages) -> None:
    """Fetch the images into the NC's cache from the host side (the image server is on the
    host's loopback, which the namespace cannot reach)."""
    import asyncio

    from eucalypt.nc.cache import FetchSettings, ImageCache

    cache = ImageCache(
        Path(config.nc.cache_dir),
        int(config.nc.cache_max_gib * 2**30),
        FetchSettings(credential=ComponentKeys.load(config.keys_dir).credential("nc")),
    )

    async def go() -> None:
        try:
            for ref in (images.root, images.kernel, images.ramdisk):
                assert ref is not None
                await cache.get(ref)
        finally:
            await cache.aclose()

    asyncio.run(go())
