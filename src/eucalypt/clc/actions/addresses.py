"""Elastic IPs: Allocate, Associate, Disassociate, Release, Describe.

Addresses come from the public pools of the clusters (each CC lists its
pool in DescribeNetworks); an address can only be associated with an
instance of the cluster whose pool it belongs to. The CC does the NAT.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from eucalypt.cc.netapi import AssignAddressRequest
from eucalypt.clc.actions.common import TagGetters, only_requested, tags_for
from eucalypt.clc.actions.filters import apply_filters
from eucalypt.clc.actions.tagging import apply_tag_specifications, drop_tags
from eucalypt.clc.context import RequestContext, Services
from eucalypt.clc.ec2.errors import Ec2Error, InvalidParameterValue, not_found
from eucalypt.clc.ids import check_ids, new_id
from eucalypt.clc.models import Address, Instance
from eucalypt.rpc.errors import RemoteError


class InsufficientAddressCapacity(Ec2Error):
    code, status = "InsufficientAddressCapacity", 400


class IncorrectInstanceState(Ec2Error):
    code = "IncorrectInstanceState"


async def pools(services: Services) -> dict[str, list[str]]:
    """zone -> its public addresses, from each CC."""
    out: dict[str, list[str]] = {}
    for zone, cc in services.clusters.items():
        try:
            reply = await cc.describe_networks()
        except RemoteError:
            continue
        out[zone] = [a.public_ip for a in reply.addresses]
    return out


async def allocate(services: Services, account: str | None, zone: str | None = None) -> Address:
    """Take a free address from a pool (``zone``'s, or any); ``account`` None = auto."""
    available = await pools(services)

    def work(s: Session) -> Address:
        taken = set(s.scalars(select(Address.public_ip)))
        for z, ips in available.items():
            if zone and z != zone:
                continue
            for ip in ips:
                if ip not in taken:
                    row = Address(
                        public_ip=ip,
                        allocation_id=new_id("eipalloc"),
                        account_id=account,
                        zone=z,
                        auto=account is None,
                    )
                    s.add(row)
                    s.flush()
                    return row
        raise InsufficientAddressCapacity(
            "There are no free public addresses in the pool; an administrator can add some "
            "(cc.public_ips)."
        )

    return await services.db.run(work)


async def assign(services: Services, address: Address, instance_id: str) -> None:
    """Map ``address`` to the instance on its CC and record the association."""
    cc = services.clusters[address.zone]
    await cc.assign_address(
        AssignAddressRequest(instance_id=instance_id, public_ip=address.public_ip)
    )

    def work(s: Session) -> None:
        row = s.get(Address, address.public_ip)
        inst = s.get(Instance, instance_id)
        if row is None or inst is None:
            return
        row.instance_id, row.association_id = instance_id, new_id("eipassoc")
        inst.public_ip = row.public_ip

    await services.db.run(work)


async def unassign(services: Services, public_ip: str) -> None:
    """Remove the mapping on the CC and in the database; auto addresses go back to the pool."""
    row = await services.db.run(lambda s: s.get(Address, public_ip))
    if row is None:
        return
    cc = services.clusters.get(row.zone)
    if cc is not None:
        try:
            await cc.unassign_address(public_ip)
        except RemoteError:
            pass  # the CC forgets mappings of terminated instances by itself

    def work(s: Session) -> None:
        addr = s.get(Address, public_ip)
        if addr is None:
            return
        if addr.instance_id:
            inst = s.get(Instance, addr.instance_id)
            if inst is not None and inst.public_ip == public_ip:
                inst.public_ip = None
        addr.instance_id = addr.association_id = None
        if addr.auto:
            s.delete(addr)

    await services.db.run(work)


async def release_for_instances(services: Services, instance_ids: list[str]) -> None:
    """Instances are gone: unmap their addresses (auto-assigned ones return to the pool)."""
    if not instance_ids:
        return
    ips = await services.db.run(
        lambda s: list(
            s.scalars(select(Address.public_ip).where(Address.instance_id.in_(instance_ids)))
        )
    )
    for ip in ips:
        await unassign(services, ip)


async def auto_assign(services: Services, instance_id: str, zone: str) -> None:
    """Give a newly running instance a public address from its cluster's pool."""
    try:
        row = await allocate(services, None, zone)
    except InsufficientAddressCapacity:
        return
    try:
        await assign(services, row, instance_id)
    except RemoteError:

        def drop(s: Session) -> None:
            addr = s.get(Address, row.public_ip)
            if addr is not None:
                s.delete(addr)

        await services.db.run(drop)


def _drop(s: Session, public_ip: str) -> None:
    addr = s.get(Address, public_ip)
    if addr is not None:
        s.delete(addr)


def _owned(
    s: Session, ctx: RequestContext, public_ip: str | None, allocation_id: str | None
) -> Address:
    if public_ip:
        row = s.get(Address, public_ip)
    elif allocation_id:
        row = s.scalar(select(Address).where(Address.allocation_id == allocation_id))
    else:
        raise InvalidParameterValue(
            "Either PublicIp or AllocationId must be given.", code="MissingParameter"
        )
    if row is None or row.auto or (row.account_id != ctx.caller.account_id and not ctx.is_admin):
        what = public_ip or allocation_id
        code = "InvalidAddress.NotFound" if public_ip else "InvalidAllocationID.NotFound"
        raise not_found(code, f"Address '{what}' not found.")
    return row


def render(row: Address, private_ip: str | None, tags: list[dict[str, str]]) -> dict[str, Any]:
    item: dict[str, Any] = {
        "PublicIp": row.public_ip,
        "AllocationId": row.allocation_id,
        "Domain": "standard",
        "NetworkBorderGroup": row.zone,
        "Tags": tags,
    }
    if row.instance_id:
        item["InstanceId"] = row.instance_id
        item["AssociationId"] = row.association_id
        if private_ip:
            item["PrivateIpAddress"] = private_ip
    return item


async def allocate_address(ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
    zone = params.get("NetworkBorderGroup")
    domain = params.get("Domain", "standard")
    if domain not in ("standard", "vpc"):
        raise InvalidParameterValue(
            f"Invalid value '{domain}' for domain; use standard (or vpc)."
        )
    if params.get("Address"):
        raise InvalidParameterValue("Allocating a specific address (Address) is not supported.")
    if zone and zone not in ctx.services.clusters:
        raise InvalidParameterValue(f"Invalid network border group '{zone}'")
    row = await allocate(ctx.services, ctx.caller.account_id, zone)
    specs = params.get("TagSpecifications")
    if specs:

        def tag(s: Session) -> None:
            apply_tag_specifications(
                s, ctx.caller.account_id, row.allocation_id, "elastic-ip", specs
            )

        try:
            await ctx.services.db.run(tag)
        except Exception:
            await ctx.services.db.run(lambda s: _drop(s, row.public_ip))
            raise
    return {
        "PublicIp": row.public_ip,
        "AllocationId": row.allocation_id,
        "Domain": "standard",
        "NetworkBorderGroup": row.zone,
    }


async def associate_address(ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
    instance_id = params.get("InstanceId")
    if not instance_id:
        raise InvalidParameterValue("InstanceId is required.", code="MissingParameter")

    check_ids([instance_id], ("i",), "InvalidInstanceID.Malformed")

    def check(s: Session) -> tuple[Address, str | None]:
        row = _owned(s, ctx, params.get("PublicIp"), params.get("AllocationId"))
        inst = s.get(Instance, instance_id)
        if inst is None or (inst.account_id != ctx.caller.account_id and not ctx.is_admin):
            raise not_found(
                "InvalidInstanceID.NotFound", f"The instance ID '{instance_id}' does not exist"
            )
        if inst.state not in ("pending", "running"):
            raise IncorrectInstanceState(f"The instance '{instance_id}' is not running.")
        if inst.zone != row.zone:
            raise InvalidParameterValue(
                f"Address {row.public_ip} belongs to zone {row.zone}; "
                f"the instance is in {inst.zone}."
            )
        if (
            row.instance_id
            and row.instance_id != instance_id
            and not params.get("AllowReassociation", True)
        ):
            raise Ec2Error(
                f"Address {row.public_ip} is associated.", code="Resource.AlreadyAssociated"
            )
        return row, inst.public_ip

    row, current = await ctx.services.db.run(check)
    if row.instance_id and row.instance_id != instance_id:
        await unassign(ctx.services, row.public_ip)
    if current and current != row.public_ip:
        await unassign(ctx.services, current)
    try:
        await assign(ctx.services, row, instance_id)
    except RemoteError as exc:
        raise IncorrectInstanceState(
            f"The cluster could not map {row.public_ip} to {instance_id}: {exc.message}"
        ) from None
    assoc = await ctx.services.db.run(lambda s: s.get(Address, row.public_ip).association_id)  # type: ignore[union-attr]
    return {"AssociationId": assoc}


async def disassociate_address(ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
    def find(s: Session) -> str:
        if params.get("AssociationId"):
            row = s.scalar(select(Address).where(Address.association_id == params["AssociationId"]))
            if row is None or (row.account_id != ctx.caller.account_id and not ctx.is_admin):
                raise not_found(
                    "InvalidAssociationID.NotFound",
                    f"Association '{params['AssociationId']}' not found.",
                )
            return row.public_ip
        return _owned(s, ctx, params.get("PublicIp"), None).public_ip

    await unassign(ctx.services, await ctx.services.db.run(find))
    return {}


async def release_address(ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
    row = await ctx.services.db.run(
        lambda s: _owned(s, ctx, params.get("PublicIp"), params.get("AllocationId"))
    )
    if row.instance_id:
        await unassign(ctx.services, row.public_ip)

    def work(s: Session) -> None:
        drop_tags(s, row.allocation_id)
        _drop(s, row.public_ip)

    await ctx.services.db.run(work)
    return {}


async def describe_addresses(ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
    def work(s: Session) -> list[dict[str, Any]]:
        query = select(Address).where(Address.auto.is_(False)).order_by(Address.public_ip)
        if not ctx.is_admin:
            query = query.where(Address.account_id == ctx.caller.account_id)
        rows = list(s.scalars(query))
        inst_ids = [r.instance_id for r in rows if r.instance_id]
        private = {
            i.id: i.private_ip for i in s.scalars(select(Instance).where(Instance.id.in_(inst_ids)))
        }
        tags = tags_for(s, [r.allocation_id for r in rows])
        return [
            render(r, private.get(r.instance_id or ""), tags.get(r.allocation_id, [])) for r in rows
        ]

    items = await ctx.services.db.run(work)
    items = only_requested(
        items,
        params.get("PublicIps"),
        "PublicIp",
        "InvalidAddress.NotFound",
        "Address '{0}' not found.",
    )
    items = only_requested(
        items,
        params.get("AllocationIds"),
        "AllocationId",
        "InvalidAllocationID.NotFound",
        "Address '{0}' not found.",
    )
    items = apply_filters(
        items,
        params.get("Filters"),
        TagGetters(
            {
                "public-ip": lambda a: [a["PublicIp"]],
                "allocation-id": lambda a: [a["AllocationId"]],
                "instance-id": lambda a: [a.get("InstanceId", "")],
                "association-id": lambda a: [a.get("AssociationId", "")],
                "private-ip-address": lambda a: [a.get("PrivateIpAddress", "")],
                "domain": lambda a: [a["Domain"]],
                "network-border-group": lambda a: [a["NetworkBorderGroup"]],
            }
        ),
    )
    return {"Addresses": items}
