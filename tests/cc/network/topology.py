"""A cluster built from namespaces: a CC host, NC hosts on an underlay LAN, an outside host.

Instances are namespaces whose ``eth0`` (with the MAC the CC chose) is a
veth port on the node's bridge, standing in for a VM's tap; they get their
address from the CC's dnsmasq with busybox udhcpc.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from eucalypt.auth.credentials import Credential
from eucalypt.cc.api import InstanceNetworkRequest, LaunchSpec
from eucalypt.cc.network.managed import ManagedNetwork
from eucalypt.config import CcConfig, Config
from eucalypt.nc.api import BootImages, ImageRef, NetworkSpec, VmSpec
from eucalypt.net.node import ensure_node_network
from tests.net.helpers import Lab

PUBLIC_POOL = "198.51.100.10-198.51.100.20"


def launch_spec(instance_id: str, group: str, owner: str = "111122223333") -> LaunchSpec:
    return LaunchSpec(
        instance_id=instance_id,
        owner_id=owner,
        vm=VmSpec(name="t1.micro", cores=1, memory_mib=256, disk_gib=1),
        images=BootImages(root=ImageRef(image_id="emi-1", url="http://127.0.0.1:1/none")),
        network=InstanceNetworkRequest(network=group, owner_id=owner),
    )


@contextmanager
def metadata_upstream() -> Iterator[str]:
    """A stand-in CLC metadata service on loopback that echoes what it was told."""

    class Echo(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = json.dumps(
                {
                    "path": self.path,
                    "instance_id": self.headers.get("X-Eucalypt-Instance-Id"),
                    "instance_ip": self.headers.get("X-Eucalypt-Instance-Ip"),
                    "signed": "authorization" in {k.lower() for k in self.headers},
                }
            ).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Echo)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@dataclass
class Cluster:
    lab: Lab
    cc: str
    nodes: dict[str, str]  # NC URL -> namespace
    config: Config
    manager: ManagedNetwork
    outside: str | None = None
    vms: dict[str, str] = field(default_factory=dict)  # instance id -> namespace

    @property
    def urls(self) -> list[str]:
        return list(self.nodes)

    async def launch(self, instance_id: str, group: str, node_url: str) -> tuple[str, str]:
        """Prepare the instance's network as the CC would, do the node's part, boot a
        namespace "VM" and DHCP: returns (namespace, address)."""
        spec: NetworkSpec = await self.manager.prepare(launch_spec(instance_id, group), node_url)
        return await self.attach(instance_id, node_url, spec)

    async def attach(self, instance_id: str, node_url: str, spec: NetworkSpec) -> tuple[str, str]:
        """The node's part of a launch whose network the CC has prepared (``spec``)."""
        node = self.manager.node_network(instance_id)
        assert spec.bridge == node.bridge and spec.private_ip
        node_ns = self.nodes[node_url]
        await ensure_node_network(self.lab.runner, node, node_ns)
        short = f"{self.cc.rsplit('-', 1)[1][:3]}{instance_id[-3:]}"
        vm = await self.lab.instance(short, node_ns, node.bridge, spec.mac)
        ip = await self.lab.dhcp(vm)
        assert ip == spec.private_ip, f"DHCP gave {ip}, the CC chose {spec.private_ip}"
        self.vms[instance_id] = vm
        return vm, ip


async def build_cluster(
    lab: Lab,
    name: str = "c1",
    *,
    mode: str = "MANAGED",
    underlay: str = "192.168.100",
    node_count: int = 2,
    upstream: str = "http://127.0.0.1:9",
    extra: dict[str, object] | None = None,
    credential: Credential | None = None,
) -> Cluster:
    cc = await lab.netns(f"{name}cc")
    await lab.sh(cc, "ip", "link", "add", "ul0", "type", "bridge")
    await lab.sh(cc, "ip", "addr", "add", f"{underlay}.1/24", "dev", "ul0")
    await lab.sh(cc, "ip", "link", "set", "ul0", "up")
    nodes: dict[str, str] = {}
    for i in range(1, node_count + 1):
        nc = await lab.netns(f"{name}nc{i}")
        await lab.link(nc, "eth0", cc, f"ulp{i}", addr_a=f"{underlay}.{10 + i}/24")
        await lab.sh(cc, "ip", "link", "set", f"ulp{i}", "master", "ul0")
        nodes[f"http://{underlay}.{10 + i}:8775"] = nc
    outside = None
    if name == "c1":
        outside = await lab.netns("out")
        await lab.link(cc, "pub0", outside, "eth0", "198.51.100.1/24", "198.51.100.2/24")
    state_dir = lab.dir / f"{name}-net"  # lab.dir is 0755: dnsmasq (nobody) reads it
    cc_config = CcConfig(
        network_mode=mode,
        network_netns=cc,
        network_state_dir=str(state_dir),
        nodes=list(nodes),
        vxlan_local=f"{underlay}.1",
        public_ips=[PUBLIC_POOL] if outside else [],
        public_interface="pub0" if outside else "",
        metadata_upstream=upstream,
        **(extra or {}),  # type: ignore[arg-type]
    )
    config = Config(data_dir=lab.dir / name, cc=cc_config)
    manager = ManagedNetwork(config, novlan=mode == "MANAGED-NOVLAN", credential=credential)
    await manager.start()
    return Cluster(lab, cc, nodes, config, manager, outside)
