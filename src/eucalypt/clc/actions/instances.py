"""Instances: Run, Describe, DescribeInstanceStatus, Terminate, Reboot, console, attributes."""

from __future__ import annotations

import base64
from collections import defaultdict
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Select, or_, select
from sqlalchemy.orm import Session

from eucalypt.clc.actions.common import TAG_QUERY_CHUNK, TagGetters, paginate, tags_for
from eucalypt.clc.actions.filters import apply_filters
from eucalypt.clc.context import RequestContext
from eucalypt.clc.ec2.errors import (
    InvalidParameterCombination,
    InvalidParameterValue,
    not_found,
)
from eucalypt.clc.ids import check_ids
from eucalypt.clc.instances import TERMINATED_VISIBLE, InstanceService
from eucalypt.clc.models import Instance, SecurityGroup, Tag
from eucalypt.nc.api import EC2_STATE_CODES, InstanceState
from eucalypt.rpc.errors import RemoteError

DNS_INTERNAL = "eucalypt.internal"
DNS_PUBLIC = "eucalypt.compute"


def dns_name(ip: str | None, domain: str) -> str:
    return f"euca-{ip.replace('.', '-')}.{domain}" if ip else ""


_STATE_CODES: dict[str, int] = {state.value: code for state, code in EC2_STATE_CODES.items()}


def state_of(row: Any) -> dict[str, Any]:
    """EC2's ``{"Code", "Name"}`` of ``row.state`` (an :class:`Instance` or a result row)."""
    return {"Code": _STATE_CODES[row.state], "Name": row.state}


#: The instance columns Describe reads, as plain result rows: building ORM objects
#: (identity map, instrumented state) for thousands of instances costs more than
#: rendering them. :func:`render_instance` unpacks a row in this order.
_COLUMNS = (
    Instance.id,
    Instance.reservation_id,
    Instance.account_id,
    Instance.requester,
    Instance.image_id,
    Instance.kernel_id,
    Instance.ramdisk_id,
    Instance.instance_type,
    Instance.zone,
    Instance.state,
    Instance.state_reason,
    Instance.key_name,
    Instance.group_ids,
    Instance.launch_index,
    Instance.private_ip,
    Instance.public_ip,
    Instance.client_token,
    Instance.launch_time,
)
_AT = {column.key: index for index, column in enumerate(_COLUMNS)}
_ID, _RID, _ACCOUNT, _REQUESTER, _GROUP_IDS = (
    _AT[k] for k in ("id", "reservation_id", "account_id", "requester", "group_ids")
)
#: States whose reason EC2 shows as StateReason.
_ENDED = frozenset(("terminated", "shutting-down", "stopped"))


def render_instance(
    row: Sequence[Any],
    tags: list[dict[str, str]],
    groups: dict[str, SecurityGroup],
    group_lists: dict[str, list[dict[str, str]]] | None = None,
) -> dict[str, Any]:
    """One ``Instance`` of the EC2 result from a row of :data:`_COLUMNS`.

    ``group_lists`` caches the rendered SecurityGroups by ``group_ids``: the instances
    of a reservation share one list (the serializer only reads it)."""
    (
        iid, _rid, _account, _requester, image_id, kernel_id, ramdisk_id, instance_type,
        zone, state, reason, key_name, group_ids, launch_index, private_ip, public_ip,
        client_token, launch_time,
    ) = row  # fmt: skip
    group_list = None if group_lists is None else group_lists.get(group_ids)
    if group_list is None:
        group_list = [
            {"GroupId": g, "GroupName": groups[g].name if g in groups else ""}
            for g in group_ids.split(",")
            if g
        ]
        if group_lists is not None:
            group_lists[group_ids] = group_list
    item: dict[str, Any] = {
        "InstanceId": iid,
        "ImageId": image_id,
        "State": {"Code": _STATE_CODES[state], "Name": state},
        "PrivateDnsName": dns_name(private_ip, DNS_INTERNAL),
        "PublicDnsName": dns_name(public_ip, DNS_PUBLIC),
        "StateTransitionReason": reason,
        "AmiLaunchIndex": launch_index,
        "InstanceType": instance_type,
        "LaunchTime": launch_time,
        "Placement": {"AvailabilityZone": zone, "Tenancy": "default", "GroupName": ""},
        "Monitoring": {"State": "disabled"},
        "Architecture": "x86_64",
        "RootDeviceType": "instance-store",
        "RootDeviceName": "/dev/vda",
        "VirtualizationType": "paravirtual" if kernel_id else "hvm",
        "Hypervisor": "xen",
        "SecurityGroups": group_list,
        "Tags": tags,
        "ProductCodes": [],
        "BlockDeviceMappings": [],
        "EbsOptimized": False,
        "EnaSupport": False,
        "SourceDestCheck": True,
    }
    if key_name:
        item["KeyName"] = key_name
    if kernel_id:
        item["KernelId"] = kernel_id
    if ramdisk_id:
        item["RamdiskId"] = ramdisk_id
    if private_ip:
        item["PrivateIpAddress"] = private_ip
    if public_ip:
        item["PublicIpAddress"] = public_ip
    if client_token:
        item["ClientToken"] = client_token
    if reason and state in _ENDED:
        code = reason.split(":", 1)[0] if ":" in reason else "Client.UserInitiatedShutdown"
        item["StateReason"] = {"Code": code, "Message": reason}
    return item


def _visible_query(ctx: RequestContext, ids: list[str]) -> Select[*tuple[Any, ...]]:
    """The caller's instances (all for an administrator), oldest first; without ``ids``
    the instances terminated longer than ``TERMINATED_VISIBLE`` ago are left out."""
    check_ids(ids, ("i",), "InvalidInstanceID.Malformed")
    query: Select[*tuple[Any, ...]] = select(*_COLUMNS).order_by(Instance.launch_time, Instance.id)
    if not ctx.is_admin:
        query = query.where(Instance.account_id == ctx.caller.account_id)
    if ids:
        query = query.where(Instance.id.in_(ids))
    else:
        cutoff = datetime.now(UTC) - TERMINATED_VISIBLE
        query = query.where(or_(Instance.terminated_at.is_(None), Instance.terminated_at >= cutoff))
    return query


def _check_found(rows: Sequence[Any], ids: list[str]) -> None:
    if ids:
        missing = sorted(set(ids) - {r.id for r in rows})
        if missing:
            raise not_found(
                "InvalidInstanceID.NotFound", f"The instance ID '{missing[0]}' does not exist"
            )


def _visible_rows(s: Session, ctx: RequestContext, ids: list[str]) -> list[Any]:
    """Result rows (the :class:`Instance` columns) of :func:`_visible_query`; every one
    of ``ids`` must be among them (``InvalidInstanceID.NotFound``)."""
    rows = list(s.execute(_visible_query(ctx, ids)))
    _check_found(rows, ids)
    return rows


def _owned(s: Session, ctx: RequestContext, ids: list[str]) -> list[Instance]:
    """The caller's :class:`Instance` objects named by ``ids`` (all must exist)."""
    if not ids:
        raise InvalidParameterValue(
            "The request must contain the parameter InstanceId", code="MissingParameter"
        )
    check_ids(ids, ("i",), "InvalidInstanceID.Malformed")
    query = select(Instance).where(Instance.id.in_(ids)).order_by(Instance.launch_time, Instance.id)
    if not ctx.is_admin:
        query = query.where(Instance.account_id == ctx.caller.account_id)
    rows = list(s.scalars(query))
    _check_found(rows, ids)
    return rows


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

#: Filters that are a plain comparison with a NOT NULL column: a filter on one of them
#: whose values have no wildcard is answered by the database (``column IN (values)``),
#: exactly as the getter above would, so only matching instances are loaded and rendered.
#: Tag filters with exact values are answered by the database too (:func:`_sql_condition`).
_SQL_FILTERS: dict[str, Any] = {
    "instance-id": Instance.id,
    "image-id": Instance.image_id,
    "instance-state-name": Instance.state,
    "instance-type": Instance.instance_type,
    "availability-zone": Instance.zone,
    "reservation-id": Instance.reservation_id,
    "owner-id": Instance.account_id,
}
#: Filters read from the reservation, not the instance item.
_RESERVATION_FILTERS = frozenset(("reservation-id", "owner-id"))


def _sql_condition(name: str, values: list[str]) -> Any | None:
    """The WHERE condition equivalent to filter ``name`` with exact ``values``, or None
    when the filter has to be matched on the rendered items (wildcards, computed fields).

    ``tag:<key>``, ``tag-key`` and ``tag-value`` become a subquery on the tags table
    (an instance matches when one of its tags does, as :class:`TagGetters` reads them)."""
    if any("*" in v or "?" in v for v in values):
        return None
    column = _SQL_FILTERS.get(name)
    if column is not None:
        return column.in_(values)
    if name.startswith("tag:"):
        tagged = select(Tag.resource_id).where(Tag.key == name[4:], Tag.value.in_(values))
    elif name == "tag-key":
        tagged = select(Tag.resource_id).where(Tag.key.in_(values))
    elif name == "tag-value":
        tagged = select(Tag.resource_id).where(Tag.value.in_(values))
    else:
        return None
    return Instance.id.in_(tagged)


def _split_filters(
    filters: Sequence[Mapping[str, Any]] | None,
) -> tuple[list[Any], list[Mapping[str, Any]]]:
    """(SQL conditions, the filters left to match on the rendered items).

    Every filter name is checked first: an unknown one is an error even when no
    instance could match."""
    if not filters:
        return [], []
    apply_filters((), filters, INSTANCE_FILTERS)  # raises for an unknown filter name
    conditions: list[Any] = []
    rest: list[Mapping[str, Any]] = []
    for f in filters:
        condition = _sql_condition(f.get("Name", ""), [str(v) for v in f.get("Values", [])])
        if condition is None:
            rest.append(f)
        else:
            conditions.append(condition)
    return conditions, rest


def _reservations(
    s: Session,
    rows: Sequence[Sequence[Any]],
    filters: Sequence[Mapping[str, Any]] = (),
    ids_query: Select[Any] | None = None,
) -> list[dict[str, Any]]:
    """Group ``rows`` (of :data:`_COLUMNS`, in order) into EC2 reservations, keeping the
    instances that match ``filters``. ``ids_query`` selects (at least) the rows' ids: for
    many rows their tags are read with it, in one query."""
    if ids_query is not None and len(rows) > TAG_QUERY_CHUNK:
        tags = tags_for(s, ids_query)
    else:
        tags = tags_for(s, [row[_ID] for row in rows])
    group_ids = {g for ids in {row[_GROUP_IDS] for row in rows} for g in ids.split(",") if g}
    groups = (
        {g.id: g for g in s.scalars(select(SecurityGroup).where(SecurityGroup.id.in_(group_ids)))}
        if group_ids
        else {}
    )
    group_lists: dict[str, list[dict[str, str]]] = {}
    items = [
        (row, render_instance(row, tags.get(row[_ID]) or [], groups, group_lists)) for row in rows
    ]
    if filters:
        by_reservation = any(f.get("Name") in _RESERVATION_FILTERS for f in filters)
        if by_reservation:
            for row, item in items:
                item["_reservation"], item["_owner"] = row[_RID], row[_ACCOUNT]
        kept = {id(i) for i in apply_filters([i for _, i in items], filters, INSTANCE_FILTERS)}
        items = [(row, item) for row, item in items if id(item) in kept]
        if by_reservation:
            for _, item in items:
                del item["_reservation"], item["_owner"]
    out: dict[str, dict[str, Any]] = {}
    for row, item in items:
        rid, account = row[_RID], row[_ACCOUNT]
        res = out.get(rid)
        if res is None:
            res = out[rid] = {
                "ReservationId": rid,
                "OwnerId": account,
                "RequesterId": row[_REQUESTER] or account,
                "Groups": item["SecurityGroups"],
                "Instances": [],
            }
        res["Instances"].append(item)
    return list(out.values())


async def run_instances(ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
    rid = await InstanceService(ctx.services).run(ctx.caller.account_id, ctx.is_admin, params)
    reservations = await ctx.services.db.run(
        lambda s: _reservations(
            s,
            list(
                s.execute(
                    select(*_COLUMNS)
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
    conditions, rest = _split_filters(params.get("Filters"))
    max_results, next_token = params.get("MaxResults"), params.get("NextToken")

    def work(s: Session) -> tuple[list[dict[str, Any]], str | None]:
        query = _visible_query(ctx, ids).where(*conditions)
        rows = list(s.execute(query))
        if ids and len(rows) < len(set(ids)):
            # Named instances the filters left out still have to exist.
            _visible_rows(s, ctx, ids)
        ids_query: Select[Any] | None = query.with_only_columns(Instance.id).order_by(None)
        if rest:
            # Which reservations match is known once their instances are rendered.
            return paginate(_reservations(s, rows, rest, ids_query), max_results, next_token)
        # Every row is listed: the page is chosen among the reservations (in the order
        # they are listed, by their first instance) before any instance is rendered.
        order = list(dict.fromkeys(row[_RID] for row in rows))
        chosen, token = paginate(order, max_results, next_token)
        if len(chosen) < len(order):
            keep = set(chosen)
            rows = [row for row in rows if row[_RID] in keep]
            ids_query = None
        return _reservations(s, rows, (), ids_query), token

    page, token = await ctx.services.db.run(work)
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
