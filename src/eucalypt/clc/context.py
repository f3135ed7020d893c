"""What an EC2 action handler gets: the caller and the CLC's services."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from dataclasses import dataclass, field
from typing import Any

from eucalypt.auth.credentials import Credential
from eucalypt.cc.api import CcClient
from eucalypt.clc.netsync import NetworkSync
from eucalypt.clc.srs import ResourceState
from eucalypt.clc.storage import WalrusReader
from eucalypt.config import Config
from eucalypt.db import Database

log = logging.getLogger("eucalypt.clc")


@dataclass
class Services:
    """Everything the CLC builds once in ``create_app`` and hands to handlers."""

    config: Config
    db: Database
    clusters: dict[str, CcClient]  # zone name -> its CC
    netsync: NetworkSync
    walrus: WalrusReader
    srs: ResourceState
    tasks: set[asyncio.Task[None]] = field(default_factory=set)

    def background(self, work: Coroutine[Any, Any, None]) -> None:
        """Run ``work`` after the response; failures are logged, never lost silently."""
        task = asyncio.get_running_loop().create_task(work)
        self.tasks.add(task)
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[None]) -> None:
        self.tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("background task failed", exc_info=task.exception())


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
