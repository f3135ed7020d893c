"""The instance metadata service (EC2 IMDS v1 and v2, cloud-init compatible).

Instances reach 169.254.169.254:80; a proxy on their path forwards that to
the CLC and says which instance is asking (header ``x-eucalypt-instance-id``
on a request SigV4-signed with a trusted component's key, the header among
the signed ones). The proxy is the CC's (MANAGED modes, and STATIC when the
CC is the router) or the node's (SYSTEM and STATIC: the NC identifies the
instance by its tap and MAC), so requests signed with the CC's or the NCs'
component key are trusted (``TRUSTED``). An instance only ever sees its own
data.

IMDSv2: ``PUT /latest/api/token`` with ``X-aws-ec2-metadata-token-ttl-seconds``
returns a token bound to the instance; requests that carry
``X-aws-ec2-metadata-token`` must carry a valid one (401 otherwise).
Requests without a token are answered too (``HttpTokens=optional``, EC2's
default).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import secrets
import time
from typing import Any

from sqlalchemy import select
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response

from eucalypt.auth import AuthError, HttpRequest, authenticate
from eucalypt.auth.credentials import CredentialStore
from eucalypt.clc.actions.instances import DNS_INTERNAL, DNS_PUBLIC, dns_name
from eucalypt.clc.context import Services
from eucalypt.clc.models import Instance, SecurityGroup

INSTANCE_HEADER = "x-eucalypt-instance-id"
TOKEN_HEADER = "x-aws-ec2-metadata-token"
TTL_HEADER = "x-aws-ec2-metadata-token-ttl-seconds"
MAX_TTL = 21600
#: The components whose metadata proxies the CLC believes about who is asking.
TRUSTED = frozenset({"component:cc", "component:nc"})

Tree = dict[str, Any]


def _signed_headers(authorization: str) -> set[str]:
    for part in authorization.split(","):
        part = part.strip()
        if "SignedHeaders=" in part:
            return set(part.split("SignedHeaders=", 1)[1].split(";"))
    return set()


class MetadataService:
    def __init__(self, services: Services, components: CredentialStore) -> None:
        self.services = services
        self.components = components
        self._token_key = secrets.token_bytes(32)

    # -- who is asking ---------------------------------------------------------------
    async def _instance_id(self, request: Request, body: bytes) -> str | None:
        http = HttpRequest.create(
            request.method,
            request.scope.get("raw_path", b"/"),
            request.scope.get("query_string", b""),
            request.headers.items(),
            body,
        )
        try:
            result = await authenticate(http, self.components, services=("eucalypt",))
        except AuthError:
            return None
        if result.credential.principal not in TRUSTED:
            return None
        if INSTANCE_HEADER not in _signed_headers(request.headers.get("authorization", "")):
            return None
        return request.headers.get(INSTANCE_HEADER) or None

    # -- IMDSv2 tokens -----------------------------------------------------------------
    def _token(self, instance_id: str, ttl: int) -> str:
        expires = int(time.time()) + ttl
        payload = f"{instance_id}:{expires}".encode()
        mac = hmac.new(self._token_key, payload, hashlib.sha256).digest()
        return base64.urlsafe_b64encode(payload + b":" + mac).decode()

    def _token_ok(self, token: str, instance_id: str) -> bool:
        try:
            raw = base64.urlsafe_b64decode(token.encode())
            # payload ":" mac, the mac being 32 raw bytes (which may hold ":" themselves)
            payload, sep, mac = raw[:-33], raw[-33:-32], raw[-32:]
            if sep != b":":
                return False
            owner, expires = payload.decode().rsplit(":", 1)
        except (ValueError, binascii.Error, UnicodeDecodeError):
            return False
        good = hmac.compare_digest(mac, hmac.new(self._token_key, payload, hashlib.sha256).digest())
        return good and owner == instance_id and int(expires) >= time.time()

    # -- the tree ----------------------------------------------------------------------
    def _tree(self, row: Instance, groups: list[str]) -> Tree:
        config = self.services.config
        private_host = dns_name(row.private_ip, DNS_INTERNAL)
        public_host = dns_name(row.public_ip, DNS_PUBLIC)
        mac = row.mac or "00:00:00:00:00:00"
        meta: Tree = {
            "ami-id": row.image_id,
            "ami-launch-index": str(row.launch_index),
            "ami-manifest-path": "(unknown)",
            "block-device-mapping/": {"ami": "/dev/vda", "root": "/dev/vda"},
            "hostname": private_host,
            "instance-action": "none",
            "instance-id": row.id,
            "instance-type": row.instance_type,
            "local-hostname": private_host,
            "local-ipv4": row.private_ip or "",
            "mac": mac,
            "placement/": {"availability-zone": row.zone, "region": config.region},
            "public-hostname": public_host,
            "public-ipv4": row.public_ip or "",
            "reservation-id": row.reservation_id,
            "security-groups": "\n".join(groups),
            "network/": {
                "interfaces/": {
                    "macs/": {
                        f"{mac}/": {
                            "device-number": "0",
                            "local-hostname": private_host,
                            "local-ipv4s": row.private_ip or "",
                            "mac": mac,
                            "public-hostname": public_host,
                            "public-ipv4s": row.public_ip or "",
                            "security-group-ids": "\n".join(
                                g for g in row.group_ids.split(",") if g
                            ),
                            "security-groups": "\n".join(groups),
                        }
                    }
                }
            },
        }
        if row.kernel_id:
            meta["kernel-id"] = row.kernel_id
        if row.ramdisk_id:
            meta["ramdisk-id"] = row.ramdisk_id
        if row.public_key:
            meta["public-keys/"] = {
                "0/": {"openssh-key": row.public_key + "\n"},
                "_listing": f"0={row.key_name or 'key'}",
            }
        document = {
            "accountId": row.account_id,
            "architecture": "x86_64",
            "availabilityZone": row.zone,
            "imageId": row.image_id,
            "instanceId": row.id,
            "instanceType": row.instance_type,
            "kernelId": row.kernel_id,
            "ramdiskId": row.ramdisk_id,
            "pendingTime": row.launch_time.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "privateIp": row.private_ip,
            "region": config.region,
            "version": "2017-09-30",
        }
        tree: Tree = {
            "meta-data/": meta,
            "dynamic/": {"instance-identity/": {"document": json.dumps(document, indent=2)}},
        }
        if row.user_data:
            try:
                tree["user-data"] = base64.b64decode(row.user_data)
            except (binascii.Error, ValueError):
                tree["user-data"] = row.user_data.encode()
        return tree

    @staticmethod
    def _walk(tree: Tree, parts: list[str]) -> Any:
        node: Any = tree
        for part in parts:
            if not isinstance(node, dict):
                return None
            node = node.get(part + "/") if part + "/" in node else node.get(part)
            if node is None:
                return None
        return node

    @staticmethod
    def _listing(node: Tree) -> str:
        if "_listing" in node:
            return str(node["_listing"])
        return "\n".join(k for k in node if not k.startswith("_"))

    # -- HTTP --------------------------------------------------------------------------
    async def handle(self, request: Request) -> Response:
        body = await request.body()
        instance_id = await self._instance_id(request, body)
        if instance_id is None:
            return PlainTextResponse("Forbidden: metadata is served to instances only\n", 403)
        path = request.url.path
        version, _, rest = path.lstrip("/").partition("/")
        if request.method == "PUT":
            if rest != "api/token" or "x-forwarded-for" in request.headers:
                return PlainTextResponse("Forbidden\n", 403)
            try:
                ttl = int(request.headers.get(TTL_HEADER, ""))
            except ValueError:
                return PlainTextResponse("Bad Request: missing or invalid TTL\n", 400)
            if not 1 <= ttl <= MAX_TTL:
                return PlainTextResponse("Bad Request: TTL must be 1-21600\n", 400)
            return PlainTextResponse(self._token(instance_id, ttl), headers={TTL_HEADER: str(ttl)})
        token = request.headers.get(TOKEN_HEADER)
        if token is not None and not self._token_ok(token, instance_id):
            return PlainTextResponse("Unauthorized\n", 401)

        def load(s: Any) -> tuple[Instance | None, list[str]]:
            row = s.get(Instance, instance_id)
            if row is None:
                return None, []
            ids = [g for g in row.group_ids.split(",") if g]
            names = {
                g.id: g.name
                for g in s.scalars(select(SecurityGroup).where(SecurityGroup.id.in_(ids)))
            }
            return row, [names.get(g, g) for g in ids]

        row, groups = await self.services.db.run(load)
        if row is None:
            return PlainTextResponse("Not Found\n", 404)
        tree = self._tree(row, groups)
        if version == "":
            return PlainTextResponse("latest\n")
        parts = [p for p in rest.split("/") if p]
        node = tree if not parts else self._walk(tree, parts)
        if node is None:
            return PlainTextResponse("Not Found\n", 404)
        if isinstance(node, dict):
            return PlainTextResponse(self._listing(node))
        if isinstance(node, bytes):
            return Response(node, media_type="application/octet-stream")
        return PlainTextResponse(str(node))
