"""The CC's virtual network: one manager per mode (the paper's SYSTEM, STATIC, MANAGED...)."""

from __future__ import annotations

from collections.abc import Callable

from eucalypt.auth.credentials import Credential
from eucalypt.cc.network.base import FoundEndpoint, NetworkManager, instance_mac
from eucalypt.cc.network.managed import ManagedNetwork
from eucalypt.cc.network.static import StaticNetwork
from eucalypt.cc.network.system import SystemNetwork
from eucalypt.config import Config
from eucalypt.net.runner import Runner

Factory = Callable[[Config, Runner | None, Credential | None], NetworkManager]

MODES: dict[str, Factory] = {
    "SYSTEM": lambda config, _runner, _cred: SystemNetwork(config),
    "STATIC": lambda config, runner, cred: StaticNetwork(config, runner=runner, credential=cred),
    "MANAGED": lambda config, runner, cred: ManagedNetwork(config, runner=runner, credential=cred),
    "MANAGED-NOVLAN": lambda config, runner, cred: ManagedNetwork(
        config, novlan=True, runner=runner, credential=cred
    ),
}


def make_network(
    config: Config, *, runner: Runner | None = None, credential: Credential | None = None
) -> NetworkManager:
    """The manager of ``config.cc.network_mode``.

    ``credential`` (the CC's component key) signs the metadata proxy's
    requests to the CLC; ``runner`` defaults to a plain CommandRunner.
    """
    mode = config.cc.network_mode
    try:
        factory = MODES[mode]
    except KeyError:
        raise ValueError(
            f"unknown network mode {mode!r}; choose one of {', '.join(sorted(MODES))}"
        ) from None
    return factory(config, runner, credential)


__all__ = ["MODES", "FoundEndpoint", "NetworkManager", "instance_mac", "make_network"]
