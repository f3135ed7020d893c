"""The Node Controller's logic: admission, the launch pipeline, teardown, monitoring.

RunInstance admits an instance (capacity check, record written as
``pending``) and answers at once; the launch runs in the background, as in
the paper: node-local copies of the images (cache or Walrus), a copy-on-write
root disk, the network endpoint, then the hypervisor boots it (``running``).
A failed step tears down whatever exists (domain, tap, files) and leaves the
instance ``terminated`` with the reason. TerminateInstance stops the domain,
deletes the tap and the instance's files, and answers ``terminated``.

Instances stopped outside the NC's control are noticed (on DescribeInstances
and by a periodic monitor), torn down, and reported ``terminated`` with a
reason. The monitor also puts running instances' taps back on their bridges
when a (restarted) CC made those bridges anew. At start the NC reconciles
its records with the hypervisor (:mod:`eucalypt.nc.reconcile`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import time
from dataclasses import dataclass
from pathlib import Path

from eucalypt.config import Config
from eucalypt.nc.api import (
    DescribeResourceResponse,
    GetConsoleOutputResponse,
    InstanceInfo,
    InstanceState,
    NodeResources,
    RunInstanceRequest,
)
from eucalypt.nc.cache import ImageCache
from eucalypt.nc.disks import create_overlay
from eucalypt.nc.endpoint import Endpoints, tap_name
from eucalypt.nc.errors import (
    IncorrectInstanceState,
    InstanceNotFound,
    InsufficientCapacity,
    InvalidParameter,
    LaunchError,
    NetworkSetupError,
)
from eucalypt.nc.hypervisors.base import DomainSpec, HostResources, Hypervisor, NicSpec
from eucalypt.nc.instances import (
    ACTIVE_STATES,
    Instance,
    InstanceRecord,
    InstanceStore,
    check_instance_id,
    utcnow,
)
from eucalypt.nc.metadata import NodeMetadata
from eucalypt.nc.reconcile import reconcile
from eucalypt.net.runner import Runner

log = logging.getLogger("eucalypt.nc.service")

#: GetConsoleOutput returns at most this much (EC2 returns the last 64 KiB).
CONSOLE_LIMIT = 64 * 1024
_MAC = re.compile(r"^[0-9a-fA-F]{2}(:[0-9a-fA-F]{2}){5}$")


@dataclass(frozen=True)
class NodeSettings:
    node_name: str
    hypervisor: str
    instances_dir: Path
    reserve_cores: int = 0
    reserve_memory_mib: int = 0
    monitor_seconds: float = 5.0
    retention_seconds: float = 3600.0

    @classmethod
    def from_config(cls, config: Config, node_name: str) -> NodeSettings:
        nc = config.nc
        return cls(
            node_name=node_name,
            hypervisor=nc.hypervisor,
            instances_dir=Path(nc.instances_dir),
            reserve_cores=nc.reserve_cores,
            reserve_memory_mib=nc.reserve_memory_mib,
            monitor_seconds=nc.monitor_seconds,
            retention_seconds=nc.terminated_retention_seconds,
        )


@dataclass(frozen=True)
class NodeParts:
    """What the service drives, built in ``create_app``."""

    driver: Hypervisor
    cache: ImageCache
    endpoints: Endpoints
    runner: Runner
    # Metadata for instances whose spec asks the node for it (SYSTEM/STATIC modes).
    metadata: NodeMetadata | None = None


class NodeService:
    """The NC's operations over an in-memory instance table backed by instance directories."""

    def __init__(self, settings: NodeSettings, parts: NodeParts) -> None:
        self.settings = settings
        self.driver = parts.driver
        self.cache = parts.cache
        self.endpoints = parts.endpoints
        self.runner = parts.runner
        self.metadata = parts.metadata
        self.store = InstanceStore(settings.instances_dir)
        self._instances: dict[str, Instance] = {}
        self._host: HostResources | None = None
        self._monitor: asyncio.Task[None] | None = None

    # ------------------------------------------------------------------ lifecycle
    async def start(self) -> None:
        """Open the cache, reconcile with the hypervisor, start the monitor."""
        await asyncio.to_thread(self.settings.instances_dir.mkdir, 0o700, True, True)
        if not self.driver.simulated:
            await asyncio.to_thread(self.cache.open)
        found = await reconcile(self.store, self.driver)
        for record in found.adopted:
            self._instances[record.instance_id] = Instance(record)
            await self.store.save(record)
            log.info(
                "adopted instance", extra={"instance_id": record.instance_id, "pid": record.pid}
            )
        for record, reason in found.dead:
            inst = Instance(record)
            self._instances[record.instance_id] = inst
            await self._finish(inst, reason)
        for path in found.strays:
            log.warning("removing stray instance directory", extra={"dir": str(path)})
            try:
                await self.driver.destroy(path.name, path)
            except Exception:
                log.exception(
                    "cannot stop a stray domain; its files stay", extra={"dir": str(path)}
                )
                continue
            await self.store.remove(path.name)
        await self._adopt_metadata(found.adopted)
        if self.settings.monitor_seconds > 0:
            self._monitor = asyncio.create_task(self._monitor_forever(), name="nc-monitor")
        log.info(
            "node controller ready",
            extra={
                "hypervisor": self.driver.name,
                "adopted": len(found.adopted),
                "cleaned": len(found.dead) + len(found.strays),
            },
        )

    async def close(self) -> None:
        """Stop background work. Running domains keep running (the next start adopts
        them); launches still pending are cancelled, and the next start reports them
        terminated ("cut short") after cleaning up what they left."""
        if self._monitor is not None:
            self._monitor.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._monitor
        tasks = [i.task for i in self._instances.values() if i.task is not None]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(BaseException):
                await task
        if self.metadata is not None:
            try:
                await self.metadata.close()
            except Exception:
                log.exception("cannot remove the metadata rules")
        await self.cache.aclose()

    async def _adopt_metadata(self, adopted: list[InstanceRecord]) -> None:
        """The node's metadata rules for the adopted instances (stale ones go)."""
        if self.metadata is None or self.driver.simulated:
            return
        found = [
            (r.instance_id, r.tap, r.request.network)
            for r in adopted
            if r.tap and r.request.network.node_metadata
        ]
        try:
            await self.metadata.adopt(found)
        except Exception:
            log.exception("cannot restore the metadata rules of adopted instances")

    # ------------------------------------------------------------------ resources
    def host(self) -> HostResources:
        """The node's resources for instances: discovered once, minus the reserve."""
        if self._host is None:
            raw = self.driver.host_resources(self.settings.instances_dir)
            self._host = HostResources(
                cores=max(raw.cores - self.settings.reserve_cores, 0),
                memory_mib=max(raw.memory_mib - self.settings.reserve_memory_mib, 0),
                disk_gib=raw.disk_gib,
            )
        return self._host

    def resources(self) -> NodeResources:
        """Total (after the reserve) and free: total minus active instances' VM types."""
        host = self.host()
        active = [i.record.request.vm for i in self._instances.values() if i.state in ACTIVE_STATES]
        return NodeResources(
            cores_total=host.cores,
            cores_free=host.cores - sum(v.cores for v in active),
            memory_mib_total=host.memory_mib,
            memory_mib_free=host.memory_mib - sum(v.memory_mib for v in active),
            disk_gib_total=host.disk_gib,
            disk_gib_free=host.disk_gib - sum(v.disk_gib for v in active),
        )

    def describe_resource(self) -> DescribeResourceResponse:
        return DescribeResourceResponse(
            node=self.settings.node_name,
            hypervisor=self.driver.name,
            resources=self.resources(),
        )

    # ------------------------------------------------------------------ run
    async def run_instance(self, req: RunInstanceRequest) -> InstanceInfo:
        """Admit the instance (pending) and launch it in the background.

        Idempotent per instance id: asking again for an instance the node
        already has returns its current state. Raises InsufficientCapacity when
        its VM type does not fit in what is free.
        """
        self._validate(req)
        existing = self._instances.get(req.instance_id)
        if existing is not None:
            return existing.record.info()
        free = self.resources()
        vm = req.vm
        short = [
            what
            for what, need, have in (
                ("cores", vm.cores, free.cores_free),
                ("memory", vm.memory_mib, free.memory_mib_free),
                ("disk", vm.disk_gib, free.disk_gib_free),
            )
            if need > have
        ]
        if short:
            raise InsufficientCapacity(
                f"{vm.name} ({vm.cores} cores, {vm.memory_mib} MiB, {vm.disk_gib} GiB) does not "
                f"fit: not enough {', '.join(short)} free on {self.settings.node_name}"
            )
        now = utcnow()
        record = InstanceRecord(request=req, launched_at=now, updated_at=now)
        inst = Instance(record)
        # In the table before the first await: a concurrent request sees the capacity taken.
        self._instances[req.instance_id] = inst
        async with inst.lock:  # a terminate arriving now waits until the directory exists
            try:
                await self.store.create(record)
            except OSError:
                del self._instances[req.instance_id]
                raise  # InternalError, logged with its traceback
        log.info(
            "instance admitted",
            extra={"instance_id": req.instance_id, "owner": req.owner_id, "vm": vm.name},
        )
        inst.task = asyncio.create_task(self._launch(inst), name=f"launch-{req.instance_id}")
        return record.info()

    def _validate(self, req: RunInstanceRequest) -> None:
        check_instance_id(req.instance_id)
        net = req.network
        if net.mode != "none" and not _MAC.match(net.mac):
            raise InvalidParameter(f"MAC address {net.mac!r} is not valid")
        if net.mode == "bridge" and not net.bridge:
            raise InvalidParameter("network mode 'bridge' needs a bridge name")
        if net.metadata_forward is not None:
            host, sep, port = net.metadata_forward.rpartition(":")
            if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
                raise InvalidParameter(
                    f"metadata_forward {net.metadata_forward!r} is not host:port"
                )
        images = req.images
        if images.ramdisk is not None and images.kernel is None:
            raise InvalidParameter("a ramdisk needs a kernel")

    async def _launch(self, inst: Instance) -> None:
        rec = inst.record
        iid = rec.instance_id
        started = time.monotonic()
        try:
            spec = await self._prepare(inst)
            log.info("booting instance", extra={"instance_id": iid})
            domain = await self.driver.spawn(spec)
        except asyncio.CancelledError:
            inst.task = None
            raise  # terminate (or shutdown) owns the cleanup
        except Exception as exc:
            # No longer cancellable: a terminate arriving now waits for this cleanup.
            inst.task = None
            step = exc.step if isinstance(exc, LaunchError) else "launch"
            if not isinstance(exc, LaunchError):
                log.exception("launch failed", extra={"instance_id": iid})
            reason = f"{step} failed: {exc}"
            log.warning("launch failed", extra={"instance_id": iid, "reason": reason})
            async with inst.lock:
                if rec.state == InstanceState.PENDING:
                    await self._finish(inst, reason)
            return
        inst.task = None
        async with inst.lock:
            if rec.state != InstanceState.PENDING:
                return
            rec.pid = domain.pid
            rec.transition(InstanceState.RUNNING)
            await self.store.save(rec)
        log.info(
            "instance running",
            extra={
                "instance_id": iid,
                "pid": domain.pid,
                "seconds": round(time.monotonic() - started, 2),
            },
        )

    async def _prepare(self, inst: Instance) -> DomainSpec:
        """Images, root disk and network endpoint: everything the driver needs, on disk."""
        rec = inst.record
        req = rec.request
        workdir = self.store.workdir(req.instance_id)
        images = req.images
        kernel = workdir / "kernel" if images.kernel else None
        ramdisk = workdir / "ramdisk" if images.ramdisk else None
        disk = workdir / "root.qcow2"
        tap = None
        if not self.driver.simulated:
            wanted = [(images.root, workdir / "root.base")]
            if images.kernel is not None and kernel is not None:
                wanted.append((images.kernel, kernel))
            if images.ramdisk is not None and ramdisk is not None:
                wanted.append((images.ramdisk, ramdisk))
            await asyncio.gather(*(self.cache.materialize(ref, dest) for ref, dest in wanted))
            await create_overlay(
                self.runner,
                workdir / "root.base",
                images.root.format,
                disk,
                req.vm.disk_gib,
            )
            if req.network.mode == "bridge":
                # Recorded before the tap exists, so any cleanup deletes it.
                async with inst.lock:
                    rec.tap = tap_name(req.instance_id)
                    await self.store.save(rec)
                tap = await self.endpoints.create(req.instance_id, req.network)
                if tap and req.network.node_metadata and self.metadata is not None:
                    try:
                        await self.metadata.add(req.instance_id, tap, req.network)
                    except Exception as exc:
                        raise NetworkSetupError(
                            f"cannot serve metadata on tap {tap}: {exc}"
                        ) from exc
        net = req.network
        kind = {"bridge": "tap", "user": "user", "none": "none"}[net.mode]
        nic = NicSpec(
            mac=net.mac,
            kind=kind,  # type: ignore[arg-type]
            tap=tap,
            metadata_forward=net.metadata_forward,
            host_forwards=dict(net.host_forwards),
        )
        return DomainSpec(
            instance_id=req.instance_id,
            workdir=workdir,
            cores=req.vm.cores,
            memory_mib=req.vm.memory_mib,
            disk=disk,
            nic=nic,
            kernel=kernel,
            ramdisk=ramdisk,
            kernel_args=images.kernel_args,
            console_log=workdir / "console.log",
        )

    # ------------------------------------------------------------------ terminate
    async def terminate_instance(self, instance_id: str) -> InstanceInfo:
        """Stop the domain, delete the tap and the files; answer ``terminated``.

        Idempotent: terminating a terminated instance returns it as it is.
        """
        inst = self._get(instance_id)
        task = inst.task
        if task is not None and not task.done():
            task.cancel()
            with contextlib.suppress(BaseException):
                await task
        async with inst.lock:
            if inst.state != InstanceState.TERMINATED:
                # No reason for a requested end (the field says why an instance ended when
                # nobody asked); a teardown being retried keeps the reason it has.
                keep = inst.state == InstanceState.SHUTTING_DOWN
                await self._finish(inst, None if keep else "")
        return inst.record.info()

    async def _finish(self, inst: Instance, reason: str | None) -> None:
        """shutting-down → teardown → terminated. Caller holds ``inst.lock`` (or owns inst).

        ``reason`` is why the instance ends (None: keep the one it has). When
        teardown fails the instance stays shutting-down, the reason says why,
        and the monitor tries again.
        """
        rec = inst.record
        if reason is not None:
            inst.reason_base = reason
        if rec.state not in (InstanceState.SHUTTING_DOWN, InstanceState.TERMINATED):
            rec.transition(InstanceState.SHUTTING_DOWN, inst.reason_base)
            with contextlib.suppress(OSError):
                await self.store.save(rec)
        errors = await self._teardown(inst)
        if errors:
            rec.reason = "; ".join([*filter(None, [inst.reason_base]), "cleanup failed", *errors])
            with contextlib.suppress(OSError):
                await self.store.save(rec)
            return
        rec.reason = inst.reason_base
        if rec.state != InstanceState.TERMINATED:
            rec.transition(InstanceState.TERMINATED)
        rec.pid = None
        inst.mark_terminated()

    async def _teardown(self, inst: Instance) -> list[str]:
        """Stop the domain, delete the tap, keep the console tail, delete the files."""
        rec = inst.record
        iid = rec.instance_id
        workdir = self.store.workdir(iid)
        errors: list[str] = []
        try:
            await self.driver.destroy(iid, workdir)
        except Exception as exc:
            log.exception("destroy failed", extra={"instance_id": iid})
            errors.append(f"destroy: {exc}")
            return errors  # never delete the files of a domain that may still run
        with contextlib.suppress(Exception):
            inst.final_console = await self.driver.console_output(iid, workdir, CONSOLE_LIMIT)
        if rec.tap and self.metadata is not None:
            try:
                await self.metadata.remove(iid)
            except Exception as exc:
                log.exception("metadata rules not removed", extra={"instance_id": iid})
                errors.append(f"metadata rules: {exc}")
        if rec.tap:
            try:
                await self.endpoints.delete(rec.tap)
                await self.endpoints.release(rec.request.network)
            except Exception as exc:
                log.exception("tap delete failed", extra={"instance_id": iid, "tap": rec.tap})
                errors.append(f"tap {rec.tap}: {exc}")
        try:
            await self.store.remove(iid)
        except OSError as exc:
            errors.append(f"files: {exc}")
        if not errors:
            log.info("instance cleaned up", extra={"instance_id": iid})
        return errors

    # ------------------------------------------------------------------ reboot, console
    async def reboot_instance(self, instance_id: str) -> InstanceInfo:
        inst = self._get(instance_id)
        async with inst.lock:
            if inst.state != InstanceState.RUNNING:
                raise IncorrectInstanceState(
                    f"instance {instance_id} is {inst.state}; only a running instance reboots"
                )
            await self.driver.reboot(instance_id, self.store.workdir(instance_id))
            log.info("instance rebooted", extra={"instance_id": instance_id})
            return inst.record.info()

    async def console_output(self, instance_id: str) -> GetConsoleOutputResponse:
        inst = self._get(instance_id)
        if inst.state == InstanceState.TERMINATED:
            data = inst.final_console
        else:
            data = await self.driver.console_output(
                instance_id, self.store.workdir(instance_id), CONSOLE_LIMIT
            )
        return GetConsoleOutputResponse(
            instance_id=instance_id, output=data.decode(errors="replace"), timestamp=utcnow()
        )

    # ------------------------------------------------------------------ describe, monitor
    async def describe_instances(self, instance_ids: list[str]) -> list[InstanceInfo]:
        """The instances asked for (all when empty), after checking that running ones still run."""
        if instance_ids:
            chosen = [self._get(i) for i in instance_ids]
        else:
            chosen = list(self._instances.values())
        await self._check(chosen)
        return [i.record.info() for i in chosen]

    async def _check(self, instances: list[Instance]) -> None:
        """Tear down running instances whose domain is gone; retry stuck teardowns."""
        for inst in instances:
            if inst.state == InstanceState.RUNNING:
                workdir = self.store.workdir(inst.instance_id)
                info = await self.driver.info(inst.instance_id, workdir)
                if info.running:
                    continue
                async with inst.lock:
                    if inst.state == InstanceState.RUNNING:
                        why = info.reason or "the domain is gone"
                        log.warning(
                            "instance stopped outside the NC",
                            extra={"instance_id": inst.instance_id, "reason": why},
                        )
                        await self._finish(inst, f"stopped outside the NC's control: {why}")
            elif inst.state == InstanceState.SHUTTING_DOWN and inst.task is None:
                if inst.lock.locked():
                    continue  # a terminate is at work
                async with inst.lock:
                    if inst.state == InstanceState.SHUTTING_DOWN:
                        await self._finish(inst, None)

    async def _monitor_forever(self) -> None:
        while True:
            await asyncio.sleep(self.settings.monitor_seconds)
            try:
                await self._check(list(self._instances.values()))
                self._prune()
            except Exception:
                log.exception("instance monitor failed")
            try:
                await self._reattach()
            except Exception:
                log.exception("tap check failed")
            if self.metadata is not None:
                try:
                    await self.metadata.sync()
                except Exception:
                    log.exception("metadata rules check failed")

    async def _reattach(self) -> list[str]:
        """Running instances' taps back on their bridges (see ``Endpoints.reattach``)."""
        taps = {
            inst.record.tap: inst.record.request.network
            for inst in self._instances.values()
            if inst.state == InstanceState.RUNNING
            and inst.record.tap
            and inst.task is None
            and not inst.lock.locked()
        }
        return await self.endpoints.reattach(taps) if taps else []

    def _prune(self) -> None:
        cutoff = time.monotonic() - self.settings.retention_seconds
        for iid, inst in list(self._instances.items()):
            if inst.terminated_at is not None and inst.terminated_at < cutoff:
                del self._instances[iid]

    def _get(self, instance_id: str) -> Instance:
        inst = self._instances.get(instance_id)
        if inst is None:
            raise InstanceNotFound(f"instance {instance_id} is not on {self.settings.node_name}")
        return inst
