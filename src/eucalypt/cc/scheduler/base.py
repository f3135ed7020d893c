"""Scheduling from small parts: filters say yes or no, weighers rank.

A policy is a list of filters plus a way to order the nodes that pass. A
researcher adds a policy by writing one class with ``order`` (or by
composing existing filters and weighers) and naming it in ``POLICIES``;
nothing else in the CC changes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from eucalypt.nc.api import NodeResources, VmSpec


@dataclass(frozen=True)
class NodeView:
    """What the scheduler sees of one node: its place in config order and its free resources.

    ``free`` is the last poll minus what the CC has placed there since. The CC
    keeps a node's view between changes and hands the same object to every
    placement: policies read views, never change them.
    """

    url: str
    index: int
    up: bool
    free: NodeResources


@dataclass(frozen=True)
class PlacementRequest:
    instance_id: str
    vm: VmSpec


class Filter(Protocol):
    name: str

    def passes(self, node: NodeView, request: PlacementRequest) -> bool: ...


class Weigher(Protocol):
    name: str

    def weigh(self, node: NodeView, request: PlacementRequest) -> float: ...


class Policy(Protocol):
    """Orders the candidate nodes for one request, best first; empty means no room."""

    name: str

    def candidates(
        self, nodes: Sequence[NodeView], request: PlacementRequest
    ) -> list[NodeView]: ...
