"""POST Object: browser-based uploads with an HTML form (``multipart/form-data``).

The form's fields come first and the ``file`` field last; fields after it are
ignored, as in S3. A form with a ``policy`` is signed: the policy (base64 JSON
with an ``expiration`` and ``conditions``) is signed with SigV2 (``AWSAccessKeyId``
+ ``signature``, HMAC-SHA1) or SigV4 (``x-amz-credential`` + ``x-amz-signature``),
and every field must satisfy it. A form without one is anonymous. The file's bytes
stream into a blob as they arrive (memory stays bounded).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import re
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

from eucalypt.walrus import errors, xml
from eucalypt.walrus.api.common import DEFAULT_CONTENT_TYPE, MAX_USER_METADATA, STORED_HEADERS
from eucalypt.walrus.body import chunks
from eucalypt.walrus.http import MAX_KEY_BYTES, Response, S3Request, empty_response, xml_response
from eucalypt.walrus.security import (
    ANONYMOUS,
    CANNED_ACLS,
    Principal,
    require,
)
from eucalypt.walrus.services import Context
from eucalypt.walrus.services import buckets as bsvc
from eucalypt.walrus.services import objects as osvc
from eucalypt.walrus.storage import BlobWriter
from eucalypt.walrus.upload import MAX_PUT_SIZE, StoredBlob

MAX_FIELDS_BYTES = 1 << 20  # all the form fields before the file, together
# Fields a policy need not mention.
UNCHECKED = frozenset({"awsaccesskeyid", "signature", "file", "policy", "x-amz-signature"})


def _bad(message: str) -> errors.S3Error:
    return errors.InvalidArgument(message)


def _denied(message: str) -> errors.S3Error:
    return errors.AccessDenied(f"Invalid according to Policy: {message}")


class FormReader:
    """Splits a multipart/form-data body into parts as its chunks arrive."""

    def __init__(self, source: AsyncIterator[bytes], boundary: bytes) -> None:
        self.source = source
        self.delimiter = b"\r\n--" + boundary
        self.buf = bytearray(b"\r\n")  # so the first boundary looks like every other one
        self.done = False

    async def _fill(self) -> bool:
        try:
            chunk = await self.source.__anext__()
        except StopAsyncIteration:
            return False
        self.buf += chunk
        return True

    async def next_part(self) -> dict[str, str] | None:
        """Skip to the next part; its headers (lower-case names), or None at the end."""
        while True:
            at = self.buf.find(self.delimiter)
            if at >= 0 and len(self.buf) >= at + len(self.delimiter) + 2:
                break
            if not await self._fill():
                raise errors.MalformedPOSTRequest()
        del self.buf[: at + len(self.delimiter)]
        if self.buf.startswith(b"--"):
            self.done = True
            return None
        while (end := self.buf.find(b"\r\n\r\n")) < 0:
            if len(self.buf) > 64 << 10 or not await self._fill():
                raise errors.MalformedPOSTRequest()
        lines = bytes(self.buf[:end]).decode("utf-8", "replace").split("\r\n")
        del self.buf[: end + 4]
        headers: dict[str, str] = {}
        for line in lines:
            name, _, value = line.partition(":")
            if name.strip():
                headers[name.strip().lower()] = value.strip()
        return headers

    async def content(self) -> AsyncIterator[bytes]:
        """The current part's bytes, up to (not including) the next boundary."""
        keep = len(self.delimiter)
        while True:
            at = self.buf.find(self.delimiter)
            if at >= 0:
                if at:
                    yield bytes(self.buf[:at])
                    del self.buf[:at]
                return
            if len(self.buf) > keep:
                out = bytes(self.buf[: len(self.buf) - keep])
                del self.buf[: len(out)]
                yield out
            if not await self._fill():
                raise errors.MalformedPOSTRequest()


def _disposition(headers: dict[str, str]) -> tuple[str, str | None]:
    value = headers.get("content-disposition", "")
    name = re.search(r'(?:^|;)\s*name="([^"]*)"', value) or re.search(r"(?:^|;)\s*name=([^;]*)",
                                                                       value)
    filename = re.search(r'(?:^|;)\s*filename="([^"]*)"', value)
    if name is None:
        raise errors.MalformedPOSTRequest()
    return name.group(1).strip(), filename.group(1) if filename else None


def _boundary(req: S3Request) -> bytes:
    ctype = req.headers.get("content-type", "")
    if not ctype.lower().startswith("multipart/form-data"):
        raise errors.PreconditionFailed(Condition="Bucket POST must be of the enclosure-type "
                                                  "multipart/form-data")
    found = re.search(r'boundary="?([^";]+)"?', ctype)
    if found is None:
        raise errors.MalformedPOSTRequest()
    return found.group(1).encode("latin-1")


def _parse_policy(raw: str) -> tuple[datetime, list[Any]]:
    try:
        doc = json.loads(base64.b64decode(raw, validate=False))
    except (binascii.Error, ValueError) as exc:
        raise _bad("Invalid Policy: Invalid JSON.") from exc
    if not isinstance(doc, dict) or "expiration" not in doc:
        raise _bad("Invalid Policy: Policy missing expiration.")
    try:
        expiration = datetime.fromisoformat(str(doc["expiration"]).replace("Z", "+00:00"))
    except ValueError as exc:
        raise _bad("Invalid Policy: Invalid 'expiration' value.") from exc
    if not str(doc["expiration"]).endswith("Z") or expiration.tzinfo is None:
        raise _bad("Invalid Policy: Invalid 'expiration' value.")
    conditions = doc.get("conditions")
    if not isinstance(conditions, list):
        raise _bad("Invalid Policy: Policy missing conditions.")
    return expiration, conditions


def _check_policy(conditions: list[Any], fields: dict[str, str], size_range: list[int]) -> None:
    """Every condition holds and every field is covered; fills ``size_range``."""
    covered: set[str] = set()
    for cond in conditions:
        if isinstance(cond, dict):
            if len(cond) != 1:
                raise _bad("Invalid Policy: Invalid Simple-Condition: Simple-Conditions must "
                           "have exactly one property specified.")
            ((name, value),) = cond.items()
            op, field, want = "eq", str(name).lower().lstrip("$"), value
        elif isinstance(cond, list) and cond:
            op = str(cond[0]).lower()
            if op == "content-length-range":
                if len(cond) != 3 or not all(isinstance(v, int) for v in cond[1:]) \
                        or cond[1] < 0 or cond[2] < cond[1]:
                    raise _bad("Invalid Policy: Invalid content-length-range condition.")
                size_range[:] = [cond[1], cond[2]]
                continue
            if op not in ("eq", "starts-with") or len(cond) != 3 \
                    or not str(cond[1]).startswith("$"):
                raise _bad(f"Invalid Policy: Invalid condition: {cond!r}")
            field, want = str(cond[1])[1:].lower(), cond[2]
        else:
            raise _bad("Invalid Policy: Invalid condition.")
        if not isinstance(want, str):
            raise _bad(f"Invalid Policy: Invalid condition value for {field}.")
        got = fields.get(field)
        if got is None:
            raise _denied(f"Policy Condition failed: [\"{op}\", \"${field}\", \"{want}\"]")
        ok = got == want if op == "eq" else got.startswith(want)
        if not ok:
            raise _denied(f"Policy Condition failed: [\"{op}\", \"${field}\", \"{want}\"]")
        covered.add(field)
    extra = [f for f in fields if f not in covered and f not in UNCHECKED
             and not f.startswith("x-ignore-")]
    if extra:
        raise _denied(f"Extra input fields: {', '.join(sorted(extra))}")


async def _signer(ctx: Context, fields: dict[str, str]) -> Principal:
    """The account that signed the form's policy (SigV2 or SigV4)."""
    policy = fields["policy"]
    if "x-amz-signature" in fields or "x-amz-credential" in fields:
        if fields.get("x-amz-algorithm") != "AWS4-HMAC-SHA256" or "x-amz-signature" not in fields \
                or "x-amz-credential" not in fields:
            raise _bad("Bucket POST must contain the fields x-amz-algorithm, x-amz-credential "
                       "and x-amz-signature")
        scope = fields["x-amz-credential"].split("/")
        if len(scope) != 5 or scope[4] != "aws4_request":
            raise _bad("Invalid x-amz-credential")
        access_key, given = scope[0], fields["x-amz-signature"]
    else:
        if "awsaccesskeyid" not in fields:
            raise _bad("Bucket POST must contain a field named 'AWSAccessKeyId'.  If it is "
                       "specified, please check the order of the fields.")
        if "signature" not in fields:
            raise _bad("Bucket POST must contain a field named 'Signature'.  If it is "
                       "specified, please check the order of the fields.")
        access_key, given, scope = fields["awsaccesskeyid"], fields["signature"], []
    cred = await ctx.credentials.lookup(access_key) if ctx.credentials else None
    if cred is None or not cred.active:
        raise errors.InvalidAccessKeyId()
    if scope:
        key = ("AWS4" + cred.secret_key).encode()
        for part in scope[1:]:
            key = hmac.new(key, part.encode(), hashlib.sha256).digest()
        expected = hmac.new(key, policy.encode(), hashlib.sha256).hexdigest()
    else:
        expected = base64.b64encode(
            hmac.new(cred.secret_key.encode(), policy.encode(), hashlib.sha1).digest()).decode()
    if not hmac.compare_digest(expected.encode(), given.strip().encode("utf-8", "replace")):
        raise errors.SignatureDoesNotMatch()
    return Principal(account_id=cred.account_id, display_name=cred.user_name or cred.account_id,
                     privileged=cred.is_admin or cred.principal.startswith("component:"))


async def _store_file(ctx: Context, form: FormReader, limit: int) -> StoredBlob:
    writer: BlobWriter = await ctx.io(ctx.store.create)
    md5, size = hashlib.md5(), 0
    try:
        async for data in form.content():
            size += len(data)
            if size > limit:
                raise errors.EntityTooLarge()
            md5.update(data)
            await ctx.io(writer.write, data)
        blob_id = await ctx.io(writer.commit)
    except BaseException:
        await ctx.io(writer.abort)
        raise
    return StoredBlob(blob_id, size, md5.digest())


async def post_object(ctx: Context, req: S3Request) -> Response:
    bucket = await bsvc.get_bucket(ctx, req.require_bucket())
    form = FormReader(chunks(req), _boundary(req))
    fields: dict[str, str] = {}
    total = 0
    filename: str | None = None
    while True:
        headers = await form.next_part()
        if headers is None:
            raise _bad("POST requires exactly one file upload per request.")
        name, part_filename = _disposition(headers)
        if name.lower() == "file":
            filename = part_filename or ""  # its own Content-Type is not the object's
            break
        value = b"".join([c async for c in form.content()])
        total += len(value)
        if total > MAX_FIELDS_BYTES:
            raise errors.MaxPostPreDataLengthExceeded()
        fields.setdefault(name.lower(), value.decode("utf-8", "replace"))

    if "key" in fields:  # the policy sees the key with the file's name put in
        fields["key"] = fields["key"].replace("${filename}", filename or "")
    principal: Principal = ANONYMOUS
    size_range: list[int] = []
    if "policy" in fields:
        principal = await _signer(ctx, fields)
        expiration, conditions = _parse_policy(fields["policy"])
        if expiration <= datetime.now(UTC):
            raise _denied("Policy expired.")
        checked = dict(fields, bucket=bucket.name)
        _check_policy(conditions, checked, size_range)
    elif any(k in fields for k in ("awsaccesskeyid", "signature", "x-amz-signature")):
        raise _bad("Bucket POST must contain a field named 'policy' when it is signed.")
    require(bucket.acl, principal, "WRITE")

    key = fields.get("key")
    if not key:
        raise _bad("Bucket POST must contain a field named 'key'.  If it is specified, please "
                   "check the order of the fields.")
    if len(key.encode("utf-8")) > MAX_KEY_BYTES:
        raise errors.KeyTooLongError()
    canned = fields.get("acl", "private")
    if canned not in CANNED_ACLS:
        raise _bad(f"Invalid canned ACL: {canned}")
    meta = {h: fields[h] for h in STORED_HEADERS if h in fields}
    meta.setdefault("content-type", DEFAULT_CONTENT_TYPE)
    user = {k: v for k, v in fields.items() if k.startswith("x-amz-meta-")}
    if sum(len(k) - len("x-amz-meta-") + len(v) for k, v in user.items()) > MAX_USER_METADATA:
        raise errors.MetadataTooLarge()
    meta.update(user)

    limit = min(size_range[1], MAX_PUT_SIZE) if size_range else MAX_PUT_SIZE
    blob = await _store_file(ctx, form, limit)
    if size_range and blob.size < size_range[0]:
        await ctx.delete_blobs([blob.blob_id])
        raise errors.EntityTooSmall()
    if principal is ANONYMOUS:
        # An anonymous writer owns nothing: the object belongs to the bucket's owner.
        principal = Principal(account_id=bucket.owner_id, display_name=bucket.acl.owner_name)
    new = osvc.NewObject.from_blob(blob, principal, headers=meta, storage_class="STANDARD",
                                   acl=canned, grants=[])
    await osvc.commit_object(ctx, bucket, key, new)
    while not form.done and await form.next_part() is not None:  # ignore trailing fields
        async for _ in form.content():
            pass
    return _success(req, fields, bucket.name, key, blob.etag)


def _success(req: S3Request, fields: dict[str, str], bucket: str, key: str,
             etag: str) -> Response:
    quoted = f'"{etag}"'
    redirect = fields.get("success_action_redirect") or fields.get("redirect")
    if redirect:
        sep = "&" if "?" in redirect else "?"
        location = (f"{redirect}{sep}bucket={quote(bucket, safe='')}&key={quote(key, safe='')}"
                    f"&etag={quote(quoted, safe='')}")
        return empty_response(303).header("location", location).header("etag", quoted)
    status = fields.get("success_action_status", "204")
    host = req.headers.get("host", "")
    location = f"http://{host}/{quote(bucket)}/{quote(key)}"
    if status == "201":
        body = xml.render("PostResponse", [("Location", location), ("Bucket", bucket),
                                           ("Key", key), ("ETag", quoted)], namespace=False)
        resp = xml_response(body)
        resp.status = 201
        return resp.header("etag", quoted).header("location", location)
    code = 200 if status == "200" else 204
    return empty_response(code).header("etag", quoted).header("location", location)

