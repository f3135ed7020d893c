"""Scheduling instances onto nodes: filters, weighers and named policies."""

from __future__ import annotations

from eucalypt.cc.scheduler.base import Filter, NodeView, PlacementRequest, Policy, Weigher
from eucalypt.cc.scheduler.policies import POLICIES, make_policy

__all__ = ["POLICIES", "Filter", "NodeView", "PlacementRequest", "Policy", "Weigher", "make_policy"]
