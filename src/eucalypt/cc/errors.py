"""Errors the CC answers with."""

from __future__ import annotations

from eucalypt.rpc.errors import Conflict, InsufficientCapacity, NotFound, RpcError


class InstanceNotFound(NotFound):
    code = "InvalidInstanceID.NotFound"
    message = "The instance is not known to this cluster."


class NoCapacity(InsufficientCapacity):
    code = "InsufficientInstanceCapacity"
    message = "No node of this cluster has room for the instance."


class NodeUnavailable(RpcError):
    code, status = "ServiceUnavailable", 503
    message = "The node that runs the instance does not answer; retry later."


class NodeInUse(Conflict):
    code = "NodeInUse"
    message = "The node runs instances: terminate them first (or force the deregistration)."


class NodeConfigured(Conflict):
    code = "NodeConfigured"
    message = "The node is in the configuration (cc.nodes): remove it there."


__all__ = ["InstanceNotFound", "NoCapacity", "NodeConfigured", "NodeInUse", "NodeUnavailable"]
