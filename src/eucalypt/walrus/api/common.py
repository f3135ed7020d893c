"""Helpers shared by the S3 handlers: metadata headers, conditions, ranges."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from urllib.parse import quote

from eucalypt.walrus import errors
from eucalypt.walrus.http import S3Request, http_date, parse_http_date
from eucalypt.walrus.security import Principal, canonical_id
from eucalypt.walrus.services.objects import ObjectView

# Headers stored with an object and returned on GET/HEAD (besides x-amz-meta-*).
STORED_HEADERS = (
    "content-type", "content-encoding", "content-disposition", "cache-control",
    "content-language", "expires", "x-amz-website-redirect-location",
)
DEFAULT_CONTENT_TYPE = "binary/octet-stream"
MAX_USER_METADATA = 2048
STORAGE_CLASSES = frozenset({
    "STANDARD", "REDUCED_REDUNDANCY", "STANDARD_IA", "ONEZONE_IA", "INTELLIGENT_TIERING",
    "GLACIER", "DEEP_ARCHIVE", "GLACIER_IR", "OUTPOSTS", "SNOW", "EXPRESS_ONEZONE",
})
OVERRIDES = {
    "response-content-type": "content-type",
    "response-content-language": "content-language",
    "response-expires": "expires",
    "response-cache-control": "cache-control",
    "response-content-disposition": "content-disposition",
    "response-content-encoding": "content-encoding",
}


def metadata_from(req: S3Request) -> dict[str, str]:
    """The object headers a write request carries (Content-*, x-amz-meta-*)."""
    meta: dict[str, str] = {}
    for name in STORED_HEADERS:
        value = req.headers.get(name)
        if value is not None:
            meta[name] = value
    enc = meta.get("content-encoding")
    if enc is not None:  # aws-chunked is transfer framing, not the object's encoding
        kept = [e.strip() for e in enc.split(",") if e.strip() and e.strip() != "aws-chunked"]
        if kept:
            meta["content-encoding"] = ",".join(kept)
        else:
            del meta["content-encoding"]
    meta.setdefault("content-type", DEFAULT_CONTENT_TYPE)
    user_size = 0
    for name, value in req.headers.items():
        if name.startswith("x-amz-meta-"):
            meta[name] = value
            user_size += len(name) - len("x-amz-meta-") + len(value)
    if user_size > MAX_USER_METADATA:
        raise errors.MetadataTooLarge(Size=str(user_size), MaxSizeAllowed=str(MAX_USER_METADATA))
    return meta


def storage_class_from(req: S3Request) -> str:
    sc = req.headers.get("x-amz-storage-class", "STANDARD").upper()
    if sc not in STORAGE_CLASSES:
        raise errors.InvalidStorageClass(StorageClassRequested=sc)
    return sc


def reject_unsupported(req: S3Request) -> None:
    """Fail loudly for write features Walrus does not implement, instead of ignoring them."""
    for name in ("x-amz-server-side-encryption", "x-amz-server-side-encryption-customer-algorithm",
                 "x-amz-object-lock-mode", "x-amz-object-lock-legal-hold"):
        if name in req.headers:
            raise errors.S3NotImplemented(f"{name} is not supported")


def quoted_etag(etag: str) -> str:
    return f'"{etag}"'


def object_headers(view: ObjectView) -> list[tuple[str, str]]:
    out = [
        ("etag", quoted_etag(view.etag)),
        ("last-modified", http_date(view.last_modified)),
        ("accept-ranges", "bytes"),
    ]
    for name, value in view.headers.items():
        out.append((name, value))
    if view.storage_class != "STANDARD":
        out.append(("x-amz-storage-class", view.storage_class))
    return out


def apply_overrides(req: S3Request, headers: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """``response-content-type=...`` etc. (signed requests only, as in S3)."""
    wanted = {OVERRIDES[k]: v for k, v in req.query.items() if k in OVERRIDES}
    if not wanted:
        return headers
    principal = req.principal
    if principal is None or not principal.authenticated:
        raise errors.InvalidRequest(
            "Request specific response headers cannot be used for anonymous GET requests.")
    kept = [(n, v) for n, v in headers if n not in wanted]
    return kept + list(wanted.items())


def _etag_matches(header: str, etag: str) -> bool:
    tags = [t.strip() for t in header.split(",")]
    return any(t == "*" or t.strip('"') == etag for t in tags)


def _truncate(ts: datetime) -> datetime:
    return ts.replace(microsecond=0)


def check_conditions(headers: dict[str, str], view: ObjectView, *, prefix: str = "",
                     copy: bool = False) -> None:
    """RFC 7232 preconditions (If-Match first, then dates); ``prefix`` for x-amz-copy-source-."""
    lm = _truncate(view.last_modified)
    if_match = headers.get(prefix + "if-match")
    if_none = headers.get(prefix + "if-none-match")
    if_unmod = parse_http_date(headers.get(prefix + "if-unmodified-since", ""))
    if_mod = parse_http_date(headers.get(prefix + "if-modified-since", ""))
    if if_match is not None:
        if not _etag_matches(if_match, view.etag):
            raise errors.PreconditionFailed(Condition=prefix + "If-Match")
    elif if_unmod is not None and lm > if_unmod:
        raise errors.PreconditionFailed(Condition=prefix + "If-Unmodified-Since")
    not_modified = errors.PreconditionFailed if copy else errors.NotModified
    if if_none is not None:
        if _etag_matches(if_none, view.etag):
            exc = not_modified(Condition=prefix + "If-None-Match")
            exc.headers = {"etag": quoted_etag(view.etag), "last-modified": http_date(lm)}
            raise exc
    elif if_mod is not None and lm <= if_mod:
        exc = not_modified(Condition=prefix + "If-Modified-Since")
        exc.headers = {"etag": quoted_etag(view.etag), "last-modified": http_date(lm)}
        raise exc


def parse_range(header: str | None, size: int) -> tuple[int, int] | None:
    """A single ``bytes=`` range as (start, end inclusive); None means the whole object.

    Unparseable or multi-range headers are ignored (the whole object, as S3
    does); a syntactically valid but unsatisfiable range is ``InvalidRange``.
    """
    if not header:
        return None
    unit, _, spec = header.strip().partition("=")
    if unit.strip().lower() != "bytes" or "," in spec:
        return None
    first, dash, last = spec.strip().partition("-")
    if not dash:
        return None
    try:
        if first == "":
            n = int(last)
            if n < 0:
                return None
            if n == 0:
                raise errors.InvalidRange(RangeRequested=header, ActualObjectSize=str(size))
            return max(0, size - n), size - 1
        start = int(first)
        end = int(last) if last else size - 1
    except ValueError:
        return None
    if start < 0 or (last and end < start):
        return None
    if start >= size:
        raise errors.InvalidRange(RangeRequested=header, ActualObjectSize=str(size))
    return start, min(end, size - 1)


def url_encoder(req: S3Request) -> Callable[[str], str]:
    """``encoding-type=url``: a function encoding keys in listings, else identity."""
    enc = req.query.get("encoding-type")
    if enc is None:
        return lambda s: s
    if enc != "url":
        raise errors.InvalidArgument("Invalid Encoding Method specified in Request")
    return lambda s: quote(s, safe="/")


def owner_nodes(owner_id: str, owner_name: str) -> list[tuple[str, str]]:
    return [("ID", canonical_id(owner_id)), ("DisplayName", owner_name or owner_id)]


def int_param(req: S3Request, name: str, default: int, *, lo: int = 0,
              hi: int | None = None) -> int:
    raw = req.query.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError as exc:
        raise errors.InvalidArgument(f"Provided {name} not an integer or within integer range",
                                     ArgumentName=name, ArgumentValue=raw) from exc
    if value < lo:
        raise errors.InvalidArgument(f"Argument {name} must be an integer >= {lo}",
                                     ArgumentName=name, ArgumentValue=raw)
    return min(value, hi) if hi is not None else value


def requester(req: S3Request) -> Principal:
    assert req.principal is not None
    return req.principal
