#!/usr/bin/env python3
"""eucalypt's EC2 side against its floor and a peer, all on 127.0.0.1, in one run.

1. Boot latency on a cached image: a bare ``qemu-system-x86_64`` boot of the test guest
   image (kernel + initramfs + qcow2 overlay on the ext4 root, the accelerator
   ``detect_accel`` picks, user-mode network restricted to a metadata forward to a tiny
   server on 127.0.0.1) timed from QEMU's start to ``EUCALYPT-GUEST-READY`` on its serial
   console -- the floor -- against eucalypt (``eucalypt up`` on a temp data dir, the
   one-host data plane in a namespace of our own) timed from the RunInstances call to
   state ``running`` and to the READY line in GetConsoleOutput. Needs root (namespaces,
   taps, iptables); without it this part is skipped (SYSTEM mode has no bootable network).
2. DescribeInstances calls/s with 1,000 and 10,000 instances: eucalypt (``eucalypt up``
   with sim-driver NCs) against moto_server holding the same number, full listing and
   filtered by instance-id, from 1 and 4 boto3 client threads; plus the servers' CPU per
   call and what populating them cost.

Prints every figure with the ratio and writes them to ``bench/ec2/RESULTS.md``.

Usage: .venv/bin/python bench/ec2/run.py [--quick] [--only boot|describe] [--out FILE]
Every wait and every measurement has a time budget, so a run is bounded
(``--quick``: one boot each, 1,000 instances, short cells: a few minutes).
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import os
import platform
import random
import secrets
import shlex
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
sys.path.insert(0, str(ROOT / "src"))
# The clouds' processes (`python -m eucalypt ...`) run this tree's eucalypt too, not one
# the venv may have installed from another checkout.
os.environ["PYTHONPATH"] = os.pathsep.join(
    [str(ROOT / "src"), *filter(None, os.environ.get("PYTHONPATH", "").split(os.pathsep))]
)

import boto3  # noqa: E402
import httpx  # noqa: E402
from botocore.config import Config as BotoConfig  # noqa: E402
from botocore.exceptions import ClientError  # noqa: E402

from eucalypt.config import CcConfig, ClcConfig, Config, NcConfig, WalrusConfig  # noqa: E402

EUCALYPT = [sys.executable, "-m", "eucalypt"]
READY = "EUCALYPT-GUEST-READY"
SIM_IMAGE = "emi-0000000000bench01"
#: Instances per RunInstances call when populating either server; each call's instances
#: are tagged ``batch=b<n>`` (the tag filter picks one batch).
BATCH = 200
#: The one-host data plane of the boot cloud: names and addresses of our own, apart from
#: a developer's cloud (eucalypt0, 169.254.123.0/30, 198.51.100.0/26) and the e2e
#: tests' (169.254.124.0/30, 198.51.100.192/28).
LINK_NET = "169.254.125.0/30"
PUBLIC_POOL = "198.51.100.160/28"


@dataclass(frozen=True)
class Plan:
    repeats: int  # measured launches (and bare boots)
    sizes: tuple[int, ...]  # instances held while DescribeInstances is measured
    threads: tuple[int, ...]
    cell_seconds: float  # budget per (size, query, threads) cell; each thread calls once at least
    sim_nodes: int  # sim NCs of the describe cloud (sizes[-1] / sim_nodes instances each)


QUICK = Plan(repeats=1, sizes=(1000,), threads=(1, 4), cell_seconds=4, sim_nodes=2)
FULL = Plan(repeats=3, sizes=(1000, 10_000), threads=(1, 4), cell_seconds=15, sim_nodes=5)


# --------------------------------------------------------------------------- small helpers


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def cpu_seconds(pid: int) -> float:
    """User + system CPU of process ``pid`` (all its threads)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def wait_for(what: str, check: Callable[[], Any], timeout: float, every: float = 0.5) -> Any:
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(every)
    raise TimeoutError(f"{what}: not within {timeout:.0f} s (last: {last!r:.200})")


def say(msg: str) -> None:
    print(msg, flush=True)


def fmt(v: float | None, unit: str = "") -> str:
    if v is None:
        return "-"
    text = f"{v:,.0f}" if abs(v) >= 100 else f"{v:,.1f}" if abs(v) >= 10 else f"{v:,.2f}"
    return text + unit


def ec2_client(url: str, region: str, key: str, secret: str) -> Any:
    return boto3.client(
        "ec2",
        endpoint_url=url,
        region_name=region,
        aws_access_key_id=key,
        aws_secret_access_key=secret,
        config=BotoConfig(
            retries={"max_attempts": 1},
            read_timeout=900,
            connect_timeout=10,
            max_pool_connections=16,
        ),
    )


@dataclass
class Report:
    """Everything measured, for the console and RESULTS.md."""

    boot: dict[str, list[float]] = field(default_factory=dict)
    boot_notes: list[str] = field(default_factory=list)
    boot_skipped: str | None = None
    # (instances, query, threads) -> server -> (calls/s, server CPU ms per call, calls)
    describe: dict[tuple[int, str, int], dict[str, tuple[float, float, int]]] = field(
        default_factory=dict
    )
    # free-form (label, server, value, unit)
    extra: list[tuple[str, str, float | None, str]] = field(default_factory=list)
    facts: dict[str, str] = field(default_factory=dict)
    # (when, load averages over 1, 5 and 15 minutes as `uptime` shows them)
    loads: list[tuple[str, str]] = field(default_factory=list)

    def note_load(self, when: str) -> None:
        """Record the machine's load (other engineers' work shares its cores)."""
        load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
        say(f"  [load average {load}: {when}]")
        self.loads.append((when, load))

    def add_extra(self, label: str, server: str, value: float | None, unit: str) -> None:
        say(f"  {server:9s} {label:52s} {fmt(value):>10s} {unit}")
        self.extra.append((label, server, value, unit))


# --------------------------------------------------------------------------- eucalypt clouds


def eucalypt_up(config: Config, *args: str, timeout: float = 600) -> float:
    """`eucalypt up` on ``config`` (saved in its data dir); seconds it took."""
    started = time.monotonic()
    up = subprocess.run(
        [*EUCALYPT, "up", "--data-dir", str(config.data_dir), "--timeout", "180", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if up.returncode != 0:
        logs = "\n".join(
            f"--- {p.name}\n{p.read_text(errors='replace')[-2000:]}"
            for p in sorted(config.logs_dir.glob("*.log"))
        )
        raise RuntimeError(f"eucalypt up failed:\n{up.stdout[-3000:]}\n{up.stderr[-3000:]}\n{logs}")
    return time.monotonic() - started


def eucalypt_down(config: Config) -> None:
    subprocess.run(
        [*EUCALYPT, "down", "--config", str(config.config_path)],
        capture_output=True,
        text=True,
        timeout=180,
    )


def eucalypt_env(config: Config) -> dict[str, str]:
    out = subprocess.run(
        [*EUCALYPT, "env", "--config", str(config.config_path)],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout
    env: dict[str, str] = {}
    for line in out.splitlines():
        key, _, value = line.removeprefix("export ").partition("=")
        env[key] = shlex.split(value)[0] if value else ""
    return env


def component_pid(config: Config, component: str) -> int:
    return int((config.run_dir / f"{component}.pid").read_text().split()[0])


# --------------------------------------------------------------------------- 1. boot latency


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


# --------------------------------------------------------------------------- 2. DescribeInstances


@dataclass
class Server:
    name: str
    ec2: Callable[[], Any]  # a new client (one per thread)
    pid: int  # the process serving EC2 requests
    background: list[int]  # every process of the server (for its idle CPU)
    ids: list[str] = field(default_factory=list)
    batches: list[str] = field(default_factory=list)  # tag values, one per reservation


def measure_rate(
    server: Server, call: Callable[[Any], Any], threads: int, budget: float, idle_rate: float
) -> tuple[float, float, int]:
    """(calls/s, server CPU ms per call, calls): ``threads`` clients calling for ``budget``
    seconds (each at least once). The CPU is the serving process's, less what it spends
    idle (``idle_rate``, CPU seconds per second: eucalypt's CLC syncs with its CCs)."""
    clients = [server.ec2() for _ in range(threads)]
    counts = [0] * threads
    errors: list[BaseException] = []
    start_cpu = cpu_seconds(server.pid)
    started = time.monotonic()
    deadline = started + budget

    def worker(i: int) -> None:
        try:
            while counts[i] == 0 or time.monotonic() < deadline:
                call(clients[i])
                counts[i] += 1
        except BaseException as exc:  # reported below
            errors.append(exc)

    pool = [threading.Thread(target=worker, args=(i,)) for i in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    wall = time.monotonic() - started
    if errors:
        raise errors[0]
    calls = sum(counts)
    cpu = max(cpu_seconds(server.pid) - start_cpu - idle_rate * wall, 0.0)
    return calls / wall, cpu * 1000 / calls, calls


def idle_rate(pids: list[int], seconds: float = 8.0) -> float:
    """CPU seconds per second that processes ``pids`` use while nobody calls them."""
    before = sum(cpu_seconds(p) for p in pids)
    time.sleep(seconds)
    return (sum(cpu_seconds(p) for p in pids) - before) / seconds


def parse_floor(server: Server) -> tuple[float, float]:
    """(MB, seconds): the size of one full-listing response and the time boto3 takes to
    parse it, with no network and no server -- the floor of a full-listing call."""
    import botocore.parsers

    client = server.ec2()
    captured: dict[str, Any] = {}

    def grab(response_dict: dict[str, Any], **_: Any) -> None:
        captured["response"] = response_dict

    client.meta.events.register("before-parse.ec2.DescribeInstances", grab)
    client.describe_instances()
    response = captured["response"]
    shape = client.meta.service_model.operation_model("DescribeInstances").output_shape
    parser = botocore.parsers.create_parser("ec2")
    best = float("inf")
    for _ in range(2):
        started = time.perf_counter()
        parser.parse(response, shape)
        best = min(best, time.perf_counter() - started)
    return len(response["body"]) / 1e6, best


def full_listing(client: Any) -> tuple[int, int]:
    """(instances, calls): the whole listing as a real client gets it -- DescribeInstances
    without MaxResults, then following NextToken while the server returns one (boto3's
    paginator, as the AWS CLI does; moto pages by 100 reservations unasked)."""
    pages = list(client.get_paginator("describe_instances").paginate())
    return sum(len(r["Instances"]) for p in pages for r in p["Reservations"]), len(pages)


def _count(reply: dict[str, Any]) -> int:
    return sum(len(r["Instances"]) for r in reply["Reservations"])


def describe_cells(server: Server, size: int, plan: Plan, report: Report) -> None:
    client = server.ec2()
    listed, calls = full_listing(client)
    report.add_extra(
        f"full listing (holding {size:,}): instances / DescribeInstances calls",
        server.name,
        listed,
        f"instances / {calls} call{'s' if calls > 1 else ''}",
    )
    if listed != size:
        raise RuntimeError(f"{server.name} lists {listed} instances, not {size}")
    # The queries below answer what they should (a batch is one reservation).
    one = server.ids[len(server.ids) // 2]
    batch = server.batches[-1]
    checks = {
        "filter instance-id": _count(
            client.describe_instances(Filters=[{"Name": "instance-id", "Values": [one]}])
        ),
        "filter tag": _count(
            client.describe_instances(Filters=[{"Name": "tag:batch", "Values": [batch]}])
        ),
        "InstanceIds": _count(client.describe_instances(InstanceIds=[one])),
    }
    expected = {"filter instance-id": 1, "filter tag": BATCH, "InstanceIds": 1}
    if checks != expected:
        raise RuntimeError(f"{server.name}: queries answer {checks}, not {expected}")
    idle_all = idle_rate(server.background)
    idle_server = idle_rate([server.pid]) if server.background != [server.pid] else idle_all
    report.add_extra(
        f"idle CPU, holding {size:,} (all its processes)",
        server.name,
        100 * idle_all,
        "% of a core",
    )
    if server.background != [server.pid]:
        report.add_extra(
            f"idle CPU, holding {size:,} (the CLC: sync with the CC)",
            server.name,
            100 * idle_server,
            "% of a core",
        )
    mb, parse = parse_floor(server)
    report.add_extra(f"full-listing response, {size:,} instances", server.name, mb, "MB")
    report.add_extra(
        f"boto3 parsing that response alone (no network), {size:,}", server.name, parse, "s"
    )
    pick = random.Random(size).choice
    queries: list[tuple[str, Callable[[Any], Any]]] = [
        ("full listing", full_listing),
        (
            "filter instance-id",
            lambda c: c.describe_instances(
                Filters=[{"Name": "instance-id", "Values": [pick(server.ids)]}]
            ),
        ),
        (
            f"filter tag ({BATCH} match)",
            lambda c: c.describe_instances(
                Filters=[{"Name": "tag:batch", "Values": [pick(server.batches)]}]
            ),
        ),
        ("InstanceIds=[one]", lambda c: c.describe_instances(InstanceIds=[pick(server.ids)])),
    ]
    for query, call in queries:
        for threads in plan.threads:
            rate, cpu_ms, calls = measure_rate(
                server, call, threads, plan.cell_seconds, idle_server
            )
            report.describe.setdefault((size, query, threads), {})[server.name] = (
                rate,
                cpu_ms,
                calls,
            )
            say(
                f"  {server.name:9s} {size:>6,} {query:24s} x{threads}: {fmt(rate):>8s} calls/s"
                f"  server CPU {fmt(cpu_ms):>7s} ms/call  ({calls} calls)"
            )


def _sim_nc_config(base: Config, data_dir: Path, port: int, per_node: int, shm: Path) -> Config:
    config = base.model_copy(deep=True)
    config.data_dir = data_dir
    config.nc = NcConfig(
        port=port,
        hypervisor="sim",
        sim_boot_seconds=0.0,
        sim_cores=per_node,  # t1.micro: 1 core, 256 MiB, 1 GiB
        sim_memory_mib=per_node * 256,
        sim_disk_gib=per_node,
        reserve_memory_mib=0,
        # Records on tmpfs: a sim instance's durable record is not what is measured here.
        instances_dir=str(shm / f"nc-{port}" / "instances"),
        cache_dir=str(data_dir / "nc" / "cache"),
    )
    return config


@contextlib.contextmanager
def eucalypt_sim_cloud(workdir: Path, plan: Plan, report: Report) -> Iterator[Server]:
    """`eucalypt up` with sim NCs (the first started by `up`, the others by us), a tenant
    account and a registered (never fetched) image."""
    from eucalypt.clc import identity
    from eucalypt.clc.app import open_database
    from eucalypt.clc.models import Image
    from eucalypt.cli.init import initialise

    data_dir = workdir / "sim-cloud"
    shm_root = Path("/dev/shm") if Path("/dev/shm").is_dir() else workdir
    shm = Path(tempfile.mkdtemp(prefix="eucalypt-bench-", dir=shm_root))
    per_node = -(-int(max(plan.sizes) * 1.1) // plan.sim_nodes)
    ports = [free_port() for _ in range(plan.sim_nodes)]
    config = Config(
        data_dir=data_dir,
        clc=ClcConfig(port=free_port()),
        walrus=WalrusConfig(port=free_port()),
        cc=CcConfig(port=free_port(), nodes=[f"http://127.0.0.1:{p}" for p in ports]),
    )
    config.nc = _sim_nc_config(config, data_dir, ports[0], per_node, shm).nc
    config.save()
    report.facts["sim cloud"] = (
        f"{plan.sim_nodes} sim NCs x {per_node:,} t1.micro; CLC sync every "
        f"{config.clc.sync_seconds:g} s, CC polls every {config.cc.poll_seconds:g} s; SQLite"
    )
    init = initialise(data_dir)
    db = open_database(config)
    try:
        tenant = db.run_sync(
            lambda s: identity.create_access_key(
                s, identity.get_user(s, identity.create_account(s, "bench"), "admin")
            )
        )
        db.run_sync(
            lambda s: s.add(
                Image(
                    id=SIM_IMAGE,
                    account_id=init.admin.account_id,
                    name="sim-image",
                    image_type="machine",
                    state="available",
                    location="images/sim.img",
                    is_public=True,
                    sha256="0" * 64,
                    size=1,
                )
            )
        )
    finally:
        db.dispose()
    extra: list[subprocess.Popen[bytes]] = []
    try:
        for i, port in enumerate(ports[1:], 1):
            nc_dir = workdir / f"sim-nc{i}"
            shutil.copytree(config.keys_dir, nc_dir / "keys")
            nc_config = _sim_nc_config(config, nc_dir, port, per_node, shm)
            nc_config.save()
            with (nc_dir / "nc.log").open("wb") as log:
                extra.append(
                    subprocess.Popen(
                        [*EUCALYPT, "serve", "nc", "--config", str(nc_config.config_path)],
                        stdin=subprocess.DEVNULL,
                        stdout=log,
                        stderr=log,
                    )
                )
        took = eucalypt_up(config, "--no-test-image")
        for port in ports[1:]:
            wait_for(f"sim NC :{port}", lambda p=port: _healthy(p), 60, 0.3)  # type: ignore[misc]
        say(f"  `eucalypt up` with {plan.sim_nodes} sim NCs: {took:.1f} s")
        pids = [component_pid(config, c) for c in ("clc", "cc", "nc")] + [p.pid for p in extra]

        def client() -> Any:
            return ec2_client(config.clc.url, config.region, tenant.access_key, tenant.secret_key)

        yield Server("eucalypt", client, component_pid(config, "clc"), pids)
    finally:
        eucalypt_down(config)
        for proc in extra:
            proc.terminate()
        for proc in extra:
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        shutil.rmtree(shm, ignore_errors=True)


def _healthy(port: int) -> bool:
    try:
        return httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


@contextlib.contextmanager
def moto_server(workdir: Path) -> Iterator[Server]:
    port = free_port()
    moto_bin = Path(sys.executable).with_name("moto_server")
    log = (workdir / "moto.log").open("wb")
    proc = subprocess.Popen(
        [str(moto_bin), "-H", "127.0.0.1", "-p", str(port)],
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=log,
        env={**os.environ, "MOTO_ALLOW_NONEXISTENT_REGION": "true"},
    )
    try:
        wait_for("moto_server", lambda: proc.poll() is not None or _answers(port), 60, 0.2)
        if proc.poll() is not None:
            raise RuntimeError(f"moto_server exited with {proc.returncode}")

        def client() -> Any:
            return ec2_client(f"http://127.0.0.1:{port}", "us-east-1", "AKIDBENCH", "secret")

        yield Server("moto", client, proc.pid, [proc.pid])
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


def _answers(port: int) -> bool:
    try:
        httpx.get(f"http://127.0.0.1:{port}/", timeout=1)
        return True
    except httpx.HTTPError:
        return False


def populate(server: Server, image_id: str, target: int, batch: int, report: Report) -> None:
    """RunInstances in batches until ``server.ids`` holds ``target`` instances, then wait
    until none is pending. Each batch is a reservation tagged ``batch=b<n>``."""
    ec2 = server.ec2()
    need = target - len(server.ids)
    started = time.monotonic()
    failures = 0
    while len(server.ids) < target:
        count = min(batch, target - len(server.ids))
        try:
            reply = ec2.run_instances(
                ImageId=image_id,
                MinCount=count,
                MaxCount=count,
                InstanceType="t1.micro",
                TagSpecifications=[
                    {
                        "ResourceType": "instance",
                        "Tags": [{"Key": "batch", "Value": f"b{len(server.batches)}"}],
                    }
                ],
            )
        except ClientError as exc:
            # eucalypt: the CC's capacity is known after its first poll of the NCs, and a
            # slow CC answer (a loaded machine) fails a batch; try again, a bounded number
            # of times.
            failures += 1
            if failures > 30:
                raise
            say(f"  {server.name}: RunInstances x{count} failed ({exc}); again")
            time.sleep(2)
            continue
        server.ids += [i["InstanceId"] for i in reply["Instances"]]
        server.batches.append(f"b{len(server.batches)}")
    took = time.monotonic() - started
    report.add_extra(
        f"RunInstances, {need:,} more in batches of {batch} (to {target:,})",
        server.name,
        need / took,
        "instances/s",
    )
    if failures:
        report.add_extra(
            f"RunInstances batches failed and retried (to {target:,})",
            server.name,
            failures,
            "batches",
        )
    wait_for(
        f"{server.name}: no instance pending",
        lambda: (
            not ec2.describe_instances(
                Filters=[{"Name": "instance-state-name", "Values": ["pending"]}]
            )["Reservations"]
        ),
        300,
        1.0,
    )


def describe_bench(workdir: Path, plan: Plan, report: Report, moto: bool = True) -> None:
    say("eucalypt (sim NCs):")
    with eucalypt_sim_cloud(workdir, plan, report) as server:
        need = max(plan.sizes)
        wait_for("the CC to know its nodes' capacity", lambda: _capacity(server, need), 120, 1.0)
        for size in plan.sizes:
            populate(server, SIM_IMAGE, size, BATCH, report)
            report.note_load(f"eucalypt DescribeInstances cells, {size:,} instances")
            describe_cells(server, size, plan, report)
        report.add_extra("CLC RSS after the run", "eucalypt", rss_mb(server.pid), "MB")
    if not moto:
        return
    say("moto_server:")
    with moto_server(workdir) as server:
        ec2 = server.ec2()
        image_id = ec2.describe_images(Owners=["amazon"])["Images"][0]["ImageId"]
        for size in plan.sizes:
            populate(server, image_id, size, BATCH, report)
            report.note_load(f"moto DescribeInstances cells, {size:,} instances")
            describe_cells(server, size, plan, report)
        report.add_extra("moto_server RSS after the run", "moto", rss_mb(server.pid), "MB")


def _capacity(server: Server, need: int) -> bool:
    """Whether the cloud has room for ``need`` more t1.micro (DescribeAvailabilityZones
    verbose: ``|- t1.micro`` with State ``free / max ...``)."""
    zones = server.ec2().describe_availability_zones(ZoneNames=["verbose"])["AvailabilityZones"]
    for zone in zones:
        if zone["ZoneName"] == "|- t1.micro":
            free = zone.get("State", "").split()[:1]
            return bool(free) and free[0].isdigit() and int(free[0]) >= need
    return False


# --------------------------------------------------------------------------- report


NOTES_BOOT = [
    "- The floor is QEMU alone: the same kernel, initramfs, kernel command line "
    "(the NC's), qcow2 overlay on the same ext4 root, 1 vCPU, 256 MiB, the same "
    "accelerator, timed from starting the process to the READY line in the serial log "
    "(read every 20 ms). Its guest gets DHCP from QEMU's user-mode network and reads "
    "instance-id from a tiny metadata server on 127.0.0.1 (IMDSv2), as eucalypt's guest "
    "does from dnsmasq and the CC's metadata proxy.",
    "- eucalypt is timed from the RunInstances call (boto3) to the first DescribeInstances "
    "(polled every 0.1 s) saying `running`, and to the READY line in GetConsoleOutput "
    "(polled every 0.2 s). In between: the CLC's admission (SRS) and records, the "
    "security group's network pushed to the CC, CC scheduling, the NC copying the cached "
    "image, making the overlay and the tap, QEMU (same flags, daemonized, QMP), and state "
    "flowing back up by polling: the NC is asked by the CC every `cc.poll_seconds`, the "
    "CC by the CLC every `clc.sync_seconds`, so `running` lags the VM start by up to their "
    "sum. The guest's DHCP server is the CC's dnsmasq in the namespace and its metadata "
    "goes through the CC's proxy to the CLC.",
    "- Each measured launch is a second (or later) launch of the registered test image: "
    "the image is in the NC's cache. The previous instance is terminated first.",
]
NOTES_DESCRIBE = [
    "- Both servers hold the same number of instances, launched with RunInstances "
    f"(MinCount = MaxCount = {BATCH}, each call's instances tagged `batch=b<n>`: a "
    "reservation per call) by the same boto3 client; eucalypt's run on sim-driver NCs "
    "(no VMs; the sim NCs keep their instance records on tmpfs), every instance `running`.",
    "- A call is a complete boto3 `describe_instances` (SigV4 signing, HTTP on 127.0.0.1, "
    "XML parsing into dicts). A `full listing` is what a real client does to list "
    "everything: DescribeInstances without MaxResults, following NextToken while one comes "
    "back (boto3's paginator, as the AWS CLI); both servers answer it in one call here "
    "(moto pages by 100 reservations unasked, and holds at most "
    f"{10_000 // BATCH} reservations), and the listing is checked to hold every instance. "
    "For a full listing the client's parsing alone takes the time "
    "shown under 'around the measurements', which bounds the calls/s any server could reach "
    "here. `CPU ms/call` is the CPU the serving process used per call (eucalypt: the CLC, "
    "less its idle rate -- the instance sync with the CC, measured just before -- times the "
    "cell's duration; moto_server: its one process, idle at 0).",
    "- `filter instance-id` is `Filters=[{Name: instance-id, Values: [one id]}]`, "
    f"`filter tag ({BATCH} match)` is `Filters=[{{Name: tag:batch, Values: [b<n>]}}]` "
    f"(one reservation of {BATCH} instances), `InstanceIds=[one]` names one instance; a "
    "random instance or batch each call. What each query answers is checked first.",
    "- eucalypt authenticates every request (SigV4 against its credential store), keeps "
    "instances in SQLite and renders the EC2 XML from botocore's model; moto_server checks "
    "no signature and keeps everything in memory. moto's instances are EC2-VPC ones: each "
    "carries a network interface, an EBS root device, metadata options and more, so its "
    "full listing is about 3x the bytes of eucalypt's (EC2-Classic-style, as the paper's "
    "cloud) and costs the client as much more to parse.",
    "- The client and the servers share the machine's 2 cores (and other work may be "
    "running: see the load averages above), so figures move between runs; each cell is one "
    "run of its time budget (each client thread completes one call at least), the boot "
    "figures are medians of the repeats, the bare and eucalypt boots alternating. The "
    "eucalypt cells run first, then moto's (one server at a time: eucalypt's idle sync "
    "would otherwise weigh on moto's figures).",
]


def median(values: list[float]) -> float:
    return statistics.median(values)


def boot_rows(report: Report) -> list[tuple[str, str, str]]:
    rows = [
        (label, fmt(median(v), " s"), ", ".join(f"{x:.2f}" for x in v))
        for label, v in report.boot.items()
        if v
    ]
    bare = report.boot.get("bare QEMU: process start → READY on the serial console")
    ready = report.boot.get("eucalypt: RunInstances → READY in GetConsoleOutput")
    running = report.boot.get("eucalypt: RunInstances → state running (DescribeInstances)")
    if bare and ready:
        rows.append(
            ("ratio eucalypt → READY / bare → READY", f"{median(ready) / median(bare):.2f}x", "")
        )
    if bare and running:
        rows.append(
            (
                "ratio eucalypt → running / bare → READY",
                f"{median(running) / median(bare):.2f}x",
                "",
            )
        )
    return rows


def describe_rows(report: Report) -> list[list[str]]:
    rows = []
    for (size, query, threads), by in report.describe.items():
        e, m = by.get("eucalypt"), by.get("moto")
        ratio = f"{e[0] / m[0]:.2f}x" if e and m and m[0] else "-"
        rows.append(
            [
                f"{size:,}",
                query,
                str(threads),
                fmt(e[0]) if e else "-",
                fmt(m[0]) if m else "-",
                ratio,
                fmt(e[1]) if e else "-",
                fmt(m[1]) if m else "-",
            ]
        )
    return rows


def write_report(path: Path, report: Report, plan_name: str, plan: Plan, elapsed: float) -> None:
    facts = ", ".join(f"{k}: {v}" for k, v in report.facts.items())
    lines = [
        "# EC2 benchmark: eucalypt vs bare QEMU and moto_server",
        "",
        f"Generated by `bench/ec2/run.py{' --quick' if plan_name == 'quick' else ''}` on "
        f"{datetime.now(UTC):%Y-%m-%d %H:%M UTC} in {elapsed:.0f} s "
        f"({os.cpu_count()} cores, Python {platform.python_version()}, "
        f"{platform.system()} {platform.release()}). {facts}.",
        "",
        "Load average (1, 5, 15 min; the 2 cores are shared with other work): "
        + "; ".join(f"{when}: {load}" for when, load in report.loads)
        + ".",
        "",
    ]
    if report.boot:
        lines += [f"## Boot latency on a cached image (median of {plan.repeats})", ""]
        lines += ["| measure | median | runs (s) |", "|---|---:|---|"]
        lines += [f"| {a} | {b} | {c} |" for a, b, c in boot_rows(report)]
        if report.boot_skipped:
            lines += ["", f"eucalypt part skipped: {report.boot_skipped}."]
        lines += [f"- {n}" for n in report.boot_notes]
        lines += ["", *NOTES_BOOT, ""]
    if report.describe:
        lines += [
            "## DescribeInstances: eucalypt vs moto_server",
            "",
            "Calls per second (higher is better) and the serving process's CPU per call "
            "(lower is better), from boto3 in the same machine.",
            "",
            "| instances | query | client threads | eucalypt calls/s | moto calls/s | "
            "eucalypt/moto | eucalypt CPU ms/call | moto CPU ms/call |",
            "|---:|---|---:|---:|---:|---:|---:|---:|",
        ]
        lines += ["| " + " | ".join(r) + " |" for r in describe_rows(report)]
        lines += [""]
    if report.extra:
        lines += [
            "## Setting up, and around the measurements",
            "",
            "| what | server | value |",
            "|---|---|---:|",
        ]
        lines += [
            f"| {label} | {server} | {fmt(v)} {unit} |" for label, server, v, unit in report.extra
        ]
        lines += [""]
    if report.describe:
        lines += ["## What is being compared", "", *NOTES_DESCRIBE, ""]
    path.write_text("\n".join(lines))


def print_summary(report: Report) -> None:
    if report.boot:
        say("\nboot latency (median):")
        for a, b, _ in boot_rows(report):
            say(f"  {a:62s} {b:>8s}")
    if report.describe:
        say(
            f"\n{'instances':>9s} {'query':24s} {'thr':>3s} {'eucalypt':>9s} {'moto':>9s} "
            f"{'ratio':>7s} {'euca ms':>8s} {'moto ms':>8s}  (calls/s; server CPU per call)"
        )
        for r in describe_rows(report):
            say(
                f"{r[0]:>9s} {r[1]:24s} {r[2]:>3s} {r[3]:>9s} {r[4]:>9s} {r[5]:>7s} "
                f"{r[6]:>8s} {r[7]:>8s}"
            )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=(__doc__ or "").split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="one boot each, 1,000 instances, 4 s cells (a few minutes)",
    )
    parser.add_argument("--only", choices=["boot", "describe"], help="run one of the two parts")
    parser.add_argument(
        "--no-moto",
        action="store_true",
        help="DescribeInstances: eucalypt only (to compare two versions of eucalypt)",
    )
    parser.add_argument(
        "--repeats",
        type=int,
        default=None,
        help="measured boots per side (default 3, --quick 1); medians reported",
    )
    parser.add_argument(
        "--sizes",
        type=lambda s: tuple(int(x) for x in s.split(",")),
        default=None,
        help="instance counts for DescribeInstances (default 1000,10000; --quick 1000)",
    )
    parser.add_argument(
        "--poll-seconds",
        type=float,
        default=None,
        help="boot cloud: CLC sync and CC poll interval "
        "(default: eucalypt's defaults, 2 s and 5 s)",
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=HERE / "RESULTS.md",
        help="markdown report (default: bench/ec2/RESULTS.md)",
    )
    parser.add_argument(
        "--workdir",
        type=Path,
        default=None,
        help="where the clouds keep their data (default: a temp dir)",
    )
    args = parser.parse_args(argv)
    plan, plan_name = (QUICK, "quick") if args.quick else (FULL, "full")
    if args.repeats is not None:
        plan = dataclasses.replace(plan, repeats=max(1, args.repeats))
    if args.sizes:
        plan = dataclasses.replace(plan, sizes=tuple(sorted(args.sizes)))
    started = time.monotonic()
    report = Report()
    report.note_load("start")
    with contextlib.ExitStack() as stack:
        workdir = args.workdir or Path(
            stack.enter_context(tempfile.TemporaryDirectory(prefix="ec2bench-", dir="/var/tmp"))
        )
        workdir.mkdir(parents=True, exist_ok=True)
        if args.only in (None, "boot"):
            boot_bench(workdir, plan.repeats, args.poll_seconds, report)
            report.note_load("boot latency done")
        if args.only in (None, "describe"):
            describe_bench(workdir, plan, report, moto=not args.no_moto)
    elapsed = time.monotonic() - started
    report.note_load("end")
    write_report(args.out, report, plan_name, plan, elapsed)
    print_summary(report)
    say(f"\nwrote {args.out} ({elapsed:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
