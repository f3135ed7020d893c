"""MANAGED mode with real guest VMs on two nodes, behind the real CC app.

The test builds its own cluster out of network namespaces::

    outside ── eth0 ═ pub0 ── CC host ── ul0 (bridge) ═ eth0 ── node 1
    203.0.113.2      203.0.113.1/24     192.0.2.1/24  ╚═ eth0 ── node 2
                                                       192.0.2.11, .12

and runs the real services: the CC app (``eucalypt.cc.app.create_app``; its
data plane in the CC host's namespace, VXLAN to the nodes' underlay addresses
through ``cc.node_underlay``) and two NC apps (qemu; taps, bridges and QEMU in
their node's namespace). The three HTTP servers listen on 127.0.0.1 in the
test's own namespace, as do the image server (the test guest image, as Walrus
would serve it) and a stand-in for the CLC's metadata service that answers
only requests the CC's proxy signed (each guest's SSH key comes from it).

Groups, rules and addresses go to the CC as the CLC pushes them (CcClient:
EnsureNetwork, SetIngressRules, AssignAddress); instances are launched with
RunInstances (round-robin placement: one node each for sg-a's two instances).
The test then logs into the guests with ``ssh`` from the CC host (the router
reaches every network; its own connections are not forwarded traffic) and runs
busybox ``ping``/``wget`` in them to see what reaches what:

* every guest got its address, and the VXLAN MTU, from the CC's dnsmasq and its
  SSH key through the CC's metadata proxy;
* sg-a's instances on node 1 and node 2 are one LAN (VXLAN between the nodes),
  full-size packets included;
* sg-b's instance is out of sg-a's reach (and sg-a out of sg-b's) until sg-b
  allows tcp/8080 from sg-a: then exactly that port, not 8081, not ping, and
  not the other way round; revoking the rule cuts it on the running guests;
* a public address brings the outside host to sg-a's instance (ssh, and a bulk
  transfer through the CC's DNAT and the VXLAN), only on the port sg-a allows,
  the instance goes out with it (SNAT), and it stops when disassociated.

Everything is torn down after: the guests are terminated (their QEMUs by PID
whatever happens), the services stopped, the namespaces deleted. No packet
leaves the namespaces the test made (and 127.0.0.1). Timings are printed,
never asserted: three TCG guests on a loaded machine are slow.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import TypeVar

import pytest
import uvicorn
from fastapi import FastAPI

from eucalypt.auth import HttpRequest, authenticate
from eucalypt.auth.credentials import StaticCredentialStore
from eucalypt.cc.api import (
    CcClient,
    ClusterInstance,
    InstanceNetworkRequest,
    LaunchResult,
    LaunchSpec,
    RunInstancesRequest,
)
from eucalypt.cc.app import create_app as create_cc
from eucalypt.cc.netapi import (
    AssignAddressRequest,
    EnsureNetworkRequest,
    IngressRule,
    SetIngressRulesRequest,
)
from eucalypt.cc.network.managed import VXLAN_MTU
from eucalypt.config import CcConfig, Config, NcConfig
from eucalypt.nc.api import BootImages, InstanceState
from eucalypt.nc.app import create_app as create_nc
from eucalypt.net.metadata import INSTANCE_ID_HEADER, INSTANCE_IP_HEADER
from eucalypt.rpc import ComponentKeys
from tests.nc.conftest import ImageServer
from tests.nc.test_qemu_vm import (  # noqa: F401  (fixtures)
    READY,
    VM,
    alive,
    guest,
    nc_cache_dir,
    new_id,
    qemu_pids,
    vm_reaper,
    walrus,
)
from tests.net.helpers import Lab, needs_root
from tests.support.servers import free_port

S = InstanceState
T = TypeVar("T")

TOOLS = ("qemu-system-x86_64", "qemu-img", "mke2fs", "ssh", "ssh-keygen")

pytestmark = [
    pytest.mark.slow,
    pytest.mark.netns,
    needs_root,
    pytest.mark.skipif(
        any(shutil.which(t) is None for t in TOOLS), reason=f"needs {', '.join(TOOLS)}"
    ),
    pytest.mark.timeout(2400),
]

OWNER = "000000000001"
UNDERLAY = "192.0.2"  # TEST-NET-1: the CC .1, node i .1i
PUBLIC = "203.0.113"  # TEST-NET-3: the CC's pub0 .1, the outside host .2, the pool
POOL = f"{PUBLIC}.10-{PUBLIC}.12"
PUBLIC_IP = f"{PUBLIC}.10"
OUTSIDE_IP = f"{PUBLIC}.2"
BOOT_TIMEOUT = 1200.0  # three TCG guests booting at once on a loaded 2-core machine
SSH_ERROR = 255
_READY_RE = re.compile(rf"^{READY} instance-id=(\S+) ip=(\S+)", re.MULTILINE)


# --------------------------------------------------------------------------- stand-ins


class MetadataStandIn:
    """The CLC's metadata service as far as the test guest needs it (IMDSv1), on 127.0.0.1.

    Like the real one it answers only requests the CC's proxy signed with the CC's
    component key (``principal``: the NC's, for SYSTEM mode), naming the instance in a
    signed header: instance-id (that
    header) and public-keys/0/openssh-key (the test's key); anything else 404,
    PUT (IMDSv2 tokens) 405. ``seen`` records (instance id, instance ip) per answer.
    """

    def __init__(
        self, cc_store: StaticCredentialStore, public_key: str, principal: str = "component:cc"
    ) -> None:
        self.seen: list[tuple[str, str]] = []
        self.refused = 0
        stand_in = self

        def verified(handler: BaseHTTPRequestHandler) -> str | None:
            path, _, query = handler.path.partition("?")
            req = HttpRequest.create("GET", path, query, handler.headers.items(), b"")
            try:
                result = asyncio.run(authenticate(req, cc_store, services=("eucalypt",)))
            except Exception:
                return None
            auth = handler.headers.get("authorization", "")
            signed = auth.partition("SignedHeaders=")[2].partition(",")[0].split(";")
            if result.credential.principal != principal:
                return None
            if INSTANCE_ID_HEADER.lower() not in signed:
                return None
            return handler.headers.get(INSTANCE_ID_HEADER)

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.0"

            def log_message(self, format: str, *args: object) -> None:
                pass

            def _send(self, code: int, body: bytes = b"") -> None:
                self.send_response(code)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_PUT(self) -> None:
                self._send(405)

            def do_GET(self) -> None:
                iid = verified(self)
                if iid is None:
                    stand_in.refused += 1
                    self._send(403)
                    return
                stand_in.seen.append((iid, self.headers.get(INSTANCE_IP_HEADER, "")))
                files = {
                    "/latest/meta-data/instance-id": iid,
                    "/latest/meta-data/public-keys/0/openssh-key": public_key,
                }
                body = files.get(self.path)
                self._send(404) if body is None else self._send(200, body.encode())

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self._thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self._thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@contextlib.contextmanager
def serve_in_thread(app: FastAPI, port: int) -> Iterator[str]:
    """Serve ``app`` on 127.0.0.1 in a thread, on a plain asyncio loop.

    Not uvloop (tests.support.servers' default): the CC and both NCs spawn commands
    at once, and uvloop loops in one process refuse to spawn concurrently ("Racing
    with another loop to spawn a process").
    """
    config = uvicorn.Config(
        app, host="127.0.0.1", port=port, log_config=None, lifespan="on", loop="asyncio"
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 60
        while not server.started:
            if time.monotonic() > deadline or not thread.is_alive():
                raise RuntimeError("test server did not start")
            time.sleep(0.05)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=60)


# --------------------------------------------------------------------------- the cluster


@dataclass
class Hosts:
    cc: str
    nodes: list[str]
    outside: str


async def build_hosts(lab: Lab) -> Hosts:
    """The CC host with its underlay bridge, two node hosts on it, the outside host."""
    cc = await lab.netns("cc")
    await lab.sh(cc, "ip", "link", "add", "ul0", "type", "bridge")
    await lab.sh(cc, "ip", "addr", "add", f"{UNDERLAY}.1/24", "dev", "ul0")
    await lab.sh(cc, "ip", "link", "set", "ul0", "up")
    nodes = []
    for i in (1, 2):
        node = await lab.netns(f"nc{i}")
        await lab.link(node, "eth0", cc, f"ulp{i}", addr_a=f"{UNDERLAY}.1{i}/24")
        await lab.sh(cc, "ip", "link", "set", f"ulp{i}", "master", "ul0")
        nodes.append(node)
    outside = await lab.netns("out")
    await lab.link(cc, "pub0", outside, "eth0", f"{PUBLIC}.1/24", f"{OUTSIDE_IP}/24")
    return Hosts(cc, nodes, outside)


@dataclass
class Guest:
    instance_id: str
    group: str
    node_url: str
    ip: str = ""


def _ssh_argv(netns: str, key: Path, host: str, command: str, connect: int) -> list[str]:
    argv = ["ip", "netns", "exec", netns, "ssh", "-F", "/dev/null", "-i", str(key)]
    argv += ["-o", "IdentitiesOnly=yes", "-o", "BatchMode=yes"]
    argv += ["-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null"]
    argv += ["-o", f"ConnectTimeout={connect}", "-o", "LogLevel=ERROR"]
    argv += ["-o", "ServerAliveInterval=10", "-o", "ServerAliveCountMax=6"]
    return [*argv, f"root@{host}", command]


def ssh(
    netns: str, key: Path, host: str, command: str, connect: int = 20
) -> subprocess.CompletedProcess[str]:
    argv = _ssh_argv(netns, key, host, command, connect)
    try:
        return subprocess.run(argv, capture_output=True, text=True, timeout=connect + 120)
    except subprocess.TimeoutExpired as exc:
        return subprocess.CompletedProcess(argv, SSH_ERROR, "", f"timed out: {exc}")


class Cloud:
    """The running cluster as the test drives it: CC calls, guests, probes."""

    def __init__(self, config: Config, hosts: Hosts, key: Path) -> None:
        self.config = config
        self.hosts = hosts
        self.key = key
        self.clc = ComponentKeys.load(config.keys_dir).credential("clc")

    # -- the CC, as the CLC calls it ------------------------------------------------
    def cc(self, fn: Callable[[CcClient], Awaitable[T]]) -> T:
        async def go() -> T:
            client = CcClient(self.config.cc.url, self.clc, region=self.config.region, timeout=120)
            try:
                return await fn(client)
            finally:
                await client.aclose()

        return asyncio.run(go())

    def ensure_network(self, group: str) -> None:
        req = EnsureNetworkRequest(group_id=group, owner_id=OWNER)
        self.cc(lambda c: c.ensure_network(req))

    def rules(self, group: str, rules: list[IngressRule]) -> None:
        req = SetIngressRulesRequest(group_id=group, rules=rules)
        self.cc(lambda c: c.set_ingress_rules(req))

    def run(self, launch: LaunchSpec) -> LaunchResult:
        req = RunInstancesRequest(instances=[launch])
        return self.cc(lambda c: c.run_instances(req)).results[0]

    def describe(self, instance_id: str) -> ClusterInstance:
        return self.cc(lambda c: c.describe_instances([instance_id])).instances[0]

    def console(self, instance_id: str) -> str:
        return self.cc(lambda c: c.get_console_output(instance_id)).output

    def state(self, instance_id: str) -> tuple[InstanceState, str]:
        found = self.describe(instance_id)
        return found.instance.state, found.instance.reason

    def wait_ready(self, guests: list[Guest], timeout: float = BOOT_TIMEOUT) -> dict[str, float]:
        """Until every guest printed its READY line: record its address; seconds taken."""
        t0 = time.monotonic()
        took: dict[str, float] = {}
        while len(took) < len(guests):
            for g in guests:
                if g.instance_id in took:
                    continue
                found = _READY_RE.findall(self.console(g.instance_id))
                if found:
                    iid, ip = found[-1]
                    assert iid == g.instance_id, f"{g.instance_id} says it is {iid}"
                    g.ip = ip
                    took[g.instance_id] = time.monotonic() - t0
                    continue
                state, reason = self.state(g.instance_id)
                assert state in (S.PENDING, S.RUNNING), f"{g.instance_id} {state}: {reason}"
            if time.monotonic() - t0 > timeout:
                late = [g.instance_id for g in guests if g.instance_id not in took]
                tails = {i: self.console(i)[-2000:] for i in late}
                raise AssertionError(f"no {READY} within {timeout:.0f}s from {late}: {tails}")
            time.sleep(2)
        return took

    # -- guests, through ssh from the CC host (its own traffic is not forwarded) ----
    def sh(self, g: Guest, command: str) -> subprocess.CompletedProcess[str]:
        """Run ``command`` in the guest; retried while ssh itself fails (255)."""
        out = None
        for _ in range(5):
            out = ssh(self.hosts.cc, self.key, g.ip, command)
            if out.returncode != SSH_ERROR:
                return out
            time.sleep(3)
        assert out is not None
        raise AssertionError(f"ssh to {g.instance_id} ({g.ip}) failed: {out.stderr}")

    def probe(self, g: Guest, command: str) -> tuple[int, str]:
        """Run ``command`` in the guest: (its exit status, its output). Wrapped, so a
        command killed by ``timeout`` is a status, not a lost ssh session."""
        out = self.sh(g, f'{command}; echo "rc=$?"')
        assert out.returncode == 0, (g.instance_id, command, out.returncode, out.stderr)
        body, _, rc = out.stdout.rstrip().rpartition("rc=")
        return int(rc), body.strip()

    def fetch(self, src: Guest, ip: str, port: int) -> str | None:
        """busybox wget http://ip:port/ in ``src``: the body, or None (no connection).

        ``timeout`` bounds a dropped SYN (Debian's busybox-static 1.35 wget segfaults
        with ``-T``)."""
        rc, body = self.probe(src, f"timeout 8 wget -q -O - http://{ip}:{port}/")
        return body if rc == 0 else None

    def ping(self, src: Guest, ip: str) -> bool:
        return self.probe(src, f"ping -c 1 -W 3 {ip} >/dev/null")[0] == 0

    def reaches(self, src: Guest, ip: str, port: int, body: str, tries: int = 5) -> bool:
        """A positive check: a few tries (the first packets over VXLAN may need ARP)."""
        for _ in range(tries):
            if self.fetch(src, ip, port) == body:
                return True
            time.sleep(2)
        return False

    def pings(self, src: Guest, ip: str, tries: int = 5) -> bool:
        return any(self.ping(src, ip) for _ in range(tries))

    def from_outside(self, host: str, command: str) -> subprocess.CompletedProcess[str]:
        return ssh(self.hosts.outside, self.key, host, command, connect=8)


BIG = 256 * 1024  # bytes of /big: many full-size packets


def serve(g: Guest) -> str:
    """Two busybox httpds in the guest: 8080 and 8081 answer ``<id>:<port>`` at / and
    ``BIG`` bytes at /big."""
    parts = []
    for port in (8080, 8081):
        root = f"/run/www{port}"
        parts.append(
            f"mkdir -p {root} && echo {g.instance_id}:{port} >{root}/index.html "
            f"&& dd if=/dev/zero of={root}/big bs=1024 count={BIG // 1024} 2>/dev/null "
            f"&& busybox httpd -p {port} -h {root}"
        )
    return " && ".join(parts)


def tcp_from(group: str, port: int) -> IngressRule:
    return IngressRule(protocol="tcp", from_port=port, to_port=port, source_group=group)


def kill_pid(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)


# --------------------------------------------------------------------------- the test


def test_vms_on_two_nodes_groups_rules_and_public_addresses(
    tmp_path: Path,
    walrus: tuple[ImageServer, BootImages],  # noqa: F811
    nc_cache_dir: Path,  # noqa: F811
    vm_reaper: list[Path],  # noqa: F811
) -> None:
    _, images = walrus
    lab = Lab()
    md: MetadataStandIn | None = None
    try:
        hosts = asyncio.run(build_hosts(lab))
        root = lab.dir / "cloud"  # lab.dir is 0755: dnsmasq (nobody) reads its files
        key = tmp_path / "id_ed25519"
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
        base = Config(data_dir=root)
        keys = ComponentKeys.generate(base.keys_dir)
        md = MetadataStandIn(keys.store(["cc"]), key.with_suffix(".pub").read_text())

        nc_configs = []
        for i, ns in enumerate(hosts.nodes, start=1):
            nc = NcConfig(
                port=free_port(),
                hypervisor="qemu",
                netns=ns,
                instances_dir=str(root / f"nc{i}" / "instances"),
                cache_dir=str(nc_cache_dir / f"node{i}"),  # one cache per NC
                monitor_seconds=1.0,
            )
            nc_configs.append(Config(data_dir=root, nc=nc))
            vm_reaper.append(Path(nc.instances_dir))
        urls = [c.nc.url for c in nc_configs]
        config = Config(
            data_dir=root,
            cc=CcConfig(
                port=free_port(),
                nodes=urls,
                scheduler="roundrobin",
                poll_seconds=1.0,
                network_mode="MANAGED",
                network_netns=hosts.cc,
                network_state_dir=str(lab.dir / "cc-net"),
                vxlan_local=f"{UNDERLAY}.1",
                node_underlay={u: f"{UNDERLAY}.1{i}" for i, u in enumerate(urls, start=1)},
                public_ips=[POOL],
                public_interface="pub0",
                metadata_upstream=md.url,
            ),
        )
        cloud = Cloud(config, hosts, key)
        n1, n2 = urls
        a1 = Guest(new_id(), "sg-a", n1)
        a2 = Guest(new_id(), "sg-a", n2)
        b1 = Guest(new_id(), "sg-b", n1)
        guests = [a1, a2, b1]

        with (
            serve_in_thread(create_nc(nc_configs[0]), nc_configs[0].nc.port),
            serve_in_thread(create_nc(nc_configs[1]), nc_configs[1].nc.port),
            serve_in_thread(create_cc(config), config.cc.port),
        ):
            try:
                _exercise(cloud, guests, images, md)
            finally:
                # Terminated through the CC whatever happened: taps, bridges, leases go.
                with contextlib.suppress(Exception):
                    cloud.cc(lambda c: c.terminate_instances([g.instance_id for g in guests]))
            # The nodes' bridges, VXLANs and taps went with their last instance.
            for ns in hosts.nodes:
                links = subprocess.run(
                    ["ip", "-n", ns, "-o", "link"], capture_output=True, text=True, check=True
                ).stdout
                assert not re.search(r"\b(eubr|euvx|tap)", links), links
        # The CC stopped: no chain, link or public address of its own is left.
        saved = subprocess.run(
            ["ip", "netns", "exec", hosts.cc, "iptables-save"],
            capture_output=True, text=True, check=True,
        ).stdout  # fmt: skip
        assert "EUCA" not in saved
        links = subprocess.run(
            ["ip", "-n", hosts.cc, "-o", "link"], capture_output=True, text=True, check=True
        ).stdout
        assert not re.search(r"\b(eubr|euvx)", links), links
        addrs = subprocess.run(
            ["ip", "-n", hosts.cc, "-o", "addr", "show", "dev", "pub0"],
            capture_output=True, text=True, check=True,
        ).stdout  # fmt: skip
        assert PUBLIC_IP not in addrs
    finally:
        if md is not None:
            md.close()
        for d in vm_reaper:
            for pid in qemu_pids(d):
                kill_pid(pid)
        asyncio.run(lab.close())  # kills what is left in its namespaces (by PID), deletes them


def _exercise(cloud: Cloud, guests: list[Guest], images: BootImages, md: MetadataStandIn) -> None:
    _launch(cloud, guests, images, md)
    _isolation(cloud, *guests)
    _public(cloud, guests[0])
    _terminate(cloud, guests)


def _launch(cloud: Cloud, guests: list[Guest], images: BootImages, md: MetadataStandIn) -> None:
    """The groups as the CLC pushes them, three instances placed n1, n2, n1, booted."""
    for group in ("sg-a", "sg-b"):
        cloud.ensure_network(group)
        cloud.rules(group, [])
    t0 = time.monotonic()
    for g in guests:  # one at a time: round-robin places them n1, n2, n1
        launch = LaunchSpec(
            instance_id=g.instance_id, owner_id=OWNER, vm=VM, images=images,
            network=InstanceNetworkRequest(network=g.group, owner_id=OWNER),
        )  # fmt: skip
        result = cloud.run(launch)
        assert result.ok, f"{g.instance_id}: {result.error_code} {result.error_message}"
        assert result.node_url == g.node_url, (g.instance_id, result.node_url)
        assert result.instance is not None
        private = result.instance.network.private_ip
        assert private, result.instance.network
        g.ip = private
    chosen = {g.instance_id: g.ip for g in guests}
    took = cloud.wait_ready(guests)
    print(
        f"\n[two nodes] RunInstances x3 -> all {READY} in {time.monotonic() - t0:.1f} s "
        f"({', '.join(f'{t:.0f} s' for t in took.values())})"
    )
    for g in guests:  # the address the CC chose is the one DHCP gave
        assert g.ip == chosen[g.instance_id], (g.instance_id, g.ip, chosen[g.instance_id])
    # Each guest asked for its metadata through the CC's proxy, which signed the request
    # and named the guest by its address; the stand-in answers nothing else.
    assert {(g.instance_id, g.ip) for g in guests} <= set(md.seen)
    assert md.refused == 0

    # So each guest has the test's key: ssh works (from the CC host, the router).
    # DHCP gave them the VXLAN network's MTU too (else full-size packets get lost).
    for g in guests:
        out = cloud.sh(g, f"hostname && cat /sys/class/net/eth0/mtu && {serve(g)}")
        assert out.returncode == 0, (g.instance_id, out.stderr)
        assert out.stdout.split()[:2] == [g.instance_id, str(VXLAN_MTU)], out.stdout
    # And the servers answer (the CC host's own connections are not filtered).
    for g in guests:
        for port in (8080, 8081):
            body = http_get(cloud.hosts.cc, f"http://{g.ip}:{port}/")
            assert body == f"{g.instance_id}:{port}", (g.instance_id, body)


def _isolation(cloud: Cloud, a1: Guest, a2: Guest, b1: Guest) -> None:
    t1 = time.monotonic()
    # --- same group, different nodes: one LAN over VXLAN
    assert a1.ip.rsplit(".", 1)[0] == a2.ip.rsplit(".", 1)[0]
    assert cloud.pings(a1, a2.ip)
    assert cloud.reaches(a1, a2.ip, 8080, f"{a2.instance_id}:8080")
    assert cloud.reaches(a2, a1.ip, 8081, f"{a1.instance_id}:8081")
    # full-size packets too, across the nodes (the VXLAN MTU)
    rc, size = cloud.probe(a1, f"timeout 60 wget -q -O - http://{a2.ip}:8080/big | wc -c")
    assert (rc, size) == (0, str(BIG))
    # on one link: a2 is a neighbour of a1 (not behind the CC's router)
    neigh = cloud.sh(a1, "ip neigh show")
    assert a2.ip in neigh.stdout, neigh.stdout

    # --- different groups: denied both ways by default
    assert b1.ip.rsplit(".", 1)[0] != a1.ip.rsplit(".", 1)[0]
    assert cloud.fetch(a1, b1.ip, 8080) is None
    assert cloud.fetch(a2, b1.ip, 8080) is None
    assert not cloud.ping(a1, b1.ip)
    assert cloud.fetch(b1, a1.ip, 8080) is None
    assert cloud.fetch(b1, a2.ip, 8080) is None

    # --- sg-b lets sg-a in on tcp/8080: exactly that
    cloud.rules("sg-b", [tcp_from("sg-a", 8080)])
    assert cloud.reaches(a1, b1.ip, 8080, f"{b1.instance_id}:8080")  # same node
    assert cloud.reaches(a2, b1.ip, 8080, f"{b1.instance_id}:8080")  # across nodes
    assert cloud.fetch(a1, b1.ip, 8081) is None
    assert cloud.fetch(a2, b1.ip, 8081) is None
    assert not cloud.ping(a1, b1.ip)
    assert cloud.fetch(b1, a1.ip, 8080) is None  # sg-a allows nothing in
    assert cloud.fetch(b1, a2.ip, 8080) is None

    # --- revoked: cut again, the running guests untouched otherwise
    cloud.rules("sg-b", [])
    assert cloud.fetch(a1, b1.ip, 8080) is None
    assert cloud.fetch(a2, b1.ip, 8080) is None
    assert cloud.reaches(a1, a2.ip, 8080, f"{a2.instance_id}:8080")
    print(f"[two nodes] isolation and rules checked in {time.monotonic() - t1:.1f} s")


def _public(cloud: Cloud, a1: Guest) -> None:
    """A public address: the outside host reaches a1, a1 goes out with it; then not."""
    t2 = time.monotonic()
    echo = start_echo(cloud.hosts.outside, 9090)
    try:
        ssh_in = IngressRule(protocol="tcp", from_port=22, to_port=22, cidr=f"{OUTSIDE_IP}/32")
        cloud.rules("sg-a", [ssh_in])
        refused = cloud.from_outside(PUBLIC_IP, "hostname")
        assert refused.returncode != 0  # not associated yet
        # unassociated instances go out masqueraded behind the CC's own address
        assert cloud.fetch(a1, OUTSIDE_IP, 9090) == f"{PUBLIC}.1"

        mapping = cloud.cc(
            lambda c: c.assign_address(
                AssignAddressRequest(instance_id=a1.instance_id, public_ip=PUBLIC_IP)
            )
        )
        assert mapping.private_ip == a1.ip
        for _ in range(5):
            out = cloud.from_outside(PUBLIC_IP, "hostname")
            if out.returncode == 0:
                break
            time.sleep(3)
        assert out.returncode == 0, out.stderr
        assert out.stdout.strip() == a1.instance_id
        bulk = cloud.from_outside(PUBLIC_IP, "cat /run/www8080/big")  # full-size packets
        assert bulk.returncode == 0 and len(bulk.stdout) == BIG, (bulk.returncode, bulk.stderr)
        assert cloud.fetch(a1, OUTSIDE_IP, 9090) == PUBLIC_IP  # SNAT to its address
        # only what sg-a allows: a1's 8080 stays closed to the outside
        closed = subprocess.run(
            [
                "ip", "netns", "exec", cloud.hosts.outside, sys.executable, "-c",
                "import socket,sys; socket.create_connection((sys.argv[1], 8080), 4)",
                PUBLIC_IP,
            ],
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert closed.returncode != 0

        cloud.cc(lambda c: c.unassign_address(PUBLIC_IP))
        gone = cloud.from_outside(PUBLIC_IP, "hostname")
        assert gone.returncode != 0, gone.stdout
        assert cloud.fetch(a1, OUTSIDE_IP, 9090) == f"{PUBLIC}.1"  # masqueraded again
        assert cloud.sh(a1, "hostname").stdout.strip() == a1.instance_id  # still running
    finally:
        kill_pid(echo.pid)
        echo.wait(10)
    print(f"[two nodes] public address checked in {time.monotonic() - t2:.1f} s")


def _terminate(cloud: Cloud, guests: list[Guest]) -> None:
    """Terminated through the CC: the QEMUs go, on both nodes."""
    pids = {}
    for g in guests:
        found = cloud.describe(g.instance_id)
        assert found.instance.state == S.RUNNING and found.instance.pid is not None
        assert found.node_url == g.node_url
        pids[g.instance_id] = found.instance.pid
    done = cloud.cc(lambda c: c.terminate_instances([g.instance_id for g in guests]))
    assert {i.instance.state for i in done.instances} == {S.TERMINATED}
    assert not any(alive(p) for p in pids.values())


def http_get(netns: str, url: str) -> str | None:
    """GET ``url`` from ``netns``: the body, or None when it fails."""
    code = (
        "import sys, urllib.request as u\n"
        "opener = u.build_opener(u.ProxyHandler({}))\n"
        "print(opener.open(sys.argv[1], timeout=5).read().decode())\n"
    )
    argv = ["ip", "netns", "exec", netns, sys.executable, "-c", code, url]
    out = subprocess.run(argv, capture_output=True, text=True, timeout=60)
    return out.stdout.strip() if out.returncode == 0 else None


def start_echo(netns: str, port: int) -> subprocess.Popen[bytes]:
    """An HTTP server in ``netns`` answering each client's address (killed by PID)."""
    code = (
        "import http.server,sys\n"
        "class H(http.server.BaseHTTPRequestHandler):\n"
        "    def do_GET(self):\n"
        "        b=self.client_address[0].encode()\n"
        "        self.send_response(200);self.send_header('Content-Length',str(len(b)))\n"
        "        self.end_headers();self.wfile.write(b)\n"
        "    def log_message(self,*a):pass\n"
        "http.server.ThreadingHTTPServer(('0.0.0.0',int(sys.argv[1])),H).serve_forever()\n"
    )
    proc = subprocess.Popen(
        ["ip", "netns", "exec", netns, sys.executable, "-c", code, str(port)],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    deadline = time.monotonic() + 20
    probe = "import socket,sys; socket.create_connection(('127.0.0.1', int(sys.argv[1])), 2)"
    while time.monotonic() < deadline:
        ok = subprocess.run(
            ["ip", "netns", "exec", netns, sys.executable, "-c", probe, str(port)],
            capture_output=True,
        )
        if ok.returncode == 0:
            return proc
        time.sleep(0.2)
    kill_pid(proc.pid)
    raise RuntimeError(f"echo server in {netns} did not start")
