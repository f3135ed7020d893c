"""Errors of the CLC's identity service, independent of the wire protocol.

The EC2 edge and the internal protocol each map them to their own envelope.
"""

from __future__ import annotations


class IdentityError(Exception):
    code = "InvalidParameterValue"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class NoSuchEntity(IdentityError):
    code = "NoSuchEntity"


class EntityAlreadyExists(IdentityError):
    code = "EntityAlreadyExists"


class InvalidName(IdentityError):
    code = "InvalidParameterValue"
