"""Part 1 of bench/ec2: boot latency, eucalypt against a bare QEMU boot of the same image."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import secrets
import shutil
import subprocess
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from common import (
    LINK_NET,
    PUBLIC_POOL,
    READY,
    Report,
    ec2_client,
    eucalypt_down,
    eucalypt_env,
    eucalypt_up,
    free_port,
    say,
    wait_for,
)

from eucalypt.config import CcConfig, ClcConfig, Config, NcConfig, WalrusConfig


class MetadataServer:
    """A tiny EC2 metadata service on 127.0.0.1 for the bare guest: IMDSv2 token and
    instance-id, 404 for the rest (as eucalypt answers an instance without key or
    user-data), so the floor's guest does the same requests as eucalypt's."""

    def __init__(self, instance_id: str) -> None:
        files = {"/latest/meta-data/instance-id": instance_id.encode()}

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.0"

            def log_message(self, format: str, *args: object) -> None:
                pass

            def _send(self, code: int, body: bytes = b"") -> None:
                self.send_response(code)
                self.send_header("Content-Type", "text/plain")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_PUT(self) -> None:
                if self.path == "/latest/api/token":
                    self._send(200, secrets.token_urlsafe(24).encode())
                else:
                    self._send(404)

            def do_GET(self) -> None:
                body = files.get(self.path)
                self._send(404) if body is None else self._send(200, body)

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        self.port = int(self._httpd.server_address[1])
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)

    def __enter__(self) -> MetadataServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(5)


def nc_kernel_args() -> str:
    """The kernel command line the NC boots instances with (the floor uses the same)."""
    from eucalypt.nc.api import BootImages

    return str(BootImages.model_fields["kernel_args"].default)


class BareQemu:
    """The floor: the test image booted by QEMU alone, as the NC would boot it."""

    def __init__(self, workdir: Path, report: Report) -> None:
        from eucalypt.nc.guestimage import build_test_image, default_cache_dir, detect_accel
        from eucalypt.nc.guestimage.qemu import qemu_version

        image = build_test_image(default_cache_dir())
        self.image = dataclasses.replace(image, cmdline=nc_kernel_args())
        self.accel = detect_accel(default_cache_dir(), image.kernel)
        self.workdir = workdir
        self.report = report
        report.facts["accelerator"] = self.accel
        report.facts["QEMU"] = qemu_version()
        report.facts["guest image"] = image.version

    def boot(self, i: int) -> float:
        """One boot: seconds from starting QEMU to READY on its serial console."""
        from eucalypt.nc.guestimage.qemu import create_overlay, qemu_command, user_netdev

        run = self.workdir / f"bare{i}"
        run.mkdir(parents=True)
        overlay = create_overlay(self.image.rootfs, run / "root.qcow2")
        serial = run / "console.log"
        iid = f"i-bare{i:013d}"
        with MetadataServer(iid) as md:
            cmd = qemu_command(
                self.image,
                accel=self.accel,
                memory_mib=256,  # t1.micro, what eucalypt launches
                cpus=1,
                disk=overlay,
                netdev_args=[user_netdev(metadata_port=md.port, restrict=True)],
                serial_log=serial,
                no_reboot=True,
                name=f"eucalypt-bench-bare{i}",
            )
            with (run / "qemu.log").open("wb") as qlog:
                started = time.monotonic()
                proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=qlog, stderr=qlog)
            try:
                took = None
                while time.monotonic() - started < 240 and proc.poll() is None:
                    with contextlib.suppress(OSError):
                        if READY.encode() in serial.read_bytes():
                            took = time.monotonic() - started
                            break
                    time.sleep(0.02)
            finally:
                proc.kill()
                proc.wait(timeout=30)
        console = serial.read_text(errors="replace") if serial.exists() else ""
        if took is None:
            raise RuntimeError(f"bare guest not ready (qemu rc={proc.returncode}):\n{console}")
        line = next((x for x in console.splitlines() if x.startswith(READY)), "").strip()
        if f"instance-id={iid}" not in line:
            self.report.boot_notes.append(f"bare boot {i}: metadata not read ({line})")
        say(f"  bare QEMU start -> READY {took:.2f} s ({line})")
        return took


def boot_config(data_dir: Path, poll_seconds: float | None) -> Config:
    from eucalypt.net.local import local_network_defaults

    tag = secrets.token_hex(3)
    nc_port = free_port()
    config = Config(
        data_dir=data_dir,
        # As `eucalypt init` sets up a one-host cloud as root (auto public addresses).
        clc=ClcConfig(port=free_port(), auto_public_ip=True),
        walrus=WalrusConfig(port=free_port()),
        cc=CcConfig(port=free_port(), nodes=[f"http://127.0.0.1:{nc_port}"]),
        nc=NcConfig(port=nc_port),
    )
    if poll_seconds is not None:
        config.clc.sync_seconds = config.cc.poll_seconds = poll_seconds
    local_network_defaults(config)
    config.cc.network_netns = config.nc.netns = f"eub-{tag}"
    config.cc.local_uplink_interface = f"eub{tag}"
    config.cc.local_uplink_net = LINK_NET
    config.cc.public_ips = [PUBLIC_POOL]
    config.cc.metadata_port = free_port()
    config.save()
    return config


def teardown_boot_cloud(config: Config) -> None:
    """`eucalypt down` (it stops the VMs too), then what it leaves of the data plane: our
    veth, our namespace and the CC's runtime directory (dnsmasq's files) of our data dir."""
    from eucalypt.net.local import RUNTIME_ROOT, runtime_state_dir

    eucalypt_down(config)
    subprocess.run(["ip", "link", "del", config.cc.local_uplink_interface], capture_output=True)
    subprocess.run(["ip", "netns", "del", config.cc.network_netns], capture_output=True)
    state = Path(config.cc.network_state_dir or runtime_state_dir(config.data_dir))
    if state.parent.parent == RUNTIME_ROOT:  # /run/eucalypt/<hash of our data dir>/net
        shutil.rmtree(state.parent, ignore_errors=True)


@dataclass
class Launch:
    instance_id: str
    wall_start: float  # time.time() of the RunInstances call
    to_running: float
    to_ready: float
    ready_line: str
    console: str


def launch_once(ec2: Any, image_id: str) -> Launch:
    """RunInstances -> running -> READY in GetConsoleOutput, then terminate."""
    wall_start = time.time()
    started = time.monotonic()
    iid = ec2.run_instances(ImageId=image_id, MinCount=1, MaxCount=1, InstanceType="t1.micro")[
        "Instances"
    ][0]["InstanceId"]

    def state() -> str:
        res = ec2.describe_instances(InstanceIds=[iid])["Reservations"]
        return str(res[0]["Instances"][0]["State"]["Name"])

    try:
        wait_for(f"{iid} running", lambda: state() in ("running", "terminated"), 300, 0.1)
        if state() != "running":
            raise RuntimeError(f"{iid} did not start: {ec2.describe_instances(InstanceIds=[iid])}")
        to_running = time.monotonic() - started

        console = ""

        def ready() -> str | None:
            nonlocal console
            console = ec2.get_console_output(InstanceId=iid).get("Output", "")
            return next((x for x in console.splitlines() if x.startswith(READY)), None)

        line = wait_for(f"{iid} {READY}", ready, 300, 0.2)
        to_ready = time.monotonic() - started
    finally:
        ec2.terminate_instances(InstanceIds=[iid])
        with contextlib.suppress(TimeoutError):
            wait_for(f"{iid} terminated", lambda: state() == "terminated", 120, 0.5)
    return Launch(iid, wall_start, to_running, to_ready, line.strip(), console)


def nc_events(config: Config, instance_id: str) -> dict[str, float]:
    """Wall-clock times of the NC's log lines about ``instance_id`` (first of each)."""
    events: dict[str, float] = {}
    with contextlib.suppress(OSError):
        for text in (config.logs_dir / "nc.log").read_text(errors="replace").splitlines():
            if instance_id not in text:
                continue
            with contextlib.suppress(ValueError, KeyError):
                rec = json.loads(text)
                if rec.get("instance_id") == instance_id and rec["msg"] not in events:
                    ts = datetime.strptime(rec["ts"], "%Y-%m-%dT%H:%M:%S.%fZ")
                    events[rec["msg"]] = ts.replace(tzinfo=UTC).timestamp()
    return events


def boot_bench(workdir: Path, repeats: int, poll_seconds: float | None, report: Report) -> None:
    """Bare QEMU and eucalypt boots, alternating (so that what else the machine is doing
    weighs on both alike)."""
    bare = BareQemu(workdir, report)
    say(f"boot ({bare.accel}, 1 vCPU, 256 MiB, {bare.image.version}):")
    bare_times: list[float] = []
    label = "bare QEMU: process start → READY on the serial console"
    skipped = None
    if os.geteuid() != 0:
        skipped = (
            "not root: the one-host data plane (network namespace, taps, bridges, iptables, "
            "dnsmasq) needs root, and the default SYSTEM network mode has no bridge here to "
            "boot a guest on"
        )
    elif missing := [t for t in ("ip", "iptables", "dnsmasq") if shutil.which(t) is None]:
        skipped = f"missing tools: {', '.join(missing)}"
    if skipped:
        report.boot_skipped = skipped
        say(f"  eucalypt: skipped ({skipped})")
        bare_times = [bare.boot(i) for i in range(repeats)]
        report.boot[label] = bare_times
        return
    config = boot_config(workdir / "boot-cloud", poll_seconds)
    report.facts["boot cloud polling"] = (
        f"CLC sync every {config.clc.sync_seconds:g} s, CC polls its NCs every "
        f"{config.cc.poll_seconds:g} s"
    )
    say(f"  eucalypt: netns {config.cc.network_netns}, {report.facts['boot cloud polling']}")
    try:
        took = eucalypt_up(config)
        report.add_extra(
            "`eucalypt up` (fresh data dir, test image registered)", "eucalypt", took, "s"
        )
        env = eucalypt_env(config)
        ec2 = ec2_client(
            env["AWS_ENDPOINT_URL_EC2"],
            env["AWS_DEFAULT_REGION"],
            env["AWS_ACCESS_KEY_ID"],
            env["AWS_SECRET_ACCESS_KEY"],
        )
        images = ec2.describe_images(
            Filters=[{"Name": "name", "Values": ["eucalypt-test-machine-*"]}]
        )["Images"]
        image_id = images[0]["ImageId"]
        # First launch: the NC fetches the images from Walrus into its cache (and probes KVM).
        first = launch_once(ec2, image_id)
        report.add_extra(
            "first launch (image fetched into the NC cache) → READY",
            "eucalypt",
            first.to_ready,
            "s",
        )
        running: list[float] = []
        ready: list[float] = []
        phases: dict[str, list[float]] = {}
        for i in range(repeats):
            if i % 2 == 0:
                bare_times.append(bare.boot(i))
            launch = launch_once(ec2, image_id)
            if i % 2 == 1:
                bare_times.append(bare.boot(i))
            (workdir / f"eucalypt-console{i}.txt").write_text(launch.console)
            iid = launch.instance_id
            if f"instance-id={iid}" not in launch.ready_line:
                report.boot_notes.append(f"{iid}: metadata not read ({launch.ready_line})")
            say(
                f"  eucalypt RunInstances -> running {launch.to_running:.2f} s, -> READY "
                f"{launch.to_ready:.2f} s ({launch.ready_line})"
            )
            running.append(launch.to_running)
            ready.append(launch.to_ready)
            # Where the time went, from the NC's log (same host clock).
            ev = nc_events(config, iid)
            admitted, booting = ev.get("instance admitted"), ev.get("booting instance")
            marks = [
                ("RunInstances call → NC admits the instance", launch.wall_start, admitted),
                ("NC admits → QEMU starts (cache copy, overlay, tap)", admitted, booting),
                ("QEMU starts → READY seen in GetConsoleOutput", booting,
                 launch.wall_start + launch.to_ready),
            ]  # fmt: skip
            for what, t0, t1 in marks:
                if t0 is not None and t1 is not None:
                    phases.setdefault(what, []).append(t1 - t0)
        report.boot[label] = bare_times
        report.boot["eucalypt: RunInstances → state running (DescribeInstances)"] = running
        report.boot["eucalypt: RunInstances → READY in GetConsoleOutput"] = ready
        for what, values in phases.items():
            report.boot[f"eucalypt, of which: {what}"] = values
    finally:
        teardown_boot_cloud(config)


