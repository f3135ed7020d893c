"""Address arithmetic: subnets of the private range, host slices, the public pool.

Subnet ``i`` of the range is the ``i``-th block of ``subnet_prefix``. Inside
a subnet the first ``cluster_count`` host addresses are the clusters'
gateways (cluster ``k`` routes through ``network + 1 + k``) and the rest is
split into ``cluster_count`` contiguous slices, one per cluster, so two
clusters sharing a group's LAN never hand out the same address.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Network


@dataclass(frozen=True)
class Layout:
    private_range: IPv4Network
    subnet_prefix: int
    cluster_index: int = 0
    cluster_count: int = 1

    def __post_init__(self) -> None:
        if not self.private_range.prefixlen <= self.subnet_prefix <= 29:
            raise ValueError(
                f"subnet_prefix /{self.subnet_prefix} must be within "
                f"{self.private_range} and at most /29"
            )
        if not 0 <= self.cluster_index < self.cluster_count:
            raise ValueError("cluster_index must be below cluster_count")
        if self.hosts_per_cluster() < 1:
            raise ValueError("subnets are too small for this many clusters")

    @property
    def subnet_count(self) -> int:
        return 1 << (self.subnet_prefix - self.private_range.prefixlen)

    def subnet(self, index: int) -> IPv4Network:
        if not 0 <= index < self.subnet_count:
            raise ValueError(f"no subnet {index} in {self.private_range}")
        size = 1 << (32 - self.subnet_prefix)
        base = int(self.private_range.network_address) + index * size
        return IPv4Network((base, self.subnet_prefix))

    def index_of(self, subnet: IPv4Network) -> int:
        if subnet.prefixlen != self.subnet_prefix or not subnet.subnet_of(self.private_range):
            raise ValueError(f"{subnet} is not a /{self.subnet_prefix} of {self.private_range}")
        size = 1 << (32 - self.subnet_prefix)
        return (int(subnet.network_address) - int(self.private_range.network_address)) // size

    def gateway(self, subnet: IPv4Network) -> IPv4Address:
        return subnet.network_address + 1 + self.cluster_index

    def hosts_per_cluster(self) -> int:
        usable = (1 << (32 - self.subnet_prefix)) - 2 - self.cluster_count
        return usable // self.cluster_count

    def host_slice(self, subnet: IPv4Network) -> list[IPv4Address]:
        """The instance addresses this cluster hands out in ``subnet``, in order."""
        n = self.hosts_per_cluster()
        first = subnet.network_address + 1 + self.cluster_count + self.cluster_index * n
        return [first + i for i in range(n)]


def parse_pool(entries: list[str]) -> list[IPv4Address]:
    """``["198.51.100.10", "198.51.100.16/30", "198.51.100.20-198.51.100.22"]`` as addresses.

    A CIDR gives its usable host addresses (a /30 gives two); a range gives every address in it.
    """
    out: set[IPv4Address] = set()
    for entry in entries:
        entry = entry.strip()
        if "-" in entry:
            first, last = (IPv4Address(p.strip()) for p in entry.split("-", 1))
            for net in ipaddress.summarize_address_range(first, last):
                out.update(net)
        elif "/" in entry:
            # A subnet's network and broadcast addresses are never handed out.
            out.update(IPv4Network(entry, strict=False).hosts())
        else:
            out.add(IPv4Address(entry))
    return sorted(out)


def pool_cidrs(pool: list[IPv4Address]) -> tuple[str, ...]:
    return tuple(str(n) for n in ipaddress.collapse_addresses(IPv4Network(a) for a in pool))
