"""Errors of the CC's network operations (EC2's codes where EC2 has one)."""

from __future__ import annotations

from eucalypt.rpc.errors import InvalidRequest, NotFound, RpcError


class NetworkNotFound(NotFound):
    code = "InvalidGroup.NotFound"
    message = "The security group's network is not known to this cluster."


class NetworkInUse(RpcError):
    code, status = "DependencyViolation", 409
    message = "The network still has instances."


class NoFreeNetwork(RpcError):
    code, status = "NetworkLimitExceeded", 409
    message = "The administrator's private range has no free subnet left."


class NoFreeAddress(RpcError):
    code, status = "InsufficientAddressCapacity", 409
    message = "No free address is left for the instance."


class AddressNotInPool(NotFound):
    code = "InvalidAddress.NotFound"
    message = "The address is not in this cluster's public pool."


class AddressInUse(RpcError):
    code, status = "InvalidIPAddress.InUse", 409
    message = "The address is assigned to another instance."


class EndpointNotFound(NotFound):
    code = "InvalidInstanceID.NotFound"
    message = "The instance has no network endpoint in this cluster."


class UnsupportedInMode(InvalidRequest):
    code = "UnsupportedOperation"
    message = "The cluster's network mode does not support this operation."


__all__ = [
    "AddressInUse",
    "AddressNotInPool",
    "EndpointNotFound",
    "NetworkInUse",
    "NetworkNotFound",
    "NoFreeAddress",
    "NoFreeNetwork",
    "UnsupportedInMode",
]
