"""Tags: CreateTags, DeleteTags, DescribeTags, and TagSpecifications at creation."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from eucalypt.clc.actions.common import paginate
from eucalypt.clc.actions.filters import Getter, apply_filters
from eucalypt.clc.context import RequestContext
from eucalypt.clc.ec2.errors import InvalidParameterValue, not_found
from eucalypt.clc.ids import well_formed
from eucalypt.clc.models import Address, Image, Instance, KeyPair, SecurityGroup, Tag

# id prefix -> (model, resource type as EC2 names it, not-found code)
RESOURCES: dict[str, tuple[Any, str, str]] = {
    "i": (Instance, "instance", "InvalidInstanceID.NotFound"),
    "sg": (SecurityGroup, "security-group", "InvalidGroup.NotFound"),
    "key": (KeyPair, "key-pair", "InvalidKeyPair.NotFound"),
    "emi": (Image, "image", "InvalidAMIID.NotFound"),
    "eki": (Image, "image", "InvalidAMIID.NotFound"),
    "eri": (Image, "image", "InvalidAMIID.NotFound"),
    "ami": (Image, "image", "InvalidAMIID.NotFound"),
    "eipalloc": (Address, "elastic-ip", "InvalidAllocationID.NotFound"),
}
MAX_TAGS = 50


def _check_tag(key: str, value: str) -> None:
    if not key or len(key) > 128:
        raise InvalidParameterValue("Tag keys must be 1-128 characters.")
    if key.lower().startswith("aws:"):
        raise InvalidParameterValue("Tag keys may not start with 'aws:'.")
    if len(value) > 256:
        raise InvalidParameterValue("Tag values may be at most 256 characters.")


def _owned_type(s: Session, account: str, resource_id: str, is_admin: bool) -> str:
    """The resource's EC2 type name; NotFound when it does not exist or is not the caller's."""
    prefix = resource_id.split("-", 1)[0]
    entry = RESOURCES.get(prefix)
    if entry is None or not well_formed(resource_id, [prefix]):
        raise InvalidParameterValue(f"Invalid id: '{resource_id}'", code="InvalidID")
    model, type_name, code = entry
    key = Address.allocation_id if model is Address else model.id
    row = s.scalar(select(model).where(key == resource_id))
    if row is None or (not is_admin and row.account_id != account):
        raise not_found(code, f"The ID '{resource_id}' does not exist")
    return type_name


def drop_tags(s: Session, resource_id: str) -> None:
    """The resource is gone: so are its tags (DescribeTags must not list them)."""
    s.execute(delete(Tag).where(Tag.resource_id == resource_id))


def set_tags(
    s: Session, account: str, resource_id: str, type_name: str, tags: Sequence[dict[str, Any]]
) -> None:
    for tag in tags:
        key, value = tag["Key"], tag.get("Value", "")
        _check_tag(key, value)
        existing = s.get(Tag, (resource_id, key))
        if existing is None:
            s.add(
                Tag(
                    resource_id=resource_id,
                    key=key,
                    value=value,
                    account_id=account,
                    resource_type=type_name,
                )
            )
        else:
            existing.value = value
    s.flush()
    count = len(list(s.scalars(select(Tag.key).where(Tag.resource_id == resource_id))))
    if count > MAX_TAGS:
        raise InvalidParameterValue(
            f"A resource may have at most {MAX_TAGS} tags.", code="TagLimitExceeded"
        )


def apply_tag_specifications(
    s: Session,
    account: str,
    resource_id: str,
    type_name: str,
    specs: Sequence[dict[str, Any]] | None,
) -> None:
    """Tag a resource being created with the TagSpecifications for its type."""
    for spec in specs or []:
        if spec.get("ResourceType", type_name) == type_name:
            set_tags(s, account, resource_id, type_name, spec.get("Tags", []))


async def create_tags(ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
    account, admin = ctx.caller.account_id, ctx.is_admin

    def work(s: Session) -> None:
        for rid in params["Resources"]:
            type_name = _owned_type(s, account, rid, admin)
            set_tags(s, account, rid, type_name, params["Tags"])

    await ctx.services.db.run(work)
    return {}


async def delete_tags(ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
    account, admin = ctx.caller.account_id, ctx.is_admin

    def work(s: Session) -> None:
        for rid in params["Resources"]:
            _owned_type(s, account, rid, admin)
            tags = params.get("Tags")
            if not tags:
                s.execute(delete(Tag).where(Tag.resource_id == rid))
                continue
            for tag in tags:
                row = s.get(Tag, (rid, tag["Key"]))
                # A value given must match for the tag to go (EC2's rule).
                if row is not None and ("Value" not in tag or tag["Value"] == row.value):
                    s.delete(row)

    await ctx.services.db.run(work)
    return {}


class _TagFilters(dict[str, Getter]):
    """DescribeTags filters; ``tag:<key>`` keeps the tags with that key and a matching value."""

    def get(self, name: str, default: Any = None) -> Any:
        if name.startswith("tag:"):
            key = name[4:]
            return lambda t: [t["Value"]] if t["Key"] == key else []
        return super().get(name, default)


TAG_FILTERS = _TagFilters(
    {
        "resource-id": lambda t: [t["ResourceId"]],
        "resource-type": lambda t: [t["ResourceType"]],
        "key": lambda t: [t["Key"]],
        "value": lambda t: [t["Value"]],
    }
)


async def describe_tags(ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
    account, admin = ctx.caller.account_id, ctx.is_admin

    def work(s: Session) -> list[dict[str, Any]]:
        query = select(Tag).order_by(Tag.resource_id, Tag.key)
        if not admin:
            query = query.where(Tag.account_id == account)
        # Instances terminated long ago are gone from DescribeInstances, and their tags too.
        from eucalypt.clc.instances import TERMINATED_VISIBLE  # (it imports this module)

        cutoff = datetime.now(UTC) - TERMINATED_VISIBLE
        gone = {
            instance_id
            for instance_id, ended in s.execute(
                select(Instance.id, Instance.terminated_at).where(
                    Instance.terminated_at.is_not(None)
                )
            )
            if ended.replace(tzinfo=ended.tzinfo or UTC) < cutoff
        }
        return [
            {
                "ResourceId": t.resource_id,
                "ResourceType": t.resource_type,
                "Key": t.key,
                "Value": t.value,
            }
            for t in s.scalars(query)
            if t.resource_id not in gone
        ]

    items = apply_filters(await ctx.services.db.run(work), params.get("Filters"), TAG_FILTERS)
    page, token = paginate(items, params.get("MaxResults"), params.get("NextToken"))
    result: dict[str, Any] = {"Tags": page}
    if token:
        result["NextToken"] = token
    return result
