"""Errors of the internal protocol.

Every failure travels as ``{"error": {"code", "message"}, "request_id"}``
with the class's HTTP status. Components subclass :class:`RpcError` for their
own codes; clients raise :class:`RemoteError` carrying the code they got.
"""

from __future__ import annotations


class RpcError(Exception):
    code: str = "InternalError"
    status: int = 500
    message: str = "The service hit an internal error; see its log for the request id."

    def __init__(self, message: str | None = None) -> None:
        if message is not None:
            self.message = message
        super().__init__(self.message)


class InvalidRequest(RpcError):
    code, status = "InvalidRequest", 400
    message = "The request is not valid."


class AuthFailure(RpcError):
    code, status = "AuthFailure", 401
    message = "The request's signature could not be verified."


class AccessDenied(RpcError):
    code, status = "AccessDenied", 403
    message = "The caller is not allowed to call this operation."


class NotFound(RpcError):
    code, status = "NotFound", 404
    message = "No such resource."


class Conflict(RpcError):
    code, status = "Conflict", 409
    message = "The resource is not in a state that allows this."


class InsufficientCapacity(RpcError):
    code, status = "InsufficientCapacity", 409
    message = "Not enough free capacity for the request."


class ServiceUnavailable(RpcError):
    code, status = "ServiceUnavailable", 503
    message = "The service is unavailable; retry later."


class RemoteError(Exception):
    """An error answered by (or on the way to) another component."""

    def __init__(self, code: str, message: str, status: int, request_id: str = "-") -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.status = status
        self.request_id = request_id
