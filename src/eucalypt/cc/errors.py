"""Errors the CC answers with."""

from __future__ import annotations

from eucalypt.rpc.errors import InsufficientCapacity, NotFound, RpcError


class InstanceNotFound(NotFound):
    code = "InvalidInstanceID.NotFound"
    message = "The instance is not known to this cluster."


class NoCapacity(InsufficientCapacity):
    code = "InsufficientInstanceCapacity"
    message = "No node of this cluster has room for the instance."


class NodeUnavailable(RpcError):
    code, status = "ServiceUnavailable", 503
    message = "The node that runs the instance does not answer; retry later."


__all__ = ["InstanceNotFound", "NoCapacity", "NodeUnavailable"]
