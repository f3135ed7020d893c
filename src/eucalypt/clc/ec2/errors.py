"""EC2 API errors and their wire rendering.

Every failure the Cloud Controller reports to an EC2 client is an :class:`Ec2Error`
(or a subclass). An error carries the EC2 error ``code`` (``InvalidInstanceID.NotFound``),
a human ``message`` and the HTTP ``status`` to answer with. Subclasses fix ``code`` and
``status`` as class attributes; any instance may override either.

HTTP statuses follow AWS's documentation ("Error codes for the Amazon EC2 API" and the
"Common Errors" page shared by AWS query services): client errors are 4xx, server errors
(capacity, internal, unavailable) 5xx, ``DryRunOperation`` is 412.

:func:`render_error` turns an error into EC2's error document, which botocore's ``ec2``
response parser understands::

    <?xml version="1.0" encoding="UTF-8"?>
    <Response><Errors><Error><Code>..</Code><Message>..</Message></Error></Errors>
    <RequestID>..</RequestID></Response>

(on one line, no whitespace between elements).
"""

from __future__ import annotations

from typing import ClassVar

from eucalypt.clc.ec2.xmlout import XML_DECLARATION, escape_text

__all__ = [
    "AuthFailure",
    "DryRunOperation",
    "Ec2Error",
    "IdempotentParameterMismatch",
    "IncorrectState",
    "InsufficientInstanceCapacity",
    "InternalError",
    "InvalidAction",
    "InvalidClientTokenId",
    "InvalidParameterCombination",
    "InvalidParameterValue",
    "InvalidRequest",
    "MalformedQueryString",
    "MissingAction",
    "MissingAuthenticationToken",
    "MissingParameter",
    "RequestExpired",
    "RequestLimitExceeded",
    "ResourceDuplicate",
    "ResourceNotFound",
    "ServiceUnavailable",
    "SignatureDoesNotMatch",
    "UnauthorizedOperation",
    "UnknownParameter",
    "duplicate",
    "not_found",
    "render_error",
]


class Ec2Error(Exception):
    """An error answered to an EC2 client.

    ``code`` and ``status`` default to the class attributes; ``message`` defaults to the
    class's ``default_message`` or, failing that, to the code itself. Instances are
    plain data: raising one anywhere below the API layer produces exactly this error on
    the wire.
    """

    code: str = "InternalError"
    status: int = 400
    default_message: ClassVar[str | None] = None
    message: str

    def __init__(
        self,
        message: str | None = None,
        *,
        code: str | None = None,
        status: int | None = None,
    ) -> None:
        if code is not None:
            self.code = code
        if status is not None:
            self.status = status
        if message is None:
            message = self.default_message if self.default_message is not None else self.code
        self.message = message
        super().__init__(message)

    def __str__(self) -> str:
        return f"{self.code}: {self.message}"

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(code={self.code!r}, status={self.status}, "
            f"message={self.message!r})"
        )


# --- request / protocol errors ------------------------------------------------------------


class InvalidAction(Ec2Error):
    """The Action is not an EC2 operation (or not one this cloud implements)."""

    code = "InvalidAction"
    status = 400


class MissingAction(Ec2Error):
    """The request carries no Action parameter."""

    code = "MissingAction"
    status = 400
    default_message = "The request must contain the parameter Action"


class MissingParameter(Ec2Error):
    """A parameter the operation requires is absent (``parameter``: its wire name, if known)."""

    code = "MissingParameter"
    status = 400
    parameter: str = ""


class InvalidParameterValue(Ec2Error):
    """A parameter's value is malformed or out of range."""

    code = "InvalidParameterValue"
    status = 400


class InvalidParameterCombination(Ec2Error):
    """Parameters that must not be used together were used together."""

    code = "InvalidParameterCombination"
    status = 400


class UnknownParameter(Ec2Error):
    """A parameter the operation does not define was supplied."""

    code = "UnknownParameter"
    status = 400


class MalformedQueryString(Ec2Error):
    """The query string / form body cannot be decoded (AWS documents status 404)."""

    code = "MalformedQueryString"
    status = 404


class InvalidRequest(Ec2Error):
    """The request is not valid (catch-all client error)."""

    code = "InvalidRequest"
    status = 400


class IncorrectState(Ec2Error):
    """The resource is in a state that does not allow the operation."""

    code = "IncorrectState"
    status = 400


class IdempotentParameterMismatch(Ec2Error):
    """A client token was reused with different parameters."""

    code = "IdempotentParameterMismatch"
    status = 400


# --- authentication / authorisation --------------------------------------------------------


class AuthFailure(Ec2Error):
    """The credentials could not be validated."""

    code = "AuthFailure"
    status = 401


class InvalidClientTokenId(Ec2Error):
    """The access key id does not exist (AWS common errors: HTTP 403)."""

    code = "InvalidClientTokenId"
    status = 403


class MissingAuthenticationToken(Ec2Error):
    """The request is not signed / carries no access key id."""

    code = "MissingAuthenticationToken"
    status = 403
    default_message = "Request is missing Authentication Token"


class SignatureDoesNotMatch(Ec2Error):
    """The request signature does not match the one computed by the server."""

    code = "SignatureDoesNotMatch"
    status = 403
    default_message = (
        "The request signature we calculated does not match the signature you provided. "
        "Check your AWS Secret Access Key and signing method."
    )


class RequestExpired(Ec2Error):
    """The request timestamp is too old (or too far in the future)."""

    code = "RequestExpired"
    status = 400


class UnauthorizedOperation(Ec2Error):
    """The caller is not allowed to perform the operation."""

    code = "UnauthorizedOperation"
    status = 403
    default_message = "You are not authorized to perform this operation."


class DryRunOperation(Ec2Error):
    """The request would have succeeded but carried ``DryRun=true``."""

    code = "DryRunOperation"
    status = 412
    default_message = "Request would have succeeded, but DryRun flag is set."


# --- server errors -------------------------------------------------------------------------


class InsufficientInstanceCapacity(Ec2Error):
    """Not enough capacity to launch the requested instances (a server error)."""

    code = "InsufficientInstanceCapacity"
    status = 500


class InternalError(Ec2Error):
    """An unexpected server-side failure."""

    code = "InternalError"
    status = 500
    default_message = "An internal error has occurred"


class ServiceUnavailable(Ec2Error):
    """The service cannot handle the request right now."""

    code = "ServiceUnavailable"
    status = 503


class RequestLimitExceeded(Ec2Error):
    """The caller is being throttled."""

    code = "RequestLimitExceeded"
    status = 503
    default_message = "Request limit exceeded."


# --- resource errors -----------------------------------------------------------------------


class ResourceNotFound(Ec2Error):
    """Base of the ``*.NotFound`` family; build instances with :func:`not_found`."""

    code = "ResourceNotFound"
    status = 400


class ResourceDuplicate(Ec2Error):
    """Base of the ``*.Duplicate`` family; build instances with :func:`duplicate`."""

    code = "ResourceDuplicate"
    status = 400


def not_found(code: str, message: str) -> ResourceNotFound:
    """A 400 error for a missing resource, e.g.
    ``not_found("InvalidInstanceID.NotFound", "The instance ID 'i-1' does not exist")``."""
    return ResourceNotFound(message, code=code)


def duplicate(code: str, message: str) -> ResourceDuplicate:
    """A 400 error for an already existing resource, e.g.
    ``duplicate("InvalidKeyPair.Duplicate", "The keypair 'k' already exists.")``."""
    return ResourceDuplicate(message, code=code)


def render_error(error: Ec2Error, request_id: str) -> bytes:
    """The EC2 error document for ``error`` as UTF-8 bytes (see the module docstring)."""
    return (
        f"{XML_DECLARATION}<Response><Errors><Error>"
        f"<Code>{escape_text(error.code)}</Code>"
        f"<Message>{escape_text(error.message)}</Message>"
        f"</Error></Errors><RequestID>{escape_text(request_id)}</RequestID></Response>"
    ).encode()
