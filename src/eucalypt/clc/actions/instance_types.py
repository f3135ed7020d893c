"""DescribeInstanceTypes: the administrator's VM types."""

from __future__ import annotations

from typing import Any

from eucalypt.clc.actions.common import paginate
from eucalypt.clc.actions.filters import apply_filters
from eucalypt.clc.context import RequestContext
from eucalypt.clc.ec2.errors import InvalidParameterValue
from eucalypt.config import VmType


def render_type(vm: VmType) -> dict[str, Any]:
    return {
        "InstanceType": vm.name,
        "CurrentGeneration": True,
        "FreeTierEligible": False,
        "SupportedUsageClasses": ["on-demand"],
        "SupportedRootDeviceTypes": ["instance-store"],
        "SupportedVirtualizationTypes": ["paravirtual", "hvm"],
        "BareMetal": False,
        "Hypervisor": "xen",
        "ProcessorInfo": {"SupportedArchitectures": ["x86_64"]},
        "VCpuInfo": {
            "DefaultVCpus": vm.cores,
            "DefaultCores": vm.cores,
            "DefaultThreadsPerCore": 1,
        },
        "MemoryInfo": {"SizeInMiB": vm.memory_mib},
        "InstanceStorageSupported": True,
        "InstanceStorageInfo": {
            "TotalSizeInGB": vm.disk_gib,
            "Disks": [{"SizeInGB": vm.disk_gib, "Count": 1, "Type": "ssd"}],
        },
        "EbsInfo": {"EbsOptimizedSupport": "unsupported", "EncryptionSupport": "unsupported"},
        "NetworkInfo": {
            "NetworkPerformance": "Moderate",
            "MaximumNetworkInterfaces": 1,
            "Ipv4AddressesPerInterface": 1,
            "Ipv6Supported": False,
        },
        "PlacementGroupInfo": {"SupportedStrategies": []},
        "HibernationSupported": False,
        "BurstablePerformanceSupported": False,
        "DedicatedHostsSupported": False,
        "AutoRecoverySupported": False,
    }


async def describe_instance_types(ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
    types = ctx.services.config.vm_types
    wanted = params.get("InstanceTypes") or []
    known = {t.name for t in types}
    for name in wanted:
        if name not in known:
            raise InvalidParameterValue(
                f"The following supplied instance types do not exist: [{name}]",
                code="InvalidInstanceType",
            )
    items = [render_type(t) for t in types if not wanted or t.name in wanted]
    items = apply_filters(
        items,
        params.get("Filters"),
        {
            "instance-type": lambda t: [t["InstanceType"]],
            "vcpu-info.default-vcpus": lambda t: [str(t["VCpuInfo"]["DefaultVCpus"])],
            "memory-info.size-in-mib": lambda t: [str(t["MemoryInfo"]["SizeInMiB"])],
            "instance-storage-info.total-size-in-gb": lambda t: [
                str(t["InstanceStorageInfo"]["TotalSizeInGB"])
            ],
        },
    )
    page, token = paginate(items, params.get("MaxResults"), params.get("NextToken"), lo=5, hi=100)
    result: dict[str, Any] = {"InstanceTypes": page}
    if token:
        result["NextToken"] = token
    return result
