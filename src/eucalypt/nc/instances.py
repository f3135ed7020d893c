"""Instance records: the state machine and their on-disk form.

Each instance lives in ``<instances_dir>/<instance_id>/``; its record is
``instance.json`` there, rewritten atomically (temp file, fsync, rename) at
every state change, so an NC restart finds each instance's last known state
and can reconcile it with what the hypervisor reports. Terminating an instance
deletes the whole directory: the NC keeps a terminated instance in memory only
(for ``terminated_retention_seconds``), as a soft state the CC may still poll.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import re
import shutil
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from pydantic import BaseModel, ValidationError

from eucalypt.nc.api import InstanceInfo, InstanceState, RunInstanceRequest, can_transition
from eucalypt.nc.errors import IncorrectInstanceState, InvalidParameter

log = logging.getLogger("eucalypt.nc.instances")

RECORD_FILE = "instance.json"
# Instance ids name directories and (hashed) tap devices: keep them path-safe.
_INSTANCE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")
#: States in which an instance holds the node's resources.
ACTIVE_STATES = frozenset(
    {InstanceState.PENDING, InstanceState.RUNNING, InstanceState.SHUTTING_DOWN}
)


def is_instance_id(name: str) -> bool:
    return _INSTANCE_ID.match(name) is not None


def check_instance_id(instance_id: str) -> str:
    if not _INSTANCE_ID.match(instance_id):
        raise InvalidParameter(
            f"instance id {instance_id!r} is not valid: letters, digits, '-' and '_' only, "
            "at most 64 characters"
        )
    return instance_id


def utcnow() -> datetime:
    return datetime.now(UTC)


class InstanceRecord(BaseModel):
    """What the NC knows about one instance; the JSON in its directory."""

    request: RunInstanceRequest
    state: InstanceState = InstanceState.PENDING
    launched_at: datetime
    updated_at: datetime
    tap: str | None = None
    pid: int | None = None
    reason: str = ""

    @property
    def instance_id(self) -> str:
        return self.request.instance_id

    def transition(self, new: InstanceState, reason: str = "") -> None:
        """Move to ``new`` if the transition table allows it (else IncorrectInstanceState)."""
        if not can_transition(self.state, new):
            raise IncorrectInstanceState(
                f"instance {self.instance_id} cannot go from {self.state} to {new}"
            )
        if new != self.state:
            log.info(
                "instance state",
                extra={
                    "instance_id": self.instance_id,
                    "from": str(self.state),
                    "to": str(new),
                    "reason": reason,
                },
            )
        self.state = new
        if reason:
            self.reason = reason
        self.updated_at = utcnow()

    def info(self) -> InstanceInfo:
        req = self.request
        return InstanceInfo(
            instance_id=req.instance_id,
            reservation_id=req.reservation_id,
            owner_id=req.owner_id,
            state=self.state,
            vm=req.vm,
            launched_at=self.launched_at,
            network=req.network,
            tap=self.tap,
            reason=self.reason,
            pid=self.pid,
        )


@dataclass(eq=False)
class Instance:
    """An instance in the NC's table: its record plus what exists only in memory."""

    record: InstanceRecord
    # Serialises state changes (launch steps, terminate, reboot, the monitor).
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    # The background launch while the instance is pending.
    task: asyncio.Task[None] | None = None
    # The console tail, kept when the instance's files are deleted.
    final_console: bytes = b""
    # time.monotonic() when it became terminated (for retention).
    terminated_at: float | None = None
    # Why it is ending, without any cleanup error appended to the record's reason.
    reason_base: str = ""

    @property
    def instance_id(self) -> str:
        return self.record.instance_id

    @property
    def state(self) -> InstanceState:
        return self.record.state

    def mark_terminated(self) -> None:
        self.terminated_at = time.monotonic()


class InstanceStore:
    """The instances' directories under ``root``; blocking file work runs in threads."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def workdir(self, instance_id: str) -> Path:
        return self.root / check_instance_id(instance_id)

    async def create(self, record: InstanceRecord) -> Path:
        workdir = self.workdir(record.instance_id)
        await asyncio.to_thread(workdir.mkdir, 0o700, True, True)
        await self.save(record)
        return workdir

    async def save(self, record: InstanceRecord) -> None:
        await asyncio.to_thread(self._write, record)

    def _write(self, record: InstanceRecord) -> None:
        workdir = self.workdir(record.instance_id)
        path = workdir / RECORD_FILE
        tmp = workdir / f".{RECORD_FILE}.tmp"
        data = record.model_dump_json(indent=1).encode()
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.write(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)

    async def remove(self, instance_id: str) -> None:
        """Delete the instance's directory and everything in it (idempotent)."""
        await asyncio.to_thread(shutil.rmtree, self.workdir(instance_id), True)

    def load_all(self) -> tuple[list[InstanceRecord], list[Path]]:
        """Every readable record, and the directories that hold none (strays)."""
        records: list[InstanceRecord] = []
        strays: list[Path] = []
        if not self.root.is_dir():
            return records, strays
        for path in sorted(self.root.iterdir()):
            if not path.is_dir() or not _INSTANCE_ID.match(path.name):
                continue
            try:
                record = InstanceRecord.model_validate(
                    json.loads((path / RECORD_FILE).read_bytes())
                )
            except (OSError, ValueError, ValidationError) as exc:
                log.warning(
                    "unreadable instance record", extra={"dir": str(path), "error": str(exc)}
                )
                strays.append(path)
                continue
            if record.instance_id != path.name:
                strays.append(path)
                continue
            records.append(record)
        with contextlib.suppress(OSError):
            for tmp in self.root.glob(f"*/.{RECORD_FILE}.tmp"):
                tmp.unlink()
        return records, strays
