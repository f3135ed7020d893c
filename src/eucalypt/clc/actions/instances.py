"""Instances: Run, Describe, DescribeInstanceStatus, Terminate, Reboot, console, attributes."""

from __future__ import annotations

import base64
from collections import defaultdict
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from eucalypt.clc.actions.common import TagGetters, paginate, tags_for
from eucalypt.clc.actions.filters import apply_filters
from eucalypt.clc.context import RequestContext
from eucalypt.clc.ec2.errors import (
    InvalidParameterCombination,
    InvalidParameterValue,
    not_found,
)
from eucalypt.clc.ids import check_ids
from eucalypt.clc.instances import TERMINATED_VISIBLE, InstanceService
from eucalypt.clc.models import Instance, SecurityGroup
from eucalypt.nc.api import EC2_STATE_CODES, InstanceState
from eucalypt.rpc.errors import RemoteError

DNS_INTERNAL = "eucalypt.internal"
DNS_PUBLIC = "eucalypt.compute"


def dns_name(ip: str | None, domain: str) -> str:
    return f"euca-{ip.replace('.', '-')}.{domain}" if ip else ""


def state_of(row: Instance) -> dict[str, Any]:
    state = InstanceState(row.state)
    return {"Code": EC2_STATE_CODES[state], "Name": state.value}


def render_instance(
    row: Instance, tags: list[dict[str, str]], groups: dict[str, SecurityGroup]
) -> dict[str, Any]:
    group_list = [
        {"GroupId": g, "GroupName": groups[g].name if g in groups else ""}
        for g in row.group_ids.split(",")
        if g
    ]
    item: dict[str, Any] = {
        "InstanceId": row.id,
        "ImageId": row.image_id,
        "State": state_of(row),
        "PrivateDnsName": dns_name(row.private_ip, DNS_INTERNAL),
        "PublicDnsName": dns_name(row.public_ip, DNS_PUBLIC),
        "StateTransitionReason": row.state_reason,
        "AmiLaunchIndex": row.launch_index,
        "InstanceType": row.instance_type,
        "LaunchTime": row.launch_time,
        "Placement": {"AvailabilityZone": row.zone, "Tenancy": "default", "GroupName": ""},
        "Monitoring": {"State": "disabled"},
        "Architecture": "x86_64",
        "RootDeviceType": "instance-store",
        "RootDeviceName": "/dev/vda",
        "VirtualizationType": "paravirtual" if row.kernel_id else "hvm",
        "Hypervisor": "xen",
        "SecurityGroups": group_list,
        "Tags": tags,
        "ProductCodes": [],
        "BlockDeviceMappings": [],
        "EbsOptimized": False,
        "EnaSupport": False,
        "SourceDestCheck": True,
    }
    for key, value in (
        ("KeyName", row.key_name),
        ("KernelId", row.kernel_id),
        ("RamdiskId", row.ramdisk_id),
        ("PrivateIpAddress", row.private_ip),
        ("PublicIpAddress", row.public_ip),
        ("ClientToken", row.client_token),
    ):
        if value:
            item[key] = value
    if row.state_reason and row.state in ("terminated", "shutting-down", "stopped"):
        code = (
            row.state_reason.split(":", 1)[0]
            if ":" in row.state_reason
            else "Client.UserInitiatedShutdown"
        )
        item["StateReason"] = {"Code": code, "Message": row.state_reason}
    return item


def _visible_rows(s: Session, ctx: RequestContext, ids: list[str]) -> list[Instance]:
    check_ids(ids, ("i",), "InvalidInstanceID.Malformed")
    query = select(Instance).order_by(Instance.launch_time, Instance.id)
    if not ctx.is_admin:
        query = query.where(Instance.account_id == ctx.caller.account_id)
    if ids:
        query = query.where(Instance.id.in_(ids))
    cutoff = datetime.now(UTC) - TERMINATED_VISIBLE
    rows = []
    for row in s.scalars(query):
        ended = row.terminated_at
        if ended is not None and ended.replace(tzinfo=ended.tzinfo or UTC) < cutoff and not ids:
            continue
        rows.append(row)
    if ids:
        missing = sorted(set(ids) - {r.id for r in rows})
        if missing:
            raise not_found(
                "InvalidInstanceID.NotFound", f"The instance ID '{missing[0]}' does not exist"
            )
    return rows


def _owned(s: Session, ctx: RequestContext, ids: list[str]) -> list[Instance]:
    if not ids:
        raise InvalidParameterValue(
            "The request must contain the parameter InstanceId", code="MissingParameter"
        )
    return _visible_rows(s, ctx, ids)


INSTANCE_FILTERS = TagGetters(
    {
        "instance-id": lambda i: [i["InstanceId"]],
        "image-id": lambda i: [i["ImageId"]],
        "instance-state-name": lambda i: [i["State"]["Name"]],
        "instance-state-code": lambda i: [str(i["State"]["Code"])],
        "instance-type": lambda i: [i["InstanceType"]],
        "key-name": lambda i: [i.get("KeyName", "")],
        "availability-zone": lambda i: [i["Placement"]["AvailabilityZone"]],
        "private-ip-address": lambda i: [i.get("PrivateIpAddress", "")],
        "ip-address": lambda i: [i.get("PublicIpAddress", "")],
        "private-dns-name": lambda i: [i["PrivateDnsName"]],
        "dns-name": lambda i: [i["PublicDnsName"]],
        "group-id": lambda i: [g["GroupId"] for g in i["SecurityGroups"]],
        "group-name": lambda i: [g["GroupName"] for g in i["SecurityGroups"]],
        "instance.group-id": lambda i: [g["GroupId"] for g in i["SecurityGroups"]],
        "instance.group-name": lambda i: [g["GroupName"] for g in i["SecurityGroups"]],
        "kernel-id": lambda i: [i.get("KernelId", "")],
        "ramdisk-id": lambda i: [i.get("RamdiskId", "")],
        "launch-index": lambda i: [str(i["AmiLaunchIndex"])],
        "root-device-type": lambda i: [i["RootDeviceType"]],
        "architecture": lambda i: [i["Architecture"]],
        "client-token": lambda i: [i.get("ClientToken", "")],
        "reservation-id": lambda i: [i["_reservation"]],
        "owner-id": lambda i: [i["_owner"]],
        "reason": lambda i: [i["StateTransitionReason"]],
        "state-reason-code": lambda i: [i.get("StateReason", {}).get("Code", "")],
        "state-reason-message": lambda i: [i.get("StateReason", {}).get("Message", "")],
        "launch-time": lambda i: [i["LaunchTime"].strftime("%Y-%m-%dT%H:%M:%S.000Z")],
        "tenancy": lambda i: [i["Placement"]["Tenancy"]],
        "monitoring-state": lambda i: [i["Monitoring"]["State"]],
        "hypervisor": lambda i: [i["Hypervisor"]],
        "virtualization-type": lambda i: [i["VirtualizationType"]],
        "root-device-name": lambda i: [i["RootDeviceName"]],
        "source-dest-check": lambda i: ["true" if i["SourceDestCheck"] else "false"],
        "ebs-optimized": lambda i: ["false"],
        # EC2-Classic style instances: in no VPC, subnet or placement group, no platform.
        "vpc-id": lambda i: [],
        "subnet-id": lambda i: [],
        "placement-group-name": lambda i: [],
        "platform": lambda i: [],
        "instance-lifecycle": lambda i: [],
    }
)


def _reservations(s: Session, rows: list[Instance]) -> list[dict[str, Any]]:
    tags = tags_for(s, [r.id for r in rows])
    group_ids = {g for r in rows for g in r.group_ids.split(",") if g}
    groups = {
        g.id: g for g in s.scalars(select(SecurityGroup).where(SecurityGroup.id.in_(group_ids)))
    }
    out: dict[str, dict[str, Any]] = {}
    for row in rows:
        item = render_instance(row, tags.get(row.id, []), groups)
        res = out.setdefault(
            row.reservation_id,
            {
                "ReservationId": row.reservation_id,
                "OwnerId": row.account_id,
                "RequesterId": row.requester or row.account_id,
                "Groups": item["SecurityGroups"],
                "Instances": [],
            },
        )
        res["Instances"].append(item)
    return list(out.values())


async def run_instances(ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
    rid = await InstanceService(ctx.services).run(ctx.caller.account_id, ctx.is_admin, params)
    reservations = await ctx.services.db.run(
        lambda s: _reservations(
            s,
            list(
                s.scalars(
                    select(Instance)
                    .where(Instance.reservation_id == rid)
                    .order_by(Instance.launch_index)
                )
            ),
        )
    )
    return reservations[0]


def _no_max_results_with_ids(params: dict[str, Any]) -> None:
    """EC2 refuses MaxResults together with InstanceId.N."""
    if params.get("InstanceIds") and "MaxResults" in params:
        raise InvalidParameterCombination(
            "The parameter instancesSet cannot be used with the parameter maxResults"
        )


async def describe_instances(ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
    ids = params.get("InstanceIds") or []
    _no_max_results_with_ids(params)

    def work(s: Session) -> list[dict[str, Any]]:
        return _reservations(s, _visible_rows(s, ctx, ids))

    reservations = await ctx.services.db.run(work)
    if params.get("Filters"):
        kept = []
        for res in reservations:
            for inst in res["Instances"]:
                inst["_reservation"], inst["_owner"] = res["ReservationId"], res["OwnerId"]
            res["Instances"] = apply_filters(res["Instances"], params["Filters"], INSTANCE_FILTERS)
            for inst in res["Instances"]:
                del inst["_reservation"], inst["_owner"]
            if res["Instances"]:
                kept.append(res)
        reservations = kept
    page, token = paginate(reservations, params.get("MaxResults"), params.get("NextToken"))
    result: dict[str, Any] = {"Reservations": page}
    if token:
        result["NextToken"] = token
    return result


async def terminate_instances(ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
    ids = params["InstanceIds"]
    before = await ctx.services.db.run(lambda s: {r.id: state_of(r) for r in _owned(s, ctx, ids)})
    await InstanceService(ctx.services).terminate_ids(ids)
    after = await ctx.services.db.run(lambda s: {r.id: state_of(r) for r in _owned(s, ctx, ids)})
    return {
        "TerminatingInstances": [
            {"InstanceId": i, "PreviousState": before[i], "CurrentState": after[i]} for i in ids
        ]
    }


async def reboot_instances(ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
    ids = params["InstanceIds"]
    rows = await ctx.services.db.run(
        lambda s: [(r.id, r.zone, r.state) for r in _owned(s, ctx, ids)]
    )
    by_zone: dict[str, list[str]] = defaultdict(list)
    for instance_id, _zone, state in rows:
        if state in (InstanceState.TERMINATED.value, InstanceState.SHUTTING_DOWN.value):
            raise InvalidParameterValue(
                f"The instance '{instance_id}' is {state}; it cannot be rebooted.",
                code="IncorrectInstanceState",
            )
    for instance_id, zone, state in rows:
        if state == InstanceState.RUNNING.value:
            by_zone[zone].append(instance_id)
    for zone, zone_ids in by_zone.items():
        try:
            await ctx.services.clusters[zone].reboot_instances(zone_ids)
        except RemoteError as exc:
            raise InvalidParameterValue(
                f"Reboot failed: {exc.message}", code="IncorrectInstanceState"
            ) from None
    return {}


async def describe_instance_status(ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
    ids = params.get("InstanceIds") or []
    _no_max_results_with_ids(params)
    include_all = params.get("IncludeAllInstances", False)

    def work(s: Session) -> list[dict[str, Any]]:
        out = []
        for row in _visible_rows(s, ctx, ids):
            if row.state != InstanceState.RUNNING.value and not include_all:
                continue
            ok = "ok" if row.state == InstanceState.RUNNING.value else "not-applicable"
            out.append(
                {
                    "InstanceId": row.id,
                    "AvailabilityZone": row.zone,
                    "InstanceState": state_of(row),
                    "InstanceStatus": {
                        "Status": ok,
                        "Details": [
                            {
                                "Name": "reachability",
                                "Status": "passed" if ok == "ok" else "initializing",
                            }
                        ],
                    },
                    "SystemStatus": {
                        "Status": ok,
                        "Details": [
                            {
                                "Name": "reachability",
                                "Status": "passed" if ok == "ok" else "initializing",
                            }
                        ],
                    },
                    "Events": [],
                }
            )
        return out

    items = apply_filters(
        await ctx.services.db.run(work),
        params.get("Filters"),
        {
            "availability-zone": lambda i: [i["AvailabilityZone"]],
            "instance-state-name": lambda i: [i["InstanceState"]["Name"]],
            "instance-state-code": lambda i: [str(i["InstanceState"]["Code"])],
            "instance-status.status": lambda i: [i["InstanceStatus"]["Status"]],
            "system-status.status": lambda i: [i["SystemStatus"]["Status"]],
        },
    )
    page, token = paginate(items, params.get("MaxResults"), params.get("NextToken"))
    result: dict[str, Any] = {"InstanceStatuses": page}
    if token:
        result["NextToken"] = token
    return result


async def get_console_output(ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
    instance_id = params["InstanceId"]
    row = await ctx.services.db.run(lambda s: _owned(s, ctx, [instance_id])[0])
    output = b""
    timestamp = datetime.now(UTC)
    if row.state in (InstanceState.RUNNING.value, InstanceState.PENDING.value):
        try:
            reply = await ctx.services.clusters[row.zone].get_console_output(instance_id)
            output, timestamp = reply.output.encode(), reply.timestamp
        except RemoteError:
            output = b""
    return {
        "InstanceId": instance_id,
        "Timestamp": timestamp,
        "Output": base64.b64encode(output).decode(),
    }


#: Boolean instance attributes (attribute -> result member); all false but sourceDestCheck.
FALSE_ATTRIBUTES = {
    "disableApiTermination": "DisableApiTermination",
    "disableApiStop": "DisableApiStop",
    "ebsOptimized": "EbsOptimized",
    "enaSupport": "EnaSupport",
    "sourceDestCheck": "SourceDestCheck",
}


async def describe_instance_attribute(
    ctx: RequestContext, params: dict[str, Any]
) -> dict[str, Any]:
    instance_id, attribute = params["InstanceId"], params["Attribute"]

    def work(s: Session) -> dict[str, Any]:
        row = _owned(s, ctx, [instance_id])[0]
        out: dict[str, Any] = {"InstanceId": row.id}
        value_attrs = {
            "instanceType": ("InstanceType", row.instance_type),
            "kernel": ("KernelId", row.kernel_id or ""),
            "ramdisk": ("RamdiskId", row.ramdisk_id or ""),
            "userData": ("UserData", row.user_data),
            "rootDeviceName": ("RootDeviceName", "/dev/vda"),
            "instanceInitiatedShutdownBehavior": ("InstanceInitiatedShutdownBehavior", "terminate"),
        }
        if attribute in value_attrs:
            key, value = value_attrs[attribute]
            out[key] = {"Value": value}
        elif attribute == "groupSet":
            groups = {
                g.id: g
                for g in s.scalars(
                    select(SecurityGroup).where(SecurityGroup.id.in_(row.group_ids.split(",")))
                )
            }
            out["Groups"] = [
                {"GroupId": g, "GroupName": groups[g].name if g in groups else ""}
                for g in row.group_ids.split(",")
                if g
            ]
        elif attribute in FALSE_ATTRIBUTES:
            out[FALSE_ATTRIBUTES[attribute]] = {"Value": attribute == "sourceDestCheck"}
        elif attribute == "sriovNetSupport":
            out["SriovNetSupport"] = {"Value": "simple"}
        elif attribute == "blockDeviceMapping":
            out["BlockDeviceMappings"] = []
        elif attribute == "productCodes":
            out["ProductCodes"] = []
        elif attribute == "enclaveOptions":
            out["EnclaveOptions"] = {"Enabled": False}
        else:
            raise InvalidParameterValue(
                f"Value ({attribute}) for parameter attribute is invalid. Unknown attribute."
            )
        return out

    return await ctx.services.db.run(work)
