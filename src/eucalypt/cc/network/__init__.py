"""The CC's virtual network: one manager per mode (the paper's SYSTEM, STATIC, MANAGED...)."""

from __future__ import annotations

from eucalypt.cc.network.base import NetworkManager, instance_mac
from eucalypt.cc.network.system import SystemNetwork
from eucalypt.config import Config

MODES = {"SYSTEM": SystemNetwork}


def make_network(config: Config) -> NetworkManager:
    mode = config.cc.network_mode
    try:
        return MODES[mode](config)
    except KeyError:
        raise ValueError(
            f"unknown network mode {mode!r}; choose one of {', '.join(sorted(MODES))}"
        ) from None


__all__ = ["MODES", "NetworkManager", "instance_mac", "make_network"]
