"""The NC's errors.

Wire errors (:class:`RpcError` subclasses) answer a request. Launch errors
(:class:`LaunchError` subclasses) happen in the background after RunInstance
has answered; they never reach the wire as such, they become the instance's
``reason`` when it goes pending → shutting-down → terminated.
"""

from __future__ import annotations

from eucalypt.rpc.errors import Conflict, InsufficientCapacity, InvalidRequest, NotFound

__all__ = [
    "DiskError",
    "ImageError",
    "IncorrectInstanceState",
    "InstanceNotFound",
    "InsufficientCapacity",
    "InvalidParameter",
    "LaunchError",
    "NetworkSetupError",
    "SpawnError",
]


class InstanceNotFound(NotFound):
    code = "InvalidInstanceID.NotFound"
    message = "The instance is not on this node."


class IncorrectInstanceState(Conflict):
    code = "IncorrectInstanceState"
    message = "The instance is not in a state that allows this."


class InvalidParameter(InvalidRequest):
    code = "InvalidParameterValue"
    message = "A parameter of the request is not valid."


class LaunchError(RuntimeError):
    """A step of an instance launch failed; ``str(exc)`` is the instance's reason."""

    step = "launch"


class ImageError(LaunchError):
    """An image could not be fetched, or did not match its digest or size."""

    step = "image"


class DiskError(LaunchError):
    step = "disk"


class NetworkSetupError(LaunchError):
    step = "network"


class SpawnError(LaunchError):
    """The hypervisor did not boot the domain (it has cleaned up after itself)."""

    step = "boot"
