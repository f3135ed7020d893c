"""Who is asking (authentication through ``eucalypt.auth``) and what they may do (ACLs).

Authentication is delegated entirely to :func:`eucalypt.auth.authenticate`;
this module maps its failures to S3 error codes and turns the resulting
credential into a :class:`Principal`. Authorization follows S3's ACL model:
the owner of a resource may do anything with it, others need a grant
(to them, to ``AuthenticatedUsers`` or to ``AllUsers``) naming the
permission or ``FULL_CONTROL``. Administrators and internal components
(``principal="component:*"``) bypass ACLs.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable
from dataclasses import dataclass

from eucalypt.auth import (
    AuthError,
    AuthFailure,
    CredentialStore,
    HttpRequest,
    SigningKeyCache,
    authenticate,
    has_auth,
)
from eucalypt.auth.clock import parse_http_date
from eucalypt.walrus import errors
from eucalypt.walrus.http import S3Request

ALL_USERS = "http://acs.amazonaws.com/groups/global/AllUsers"
AUTHENTICATED_USERS = "http://acs.amazonaws.com/groups/global/AuthenticatedUsers"
LOG_DELIVERY = "http://acs.amazonaws.com/groups/s3/LogDelivery"
XSI = "http://www.w3.org/2001/XMLSchema-instance"
GROUPS = frozenset({ALL_USERS, AUTHENTICATED_USERS, LOG_DELIVERY})
PERMISSIONS = ("FULL_CONTROL", "WRITE", "WRITE_ACP", "READ", "READ_ACP")
HEADER_PERMISSIONS = ("READ", "WRITE", "READ_ACP", "WRITE_ACP", "FULL_CONTROL")
CANONICAL_ID = re.compile(r"[0-9a-f]{64}")


def valid_canonical_id(value: str) -> str:
    """``value`` if it has the form of a canonical user id; ``InvalidArgument`` if not."""
    value = value.strip()
    if not CANONICAL_ID.fullmatch(value):
        raise errors.InvalidArgument("Invalid id", ArgumentName="CanonicalUser/ID",
                                     ArgumentValue=value)
    return value


def canonical_id(account_id: str) -> str:
    """The S3 canonical user id of an account."""
    return hashlib.sha256(f"eucalypt-account:{account_id}".encode()).hexdigest()


@dataclass(frozen=True)
class Principal:
    """The requester. ``account_id`` is empty for anonymous requests."""

    account_id: str
    display_name: str
    privileged: bool = False

    @property
    def authenticated(self) -> bool:
        return bool(self.account_id) or self.privileged

    @property
    def canonical_id(self) -> str:
        return canonical_id(self.account_id) if self.account_id else ""


ANONYMOUS = Principal(account_id="", display_name="")


@dataclass(frozen=True)
class GrantSpec:
    """One ACL grant. ``grantee`` is a canonical id (CanonicalUser) or a group URI."""

    grantee_type: str
    grantee: str
    permission: str
    display_name: str = ""


@dataclass(frozen=True)
class Acl:
    """A resource's owner and ACL: a canned name, or ``"custom"`` with explicit grants."""

    owner_id: str  # account id
    owner_name: str
    canned: str
    grants: tuple[GrantSpec, ...] = ()
    bucket_owner_id: str = ""

    def effective_grants(self) -> list[GrantSpec]:
        if self.canned == "custom":
            return list(self.grants)
        return expand_canned(self.canned, self.owner_id, self.owner_name, self.bucket_owner_id)

    def allows(self, principal: Principal, permission: str) -> bool:
        if principal.privileged:
            return True
        # The owner may always read and change the ACL (so it can never lock itself out);
        # anything else it may do only as its grants say, as in S3.
        if principal.account_id and principal.account_id == self.owner_id \
                and permission in ("READ_ACP", "WRITE_ACP"):
            return True
        return any(
            _grantee_matches(g, principal) and g.permission in (permission, "FULL_CONTROL")
            for g in self.effective_grants()
        )


def _grantee_matches(grant: GrantSpec, principal: Principal) -> bool:
    if grant.grantee_type == "Group":
        if grant.grantee == ALL_USERS:
            return True
        return grant.grantee == AUTHENTICATED_USERS and principal.authenticated
    return bool(principal.account_id) and grant.grantee == principal.canonical_id


CANNED_ACLS = frozenset({
    "private", "public-read", "public-read-write", "authenticated-read", "aws-exec-read",
    "bucket-owner-read", "bucket-owner-full-control", "log-delivery-write",
})


def expand_canned(canned: str, owner_id: str, owner_name: str,
                  bucket_owner_id: str = "") -> list[GrantSpec]:
    # Group grants first, then the owner's (the order S3 implementations show them in).
    grants: list[GrantSpec] = []
    if canned in ("public-read", "public-read-write"):
        grants.append(GrantSpec("Group", ALL_USERS, "READ"))
    if canned == "public-read-write":
        grants.append(GrantSpec("Group", ALL_USERS, "WRITE"))
    if canned == "authenticated-read":
        grants.append(GrantSpec("Group", AUTHENTICATED_USERS, "READ"))
    if canned == "log-delivery-write":
        grants += [GrantSpec("Group", LOG_DELIVERY, "WRITE"),
                   GrantSpec("Group", LOG_DELIVERY, "READ_ACP")]
    grants.append(GrantSpec("CanonicalUser", canonical_id(owner_id), "FULL_CONTROL", owner_name))
    if canned in ("bucket-owner-read", "bucket-owner-full-control") and bucket_owner_id \
            and bucket_owner_id != owner_id:
        perm = "READ" if canned == "bucket-owner-read" else "FULL_CONTROL"
        grants.append(GrantSpec("CanonicalUser", canonical_id(bucket_owner_id), perm))
    return grants


def require(acl: Acl, principal: Principal, permission: str) -> None:
    if not acl.allows(principal, permission):
        raise errors.AccessDenied()


def require_owner_or(acl: Acl, principal: Principal, permission: str) -> None:
    """For owner-level reads of a bucket (HEAD, location, configurations): the owner may,
    whatever its grants; anyone else needs ``permission``."""
    if principal.account_id and principal.account_id == acl.owner_id:
        return
    require(acl, principal, permission)


def parse_grant_headers(headers: dict[str, str]) -> list[GrantSpec]:
    """``x-amz-grant-read: id="...", uri="..."`` headers as grants."""
    grants: list[GrantSpec] = []
    for perm in HEADER_PERMISSIONS:
        value = headers.get("x-amz-grant-" + perm.lower().replace("_", "-"))
        if not value:
            continue
        for item in _split_grantees(value):
            kind, _, raw = item.partition("=")
            kind = kind.strip().lower()
            who = raw.strip().strip('"')
            if kind == "id" and who:
                grants.append(GrantSpec("CanonicalUser", valid_canonical_id(who), perm))
            elif kind == "uri" and who in GROUPS:
                grants.append(GrantSpec("Group", who, perm))
            elif kind == "emailaddress":
                raise errors.S3NotImplemented("Grants by e-mail address are not supported")
            else:
                raise errors.InvalidArgument(f"Invalid grantee: {item.strip()}")
    return grants


def _split_grantees(value: str) -> Iterable[str]:
    item: list[str] = []
    quoted = False
    for ch in value:
        if ch == '"':
            quoted = not quoted
        if ch == "," and not quoted:
            yield "".join(item)
            item = []
        else:
            item.append(ch)
    if "".join(item).strip():
        yield "".join(item)


def acl_from_request(headers: dict[str, str]) -> tuple[str, list[GrantSpec]]:
    """The ACL a write request asks for: canned (``x-amz-acl``) or explicit grant headers."""
    canned = headers.get("x-amz-acl")
    grants = parse_grant_headers(headers)
    if canned and grants:
        raise errors.InvalidRequest("Specifying both Canned ACLs and Header Grants is not allowed")
    if grants:
        return "custom", grants
    canned = canned or "private"
    if canned not in CANNED_ACLS:
        raise errors.InvalidArgument(f"Invalid canned ACL: {canned}")
    return canned, []


# -- authentication ------------------------------------------------------------

_AUTH_ERRORS: dict[AuthFailure, type[errors.S3Error]] = {
    AuthFailure.MISSING: errors.AccessDenied,
    AuthFailure.MALFORMED: errors.AuthorizationHeaderMalformed,
    AuthFailure.UNKNOWN_KEY: errors.InvalidAccessKeyId,
    AuthFailure.INACTIVE_KEY: errors.InvalidAccessKeyId,
    AuthFailure.BAD_SIGNATURE: errors.SignatureDoesNotMatch,
    AuthFailure.SKEWED: errors.RequestTimeTooSkewed,
    AuthFailure.EXPIRED: errors.AccessDenied,
    AuthFailure.PAYLOAD_MISMATCH: errors.XAmzContentSHA256Mismatch,
    AuthFailure.BAD_CHUNK: errors.SignatureDoesNotMatch,
}


def s3_error_for(exc: AuthError, req: S3Request | None = None) -> errors.S3Error:
    """The S3 error for an authentication failure."""
    reason = exc.reason
    if reason == AuthFailure.EXPIRED:
        return errors.AccessDenied("Request has expired")
    if reason == AuthFailure.MALFORMED:
        # Presigned/query-string problems are AccessDenied in S3; header ones 400.
        in_query = req is not None and "authorization" not in req.headers
        if in_query:
            return errors.AccessDenied(exc.message or "Query-string authentication is malformed")
        return errors.AuthorizationHeaderMalformed(exc.message or None)
    cls = _AUTH_ERRORS.get(reason, errors.AccessDenied)
    return cls()


def check_v2_date(req: S3Request) -> None:
    """A SigV2 header-signed request needs a valid request time: ``x-amz-date`` when present
    (even empty), else ``Date``. S3 answers a missing or invalid one (or one before 1970) with
    403 AccessDenied, not a 400."""
    if not req.headers.get("authorization", "").startswith("AWS "):
        return
    text = req.headers["x-amz-date"] if "x-amz-date" in req.headers else req.headers.get("date")
    stamp = parse_http_date(text) if text else None
    if stamp is None or stamp.year < 1970:
        raise errors.AccessDenied("AWS authentication requires a valid Date or x-amz-date header")


def http_request(req: S3Request) -> HttpRequest:
    return HttpRequest.create(req.method, req.raw_path, req.raw_query, req.headers, None)


async def authenticate_request(req: S3Request, store: CredentialStore,
                               signing_keys: SigningKeyCache | None = None) -> Principal:
    """Verify the request's signature (if any); set ``req.principal`` and payload info."""
    http_req = http_request(req)
    if not has_auth(http_req):
        req.principal = ANONYMOUS
        return ANONYMOUS
    check_v2_date(req)
    try:
        result = await authenticate(http_req, store, s3_bucket_from_host=req.host_bucket,
                                    services=("s3",), signing_keys=signing_keys)
    except AuthError as exc:
        raise s3_error_for(exc, req) from exc
    cred = result.credential
    privileged = cred.is_admin or cred.principal.startswith("component:")
    principal = Principal(
        account_id=cred.account_id,
        display_name=cred.user_name or cred.account_id,
        privileged=privileged,
    )
    req.principal = principal
    req.payload_hash = result.payload_hash
    req.chunk_context = result.chunk_context
    return principal
