"""The EC2 Query endpoint: authenticate, parse, dispatch, render.

Thin by design: the request becomes a dict per botocore's input shape, the
handler from ``ACTIONS`` returns a dict per the output shape, and
``Ec2Protocol`` renders it. Every failure leaves as EC2's error envelope
with the request id; anything unexpected is ``InternalError``, logged with
its traceback.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from eucalypt.auth import AuthError, AuthFailure, HttpRequest, authenticate, has_auth
from eucalypt.auth.credentials import CredentialStore
from eucalypt.clc.actions import ACTIONS
from eucalypt.clc.context import RequestContext, Services
from eucalypt.clc.ec2 import errors as ec2
from eucalypt.clc.ec2.params import query_params_from, split_action
from eucalypt.clc.ec2.protocol import Ec2Protocol
from eucalypt.logs import request_id_var

log = logging.getLogger("eucalypt.clc.ec2")

MAX_BODY = 4 * 2**20
XML = "text/xml;charset=UTF-8"

_AUTH_ERRORS: dict[AuthFailure, type[ec2.Ec2Error]] = {
    AuthFailure.MISSING: ec2.MissingAuthenticationToken,
    AuthFailure.MALFORMED: ec2.AuthFailure,
    AuthFailure.UNKNOWN_KEY: ec2.AuthFailure,
    AuthFailure.INACTIVE_KEY: ec2.AuthFailure,
    AuthFailure.BAD_SIGNATURE: ec2.SignatureDoesNotMatch,
    AuthFailure.SKEWED: ec2.RequestExpired,
    AuthFailure.EXPIRED: ec2.RequestExpired,
    AuthFailure.PAYLOAD_MISMATCH: ec2.SignatureDoesNotMatch,
    AuthFailure.BAD_CHUNK: ec2.SignatureDoesNotMatch,
}


#: Where EC2 answers something other than MissingParameter for an absent required parameter.
_MISSING: dict[tuple[str, str], Callable[[], ec2.Ec2Error]] = {
    ("TerminateInstances", "InstanceId"): lambda: ec2.InvalidParameterCombination(
        "No instances specified"
    ),
}


class Ec2Endpoint:
    """The ASGI-facing handler of ``GET|POST /`` on the CLC."""

    def __init__(
        self, services: Services, credentials: CredentialStore, protocol: Ec2Protocol
    ) -> None:
        self.services = services
        self.credentials = credentials
        self.protocol = protocol

    async def handle(self, request: Request) -> Response:
        rid = request_id_var.get()
        try:
            body = await self._read_body(request)
            return await self._handle(request, body, rid)
        except ec2.Ec2Error as err:
            if err.status >= 500:
                log.warning("ec2 error", extra={"code": err.code, "error": err.message})
            return Response(ec2.render_error(err, rid), status_code=err.status, media_type=XML)
        except Exception:
            log.exception("unexpected error in EC2 request")
            internal = ec2.InternalError()
            return Response(
                ec2.render_error(internal, rid), status_code=internal.status, media_type=XML
            )

    async def _read_body(self, request: Request) -> bytes:
        chunks: list[bytes] = []
        size = 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > MAX_BODY:
                raise ec2.InvalidRequest(f"The request body is larger than {MAX_BODY} bytes.")
            chunks.append(chunk)
        return b"".join(chunks)

    async def _handle(self, request: Request, body: bytes, rid: str) -> Response:
        content_type = request.headers.get("content-type", "")
        is_form = not body or content_type.startswith("application/x-www-form-urlencoded")
        if not is_form:
            raise ec2.InvalidRequest(
                "EC2 Query requests carry parameters in the query string or an "
                "application/x-www-form-urlencoded body."
            )
        raw_query = request.scope.get("query_string", b"").decode("latin-1")
        params = query_params_from(raw_query, body)
        http = HttpRequest.create(
            request.method,
            request.scope.get("raw_path", b"/").decode("latin-1"),
            raw_query,
            request.headers.items(),
            body,
        )
        if not has_auth(http):
            raise ec2.MissingAuthenticationToken()
        try:
            auth = await authenticate(http, self.credentials, services=("ec2",))
        except AuthError as exc:
            raise _AUTH_ERRORS[exc.reason](exc.message) from None
        action, _version, op_params = split_action(params)
        # Parsing first (it raises InvalidAction for names EC2 does not have) means a
        # malformed request hears about its parameters even before we say the
        # action is not implemented here.
        try:
            parsed: dict[str, Any] = self.protocol.parse_request(action, op_params)
        except ec2.MissingParameter as exc:
            override = _MISSING.get((action, exc.parameter))
            if override is None:
                raise
            raise override() from None
        handler = ACTIONS.get(action)
        if handler is None:
            raise ec2.InvalidAction(f"The action {action} is not implemented by this cloud yet.")
        if parsed.pop("DryRun", False):
            raise ec2.DryRunOperation()
        ctx = RequestContext(
            request_id=rid, action=action, caller=auth.credential, services=self.services
        )
        log.info("ec2 action", extra={"action": action, "account": auth.credential.account_id})
        result = await handler(ctx, parsed)
        return Response(self.protocol.serialize_response(action, result, rid), media_type=XML)
