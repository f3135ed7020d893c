"""Security groups: Create, Delete, Describe, Authorize/Revoke ingress.

In the MANAGED network modes a security group is also the paper's named
network; every change is pushed to the CCs (``services.netsync``), which
apply it to running instances at once.
"""

from __future__ import annotations

import ipaddress
from collections import defaultdict
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from eucalypt.clc.actions.common import TagGetters, only_requested, paginate, tags_for
from eucalypt.clc.actions.filters import apply_filters
from eucalypt.clc.actions.tagging import apply_tag_specifications, drop_tags
from eucalypt.clc.context import RequestContext
from eucalypt.clc.ec2.errors import (
    Ec2Error,
    InvalidParameterCombination,
    InvalidParameterValue,
    MissingParameter,
    duplicate,
    not_found,
)
from eucalypt.clc.ids import new_id
from eucalypt.clc.models import Instance, SecurityGroup, SecurityGroupRule

DEFAULT_GROUP = "default"
PROTOCOLS = {
    "tcp": "tcp",
    "6": "tcp",
    "udp": "udp",
    "17": "udp",
    "icmp": "icmp",
    "1": "icmp",
    "-1": "-1",
    "all": "-1",
}
LIVE_STATES = ("pending", "running", "stopping", "stopped", "shutting-down")


class DependencyViolation(Ec2Error):
    code = "DependencyViolation"


class InvalidGroupInUse(Ec2Error):
    code = "InvalidGroup.InUse"


@dataclass(frozen=True)
class RuleKey:
    protocol: str
    from_port: int
    to_port: int
    cidr: str | None
    source_group_id: str | None


def ensure_default_group(s: Session, account: str) -> SecurityGroup:
    """Every account has a group named ``default``; members may reach each other."""
    group = s.scalar(
        select(SecurityGroup).where(
            SecurityGroup.account_id == account, SecurityGroup.name == DEFAULT_GROUP
        )
    )
    if group is None:
        group = SecurityGroup(
            id=new_id("sg"), account_id=account, name=DEFAULT_GROUP, description="default group"
        )
        s.add(group)
        s.flush()
        s.add(
            SecurityGroupRule(
                id=new_id("sgr"),
                group_id=group.id,
                protocol="-1",
                from_port=-1,
                to_port=-1,
                source_group_id=group.id,
            )
        )
        s.flush()
    return group


def find_group(
    s: Session,
    account: str,
    *,
    group_id: str | None = None,
    name: str | None = None,
    is_admin: bool = False,
) -> SecurityGroup:
    if group_id:
        group = s.get(SecurityGroup, group_id)
        if group is None or (group.account_id != account and not is_admin):
            raise not_found(
                "InvalidGroup.NotFound", f"The security group '{group_id}' does not exist"
            )
        return group
    if name == DEFAULT_GROUP:
        return ensure_default_group(s, account)
    group = s.scalar(
        select(SecurityGroup).where(SecurityGroup.account_id == account, SecurityGroup.name == name)
    )
    if group is None:
        raise not_found(
            "InvalidGroup.NotFound", f"The security group '{name}' does not exist in this account"
        )
    return group


def _target(s: Session, ctx: RequestContext, params: dict[str, Any]) -> SecurityGroup:
    if not params.get("GroupId") and not params.get("GroupName"):
        raise InvalidParameterValue(
            "Either GroupId or GroupName must be given.", code="MissingParameter"
        )
    return find_group(
        s,
        ctx.caller.account_id,
        group_id=params.get("GroupId"),
        name=params.get("GroupName"),
        is_admin=ctx.is_admin,
    )


def _port(value: Any, what: str) -> int:
    if value is None:
        return -1
    if not -1 <= int(value) <= 65535:
        raise InvalidParameterValue(f"Invalid {what}: {value}", code="InvalidParameterValue")
    return int(value)


def _rule_keys(
    s: Session,
    ctx: RequestContext,
    params: dict[str, Any],
    descriptions: dict[RuleKey, str] | None = None,
) -> list[RuleKey]:
    """The rules a request names, from IpPermissions or the legacy flat parameters.

    Descriptions given on IpRanges / UserIdGroupPairs go into ``descriptions`` (they are
    not part of a rule's identity: EC2 matches rules without them).
    """
    descriptions = {} if descriptions is None else descriptions
    perms = list(params.get("IpPermissions") or [])
    if not perms and params.get("IpProtocol"):
        perm: dict[str, Any] = {
            "IpProtocol": params["IpProtocol"],
            "FromPort": params.get("FromPort"),
            "ToPort": params.get("ToPort"),
        }
        if params.get("CidrIp"):
            perm["IpRanges"] = [{"CidrIp": params["CidrIp"]}]
        if params.get("SourceSecurityGroupName"):
            perm["UserIdGroupPairs"] = [{"GroupName": params["SourceSecurityGroupName"]}]
        perms = [perm]
    elif not perms and params.get("SourceSecurityGroupName"):
        perms = [
            {
                "IpProtocol": "-1",
                "UserIdGroupPairs": [{"GroupName": params["SourceSecurityGroupName"]}],
            }
        ]
    if not perms:
        raise InvalidParameterValue("No IpPermissions given.", code="MissingParameter")
    out: list[RuleKey] = []
    for perm in perms:
        if "IpProtocol" not in perm:
            raise InvalidParameterValue(
                "The request must contain the parameter IpProtocol", code="MissingParameter"
            )
        proto = PROTOCOLS.get(str(perm.get("IpProtocol", "")).lower())
        if proto is None:
            raise InvalidParameterValue(
                f"Invalid IP protocol '{perm.get('IpProtocol')}'; use tcp, udp, icmp or -1.",
                code="InvalidParameterValue",
            )
        lo, hi = _port(perm.get("FromPort"), "FromPort"), _port(perm.get("ToPort"), "ToPort")
        if proto == "-1":
            lo = hi = -1
        elif proto in ("tcp", "udp") and (lo < 0 or hi < 0 or lo > hi):
            raise InvalidParameterValue(
                f"Invalid port range {lo}-{hi} for {proto}: give FromPort <= ToPort, 0-65535."
            )
        sources: list[tuple[str | None, str | None]] = []
        for rng in perm.get("IpRanges") or []:
            raw = str(rng.get("CidrIp", ""))
            try:
                if "/" not in raw:
                    raise ValueError(raw)
                cidr = str(ipaddress.IPv4Network(raw, strict=False))
            except ValueError:
                raise InvalidParameterValue(
                    f"CIDR block {raw} is malformed", code="InvalidParameterValue"
                ) from None
            sources.append((cidr, None))
            if rng.get("Description"):
                descriptions[RuleKey(proto, lo, hi, cidr, None)] = str(rng["Description"])
        for pair in perm.get("UserIdGroupPairs") or []:
            src = find_group(
                s,
                pair.get("UserId") or ctx.caller.account_id,
                group_id=pair.get("GroupId"),
                name=pair.get("GroupName"),
                is_admin=True,
            )
            sources.append((None, src.id))
            if pair.get("Description"):
                descriptions[RuleKey(proto, lo, hi, None, src.id)] = str(pair["Description"])
        if not sources:
            raise InvalidParameterValue(
                "A permission needs IpRanges or UserIdGroupPairs.", code="MissingParameter"
            )
        out.extend(RuleKey(proto, lo, hi, c, g) for c, g in sources)
    return out


def _key(rule: SecurityGroupRule) -> RuleKey:
    return RuleKey(rule.protocol, rule.from_port, rule.to_port, rule.cidr, rule.source_group_id)


def _display_order(rule: SecurityGroupRule) -> tuple[int, int, int, str]:
    """Rules by protocol and ports, then CIDRs in address order, then source groups."""
    if rule.cidr:
        net = ipaddress.ip_network(rule.cidr, strict=False)
        where = f"{int(net.network_address):010d}/{net.prefixlen:02d}"
        return (rule.from_port, rule.to_port, 0, where)
    return (rule.from_port, rule.to_port, 1, rule.source_group_id or "")


def render_group(
    group: SecurityGroup, tags: list[dict[str, str]], names: dict[str, SecurityGroup]
) -> dict[str, Any]:
    perms: dict[tuple[str, int, int], dict[str, Any]] = {}
    for rule in sorted(group.rules, key=_display_order):
        key = (rule.protocol, rule.from_port, rule.to_port)
        perm = perms.get(key)
        if perm is None:
            perm = {
                "IpProtocol": rule.protocol,
                "IpRanges": [],
                "UserIdGroupPairs": [],
                "Ipv6Ranges": [],
                "PrefixListIds": [],
            }
            if rule.protocol != "-1":
                perm["FromPort"], perm["ToPort"] = rule.from_port, rule.to_port
            perms[key] = perm
        described = {"Description": rule.description} if rule.description else {}
        if rule.cidr:
            perm["IpRanges"].append({"CidrIp": rule.cidr, **described})
        elif rule.source_group_id:
            src = names.get(rule.source_group_id)
            perm["UserIdGroupPairs"].append(
                {
                    "GroupId": rule.source_group_id,
                    "GroupName": src.name if src else "",
                    "UserId": src.account_id if src else "",
                    **described,
                }
            )
    return {
        "GroupId": group.id,
        "GroupName": group.name,
        "Description": group.description,
        "OwnerId": group.account_id,
        "IpPermissions": list(perms.values()),
        "IpPermissionsEgress": [
            {
                "IpProtocol": "-1",
                "IpRanges": [{"CidrIp": "0.0.0.0/0"}],
                "UserIdGroupPairs": [],
                "Ipv6Ranges": [],
                "PrefixListIds": [],
            }
        ],
        "Tags": tags,
    }


async def create_security_group(ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
    account = ctx.caller.account_id
    name, description = params["GroupName"], params["Description"]
    if not description:
        raise MissingParameter("The request must contain the parameter GroupDescription")
    if not name or len(name) > 255 or name.startswith("sg-"):
        raise InvalidParameterValue("Group names are 1-255 characters and may not start with sg-.")
    if len(description) > 255:
        raise InvalidParameterValue("Descriptions may be at most 255 characters.")

    def work(s: Session) -> str:
        ensure_default_group(s, account)
        if s.scalar(
            select(SecurityGroup).where(
                SecurityGroup.account_id == account, SecurityGroup.name == name
            )
        ):
            raise duplicate("InvalidGroup.Duplicate", f"The security group '{name}' already exists")
        group = SecurityGroup(
            id=new_id("sg"), account_id=account, name=name, description=description
        )
        s.add(group)
        s.flush()
        apply_tag_specifications(
            s, account, group.id, "security-group", params.get("TagSpecifications")
        )
        return group.id

    group_id = await ctx.services.db.run(work)
    await ctx.services.netsync.group_changed(group_id)
    return {"GroupId": group_id}


async def delete_security_group(ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
    account = ctx.caller.account_id

    def work(s: Session) -> str:
        group = _target(s, ctx, params)
        if group.name == DEFAULT_GROUP:
            raise InvalidParameterValue(
                "The default security group cannot be deleted.", code="CannotDelete"
            )
        for inst in s.scalars(
            select(Instance).where(
                Instance.account_id == group.account_id, Instance.state.in_(LIVE_STATES)
            )
        ):
            if group.id in inst.group_ids.split(","):
                raise DependencyViolation(
                    f"resource {group.id} has a dependent object: instance {inst.id}"
                )
        ref = s.scalar(
            select(SecurityGroupRule).where(
                SecurityGroupRule.source_group_id == group.id,
                SecurityGroupRule.group_id != group.id,
            )
        )
        if ref is not None:
            raise InvalidGroupInUse(f"Group {group.id} is used by rules of group {ref.group_id}")
        gid = group.id
        drop_tags(s, gid)
        s.delete(group)
        return gid

    del account
    group_id = await ctx.services.db.run(work)
    await ctx.services.netsync.group_deleted(group_id)
    return {"Return": True, "GroupId": group_id}


async def describe_security_groups(ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
    account = ctx.caller.account_id
    if (params.get("GroupIds") or params.get("GroupNames")) and "MaxResults" in params:
        raise InvalidParameterCombination(
            "The parameter groupIdSet cannot be used with the parameter maxResults"
        )

    def work(s: Session) -> list[dict[str, Any]]:
        ensure_default_group(s, account)
        query = select(SecurityGroup).order_by(SecurityGroup.name, SecurityGroup.id)
        if not ctx.is_admin:
            query = query.where(SecurityGroup.account_id == account)
        groups = list(s.scalars(query))
        names = {g.id: g for g in groups}
        tags = tags_for(s, names)
        return [render_group(g, tags.get(g.id, []), names) for g in groups]

    items = await ctx.services.db.run(work)
    for wanted, field in (
        (params.get("GroupNames"), "GroupName"),
        (params.get("GroupIds"), "GroupId"),
    ):
        items = only_requested(
            items, wanted, field, "InvalidGroup.NotFound", "The security group '{0}' does not exist"
        )
    items = apply_filters(
        items,
        params.get("Filters"),
        TagGetters(
            {
                "group-id": lambda g: [g["GroupId"]],
                "group-name": lambda g: [g["GroupName"]],
                "description": lambda g: [g["Description"]],
                "owner-id": lambda g: [g["OwnerId"]],
                "ip-permission.protocol": lambda g: [p["IpProtocol"] for p in g["IpPermissions"]],
                "ip-permission.from-port": lambda g: [
                    str(p.get("FromPort", -1)) for p in g["IpPermissions"]
                ],
                "ip-permission.to-port": lambda g: [
                    str(p.get("ToPort", -1)) for p in g["IpPermissions"]
                ],
                "ip-permission.cidr": lambda g: [
                    r["CidrIp"] for p in g["IpPermissions"] for r in p["IpRanges"]
                ],
                "ip-permission.group-id": lambda g: [
                    u["GroupId"] for p in g["IpPermissions"] for u in p["UserIdGroupPairs"]
                ],
            }
        ),
    )
    page, token = paginate(items, params.get("MaxResults"), params.get("NextToken"))
    result: dict[str, Any] = {"SecurityGroups": page}
    if token:
        result["NextToken"] = token
    return result


async def authorize_security_group_ingress(
    ctx: RequestContext, params: dict[str, Any]
) -> dict[str, Any]:
    def work(s: Session) -> tuple[str, list[dict[str, Any]]]:
        group = _target(s, ctx, params)
        existing = {_key(r) for r in group.rules}
        added = []
        descriptions: dict[RuleKey, str] = {}
        for key in _rule_keys(s, ctx, params, descriptions):
            if key in existing:
                raise duplicate(
                    "InvalidPermission.Duplicate",
                    f'the specified rule "peer: {key.cidr or key.source_group_id}, '
                    f"{key.protocol.upper()}, from port: {key.from_port}, "
                    f'to port: {key.to_port}, ALLOW" already exists',
                )
            rule = SecurityGroupRule(
                id=new_id("sgr"),
                group_id=group.id,
                description=descriptions.get(key, ""),
                **key.__dict__,
            )
            s.add(rule)
            existing.add(key)
            added.append(
                {
                    "SecurityGroupRuleId": rule.id,
                    "GroupId": group.id,
                    "GroupOwnerId": group.account_id,
                    "IsEgress": False,
                    "IpProtocol": key.protocol,
                    "FromPort": key.from_port,
                    "ToPort": key.to_port,
                    **({"CidrIpv4": key.cidr} if key.cidr else {}),
                    **(
                        {"ReferencedGroupInfo": {"GroupId": key.source_group_id}}
                        if key.source_group_id
                        else {}
                    ),
                    "Description": descriptions.get(key, ""),
                }
            )
        return group.id, added

    group_id, added = await ctx.services.db.run(work)
    await ctx.services.netsync.group_changed(group_id)
    return {"Return": True, "SecurityGroupRules": added}


async def revoke_security_group_ingress(
    ctx: RequestContext, params: dict[str, Any]
) -> dict[str, Any]:
    def work(s: Session) -> str:
        group = _target(s, ctx, params)
        by_key = defaultdict(list)
        for rule in group.rules:
            by_key[_key(rule)].append(rule)
        for key in _rule_keys(s, ctx, params):
            if key not in by_key:
                raise not_found(
                    "InvalidPermission.NotFound",
                    "The specified rule does not exist in this security group.",
                )
            for rule in by_key.pop(key):
                s.delete(rule)
        return group.id

    group_id = await ctx.services.db.run(work)
    await ctx.services.netsync.group_changed(group_id)
    return {"Return": True}
