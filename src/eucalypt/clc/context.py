"""What an EC2 action handler gets: the caller and the CLC's services."""

from __future__ import annotations

from dataclasses import dataclass

from eucalypt.auth.credentials import Credential
from eucalypt.cc.api import CcClient
from eucalypt.clc.netsync import NetworkSync
from eucalypt.config import Config
from eucalypt.db import Database


@dataclass
class Services:
    """Everything the CLC builds once in ``create_app`` and hands to handlers."""

    config: Config
    db: Database
    clusters: dict[str, CcClient]  # zone name -> its CC
    netsync: NetworkSync


@dataclass
class RequestContext:
    """One authenticated EC2 request."""

    request_id: str
    action: str
    caller: Credential
    services: Services

    @property
    def is_admin(self) -> bool:
        return self.caller.is_admin
