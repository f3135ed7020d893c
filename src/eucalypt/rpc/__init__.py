"""The internal protocol: typed JSON over HTTP, SigV4-signed per component."""

from __future__ import annotations

from eucalypt.rpc.client import RpcClient
from eucalypt.rpc.errors import RemoteError, RpcError
from eucalypt.rpc.keys import ComponentKeys
from eucalypt.rpc.server import RpcRouter, caller_name, rpc_app

__all__ = [
    "ComponentKeys",
    "RemoteError",
    "RpcClient",
    "RpcError",
    "RpcRouter",
    "caller_name",
    "rpc_app",
]
