"""Key pairs: Create (returns the private key), Import, Describe, Delete."""

from __future__ import annotations

import binascii
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from eucalypt.clc import keys
from eucalypt.clc.actions.common import TagGetters, only_requested, tags_for
from eucalypt.clc.actions.filters import apply_filters
from eucalypt.clc.actions.tagging import apply_tag_specifications, drop_tags
from eucalypt.clc.context import RequestContext
from eucalypt.clc.ec2.errors import InvalidParameterValue, duplicate
from eucalypt.clc.ids import new_id
from eucalypt.clc.models import KeyPair


def _check_name(name: str) -> None:
    if not name or len(name) > 255 or not name.isprintable():
        raise InvalidParameterValue("Key pair names must be 1-255 printable ASCII characters.")


async def _store_async(
    ctx: RequestContext, name: str, material: keys.KeyMaterial, params: dict[str, Any]
) -> str:
    try:
        return await ctx.services.db.run(lambda s: _store_in(s, ctx, name, material, params))
    except IntegrityError:
        raise duplicate(
            "InvalidKeyPair.Duplicate", f"The keypair '{name}' already exists."
        ) from None


def _store_in(
    s: Session, ctx: RequestContext, name: str, material: keys.KeyMaterial, params: dict[str, Any]
) -> str:
    account = ctx.caller.account_id
    if s.scalar(select(KeyPair).where(KeyPair.account_id == account, KeyPair.name == name)):
        raise duplicate("InvalidKeyPair.Duplicate", f"The keypair '{name}' already exists.")
    pair = KeyPair(
        id=new_id("key"),
        account_id=account,
        name=name,
        key_type=material.key_type,
        fingerprint=material.fingerprint,
        public_key=material.public_openssh,
    )
    s.add(pair)
    s.flush()
    apply_tag_specifications(s, account, pair.id, "key-pair", params.get("TagSpecifications"))
    return pair.id


async def create_key_pair(ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
    name = params["KeyName"]
    _check_name(name)
    key_type = params.get("KeyType", "rsa")
    if key_type not in ("rsa", "ed25519"):
        raise InvalidParameterValue(f"Invalid KeyType '{key_type}'; use rsa or ed25519.")
    if params.get("KeyFormat", "pem") != "pem":
        raise InvalidParameterValue("Only KeyFormat pem is supported.")
    material = keys.generate(key_type)
    key_id = await _store_async(ctx, name, material, params)
    return {
        "KeyName": name,
        "KeyFingerprint": material.fingerprint,
        "KeyMaterial": material.private_pem,
        "KeyPairId": key_id,
        **_created_tags(params),
    }


def _created_tags(params: dict[str, Any]) -> dict[str, Any]:
    """``{"Tags": [...]}`` when the request tagged the new key pair (EC2 echoes them)."""
    tags = [
        {"Key": t["Key"], "Value": t.get("Value", "")}
        for spec in params.get("TagSpecifications") or []
        if spec.get("ResourceType", "key-pair") == "key-pair"
        for t in spec.get("Tags", [])
    ]
    return {"Tags": tags} if tags else {}


async def import_key_pair(ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
    name = params["KeyName"]
    _check_name(name)
    try:
        material = keys.import_public(params["PublicKeyMaterial"])
    except (ValueError, UnicodeDecodeError, binascii.Error):
        raise InvalidParameterValue(
            "Key is not in valid OpenSSH public key format", code="InvalidKeyPair.Format"
        ) from None
    key_id = await _store_async(ctx, name, material, params)
    return {
        "KeyName": name,
        "KeyFingerprint": material.fingerprint,
        "KeyPairId": key_id,
        **_created_tags(params),
    }


def _render(pair: KeyPair, tags: list[dict[str, str]], include_public: bool) -> dict[str, Any]:
    item: dict[str, Any] = {
        "KeyPairId": pair.id,
        "KeyName": pair.name,
        "KeyFingerprint": pair.fingerprint,
        "KeyType": pair.key_type,
        "Tags": tags,
        "CreateTime": pair.created_at,
    }
    if include_public:
        item["PublicKey"] = pair.public_key
    return item


async def describe_key_pairs(ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
    account = ctx.caller.account_id
    names = params.get("KeyNames") or []
    ids = params.get("KeyPairIds") or []

    def work(s: Session) -> list[dict[str, Any]]:
        query = (
            select(KeyPair)
            .where(KeyPair.account_id == account)
            .order_by(KeyPair.created_at, KeyPair.name)
        )
        pairs = list(s.scalars(query))
        tags = tags_for(s, [p.id for p in pairs])
        return [_render(p, tags.get(p.id, []), bool(params.get("IncludePublicKey"))) for p in pairs]

    items = await ctx.services.db.run(work)
    items = only_requested(
        items, names, "KeyName", "InvalidKeyPair.NotFound", "The key pair name '{0}' does not exist"
    )
    items = only_requested(
        items, ids, "KeyPairId", "InvalidKeyPair.NotFound", "The key pair id '{0}' does not exist"
    )
    items = apply_filters(
        items,
        params.get("Filters"),
        TagGetters(
            {
                "key-name": lambda i: [i["KeyName"]],
                "key-pair-id": lambda i: [i["KeyPairId"]],
                "fingerprint": lambda i: [i["KeyFingerprint"]],
                "key-type": lambda i: [i["KeyType"]],
            }
        ),
    )
    return {"KeyPairs": items}


async def delete_key_pair(ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
    """Deleting a key pair that does not exist succeeds, as in EC2."""
    account = ctx.caller.account_id
    name, key_id = params.get("KeyName"), params.get("KeyPairId")
    if not name and not key_id:
        raise InvalidParameterValue(
            "Either KeyName or KeyPairId must be given.", code="MissingParameter"
        )

    def work(s: Session) -> str | None:
        query = select(KeyPair).where(KeyPair.account_id == account)
        query = query.where(KeyPair.name == name) if name else query.where(KeyPair.id == key_id)
        pair = s.scalar(query)
        if pair is None:
            return None
        drop_tags(s, pair.id)
        s.delete(pair)
        return pair.id

    deleted = await ctx.services.db.run(work)
    result: dict[str, Any] = {"Return": True}
    if deleted:
        result["KeyPairId"] = deleted
    return result
