"""The cloud's configuration: one TOML file under the data directory.

``eucalypt init`` writes ``<data_dir>/eucalypt.toml`` with every default
spelled out; each service process reads it (``eucalypt serve <component>
--config FILE``). Paths left empty are derived from ``data_dir``.
"""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Any

import tomli_w
from pydantic import BaseModel, Field

DEFAULT_REGION = "eucalypt-1"


def default_data_dir() -> Path:
    """``$EUCALYPT_DATA_DIR``, else ``~/.eucalypt``."""
    env = os.environ.get("EUCALYPT_DATA_DIR")
    return Path(env) if env else Path.home() / ".eucalypt"


class ServiceConfig(BaseModel):
    """Where one component listens."""

    host: str = "127.0.0.1"
    port: int

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"


class ClcConfig(ServiceConfig):
    port: int = 8773
    database_url: str = ""
    # How often instance state is pulled from the CCs.
    sync_seconds: float = 2.0
    # Give every running instance a public address from its cluster's pool.
    auto_public_ip: bool = False


class WalrusConfig(ServiceConfig):
    port: int = 8776
    database_url: str = ""
    storage_dir: str = ""
    # Virtual-hosted style: requests to <bucket>.<domain> address that bucket.
    domain: str = "s3.localhost"
    # Decrypted image bundles (empty: <data_dir>/walrus/images), LRU under this cap.
    image_cache_dir: str = ""
    image_cache_max_gib: float = 20.0


class VmType(BaseModel):
    """An administrator-defined VM type (the paper's m1.small etc.)."""

    name: str
    cores: int
    memory_mib: int
    disk_gib: int


def default_vm_types() -> list[VmType]:
    return [
        VmType(name="t1.micro", cores=1, memory_mib=256, disk_gib=1),
        VmType(name="m1.small", cores=1, memory_mib=512, disk_gib=2),
        VmType(name="m1.medium", cores=1, memory_mib=1024, disk_gib=5),
        VmType(name="m1.large", cores=2, memory_mib=2048, disk_gib=10),
        VmType(name="m1.xlarge", cores=4, memory_mib=4096, disk_gib=20),
    ]


class CcConfig(ServiceConfig):
    port: int = 8774
    # The cluster's name is the availability zone the CLC shows.
    name: str = "zone-1"
    # Node Controllers of this cluster, as base URLs.
    nodes: list[str] = Field(default_factory=lambda: ["http://127.0.0.1:8775"])
    scheduler: str = "firstfit"
    poll_seconds: float = 5.0
    # SYSTEM, STATIC, MANAGED or MANAGED-NOVLAN (the paper's modes).
    network_mode: str = "SYSTEM"
    # SYSTEM mode: the bridge on each node that joins the physical network.
    bridge: str = "eucabr0"
    # --- the virtual network (eucalypt.cc.network) -----------------------------
    # Network namespace that holds the CC's data plane ("" = the host's own).
    network_netns: str = ""
    # dnsmasq's files ("" = <data_dir>/cc/net).
    network_state_dir: str = ""
    # MANAGED modes: the private range, split into one subnet per security group.
    private_range: str = "10.128.0.0/16"
    subnet_prefix: int = 24
    # VXLAN: network i has VNI vni_base + i (MANAGED-NOVLAN: all share vni_base).
    vni_base: int = 1000
    vxlan_port: int = 4789
    # The CC's address on the network its NCs reach (its VXLAN endpoint); "" = none.
    vxlan_local: str = ""
    # NC URL -> that node's VXLAN endpoint address, when it is not the URL's host.
    node_underlay: dict[str, str] = Field(default_factory=dict)
    # Public addresses (IPs, CIDRs, "first-last" ranges) and the CC interface answering them.
    public_ips: list[str] = Field(default_factory=list)
    public_interface: str = ""
    # Cross-cluster networks: the other CCs' VXLAN endpoints, and which slice of
    # each subnet's addresses this cluster hands out (index of count).
    cluster_peers: list[str] = Field(default_factory=list)
    peer_vxlan_port: int = 4790
    cluster_index: int = 0
    cluster_count: int = 1
    # Instance metadata: the CC's proxy port and the CLC metadata service behind it.
    metadata_port: int = 8779
    # Empty: the CLC of this configuration (clc.url).
    metadata_upstream: str = ""
    # STATIC mode: MAC -> IP pairs, their subnet and router, and the CC's
    # interface on the instances' LAN ("" = bridge) where DHCP is served.
    static_pairs: dict[str, str] = Field(default_factory=dict)
    static_subnet: str = ""
    static_router: str = ""
    static_interface: str = ""
    # Single host (eucalypt.net.local): with network_netns set, create that namespace
    # and a veth from the host (local_uplink_interface) to public_interface inside it
    # ("" = eupub0), addressed from local_uplink_net ("" = 169.254.123.0/30), and
    # route public_ips from the host into it.
    local_uplink: bool = False
    local_uplink_interface: str = ""
    local_uplink_net: str = ""


class NcConfig(ServiceConfig):
    port: int = 8775
    hypervisor: str = "qemu"
    instances_dir: str = ""
    cache_dir: str = ""
    cache_max_gib: float = 20.0
    reserve_cores: int = 0
    reserve_memory_mib: int = 256
    # qemu driver: "auto" probes whether KVM really runs a guest, else "kvm" or "tcg".
    qemu_accel: str = "auto"
    # Network namespace of the instances' taps, bridges and VXLAN devices (bridge
    # mode), and of the QEMUs using them ("" = the host's own). The NC's HTTP
    # server stays in the host's namespace.
    netns: str = ""
    # sim driver: seconds a simulated boot takes, and the node it pretends to be
    # (0 = this host's cores / memory / disk).
    sim_boot_seconds: float = 1.0
    sim_cores: int = 0
    sim_memory_mib: int = 0
    sim_disk_gib: int = 0
    # How often the NC checks that its instances still run, and how long
    # terminated instances stay visible in DescribeInstances.
    monitor_seconds: float = 5.0
    terminated_retention_seconds: float = 3600.0
    # Instance metadata where the NC intercepts it (SYSTEM, and STATIC without the CC
    # as router; NetworkSpec.node_metadata): the NC's proxy port, opened in nc.netns
    # (or the host's namespace) on the instances' bridge, and the CLC metadata
    # service behind it ("" = the CLC of this configuration, clc.url).
    metadata_port: int = 8780
    metadata_upstream: str = ""


class ClusterRef(BaseModel):
    """A cluster as the CLC knows it: zone name and the CC's URL."""

    name: str
    url: str


class Config(BaseModel):
    data_dir: Path = Field(default_factory=default_data_dir)
    region: str = DEFAULT_REGION
    log_level: str = "info"
    clc: ClcConfig = Field(default_factory=ClcConfig)
    walrus: WalrusConfig = Field(default_factory=WalrusConfig)
    cc: CcConfig = Field(default_factory=CcConfig)
    nc: NcConfig = Field(default_factory=NcConfig)
    # The CCs the CLC fronts; empty means "the local cc section".
    clusters: list[ClusterRef] = Field(default_factory=list)
    vm_types: list[VmType] = Field(default_factory=default_vm_types)

    def model_post_init(self, _context: Any) -> None:
        d = self.data_dir
        if not self.clc.database_url:
            self.clc.database_url = f"sqlite:///{d / 'clc' / 'clc.db'}"
        if not self.walrus.database_url:
            self.walrus.database_url = f"sqlite:///{d / 'walrus' / 'walrus.db'}"
        if not self.walrus.storage_dir:
            self.walrus.storage_dir = str(d / "walrus" / "objects")
        if not self.nc.instances_dir:
            self.nc.instances_dir = str(d / "nc" / "instances")
        if not self.nc.cache_dir:
            self.nc.cache_dir = str(d / "nc" / "cache")
        if not self.clusters:
            self.clusters = [ClusterRef(name=self.cc.name, url=self.cc.url)]

    # -- files ---------------------------------------------------------------
    @property
    def config_path(self) -> Path:
        return self.data_dir / "eucalypt.toml"

    @property
    def keys_dir(self) -> Path:
        return self.data_dir / "keys"

    @property
    def logs_dir(self) -> Path:
        return self.data_dir / "logs"

    @property
    def run_dir(self) -> Path:
        return self.data_dir / "run"

    def service(self, component: str) -> ServiceConfig:
        svc: ServiceConfig = getattr(self, component)
        return svc

    @classmethod
    def load(cls, path: Path | None = None) -> Config:
        """Read ``path`` (default ``<default data dir>/eucalypt.toml``)."""
        path = path or default_data_dir() / "eucalypt.toml"
        with path.open("rb") as fh:
            return cls.model_validate(tomllib.load(fh))

    def save(self) -> Path:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        data = self.model_dump(mode="json")
        tmp = self.config_path.with_suffix(".tmp")
        tmp.write_text(tomli_w.dumps(data))
        tmp.replace(self.config_path)
        return self.config_path
