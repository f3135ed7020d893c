"""Instances in the CLC: launch (with the SRS), terminate, and state from the CCs."""

from __future__ import annotations

import asyncio
import base64
import binascii
import logging
from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from eucalypt.cc.api import InstanceNetworkRequest, LaunchSpec, RunInstancesRequest
from eucalypt.clc.actions.addresses import auto_assign, release_for_instances
from eucalypt.clc.actions.images import get_launchable, split_location
from eucalypt.clc.actions.security_groups import ensure_default_group, find_group
from eucalypt.clc.actions.tagging import apply_tag_specifications
from eucalypt.clc.context import Services
from eucalypt.clc.ec2.errors import Ec2Error, InvalidParameterValue, not_found
from eucalypt.clc.ids import IMAGE_PREFIXES, check_ids, new_id
from eucalypt.clc.models import Image, Instance, KeyPair
from eucalypt.clc.srs import CapacityError
from eucalypt.config import VmType
from eucalypt.nc.api import (
    TRANSITIONS,
    BootImages,
    ImageRef,
    InstanceState,
    VmSpec,
)
from eucalypt.rpc.errors import RemoteError

log = logging.getLogger("eucalypt.clc.instances")

MAX_USER_DATA = 16 * 1024
#: Terminated instances stay visible this long, as in EC2.
TERMINATED_VISIBLE = timedelta(hours=1)
#: An instance the CC has never reported is declared lost after this long.
LOST_AFTER = timedelta(minutes=5)


class InsufficientInstanceCapacity(Ec2Error):
    code, status = "InsufficientInstanceCapacity", 500


@dataclass
class LaunchPlan:
    """A validated RunInstances request."""

    account_id: str
    requester: str
    image: Image
    kernel: Image | None
    ramdisk: Image | None
    vm: VmType
    key_name: str | None
    public_key: str | None
    group_ids: list[str]
    group_names: list[str]
    user_data: str
    min_count: int
    max_count: int
    zone: str | None
    client_token: str | None
    tag_specs: list[dict[str, Any]]


def vm_type(services: Services, name: str) -> VmType:
    for vm in services.config.vm_types:
        if vm.name == name:
            return vm
    raise InvalidParameterValue(
        f"The instance type '{name}' does not exist; see DescribeInstanceTypes.",
        code="InvalidInstanceType",
    )


def validate(
    s: Session, services: Services, account: str, is_admin: bool, params: dict[str, Any]
) -> LaunchPlan:
    min_count, max_count = params["MinCount"], params["MaxCount"]
    if min_count < 1 or max_count < min_count:
        raise InvalidParameterValue("MinCount must be at least 1 and at most MaxCount.")
    image_id = params.get("ImageId")
    if not image_id:
        raise InvalidParameterValue(
            "The request must contain the parameter ImageId", code="MissingParameter"
        )
    check_ids([image_id], IMAGE_PREFIXES, "InvalidAMIID.Malformed")
    image = get_launchable(s, account, is_admin, image_id)
    if image.image_type != "machine":
        raise InvalidParameterValue(
            f"{image_id} is a {image.image_type} image, not a machine image."
        )
    if image.state != "available":
        raise InvalidParameterValue(
            f"The image {image_id} is {image.state}, not available.",
            code="InvalidAMIID.Unavailable",
        )
    kernel = ramdisk = None
    kernel_id = params.get("KernelId") or image.kernel_id
    ramdisk_id = params.get("RamdiskId") or image.ramdisk_id
    for ref, kind in ((kernel_id, "kernel"), (ramdisk_id, "ramdisk")):
        if ref:
            img = get_launchable(s, account, is_admin, ref)
            if img.image_type != kind or img.state != "available":
                raise InvalidParameterValue(f"{ref} is not an available {kind} image.")
            if kind == "kernel":
                kernel = img
            else:
                ramdisk = img
    if ramdisk is not None and kernel is None:
        raise InvalidParameterValue("A ramdisk needs a kernel.")
    vm = vm_type(services, params.get("InstanceType", "m1.small"))
    public_key = None
    key_name = params.get("KeyName")
    if key_name:
        pair = s.scalar(
            select(KeyPair).where(KeyPair.account_id == account, KeyPair.name == key_name)
        )
        if pair is None:
            raise not_found("InvalidKeyPair.NotFound", f"The key pair '{key_name}' does not exist")
        public_key = pair.public_key
    groups = [find_group(s, account, name=n) for n in params.get("SecurityGroups", [])]
    groups += [find_group(s, account, group_id=g) for g in params.get("SecurityGroupIds", [])]
    if not groups:
        groups = [ensure_default_group(s, account)]
    user_data = params.get("UserData", "")
    if user_data:
        try:
            decoded = base64.b64decode("".join(user_data.split()), validate=True)
        except (binascii.Error, ValueError):
            raise InvalidParameterValue("Invalid BASE64 encoding of user data.") from None
        if len(decoded) > MAX_USER_DATA:
            raise InvalidParameterValue("User data is limited to 16384 bytes.")
    zone = (params.get("Placement") or {}).get("AvailabilityZone")
    if zone and zone != "any" and zone not in services.clusters:
        raise InvalidParameterValue(
            f"Invalid availability zone: [{zone}]; zones: {', '.join(services.clusters)} or any",
            code="InvalidParameterValue",
        )
    return LaunchPlan(
        account_id=account,
        requester=params.get("_requester", ""),
        image=image,
        kernel=kernel,
        ramdisk=ramdisk,
        vm=vm,
        key_name=key_name,
        public_key=public_key,
        group_ids=[g.id for g in groups],
        group_names=[g.name for g in groups],
        user_data=user_data,
        min_count=min_count,
        max_count=max_count,
        zone=zone,
        client_token=params.get("ClientToken"),
        tag_specs=params.get("TagSpecifications") or [],
    )


def image_ref(services: Services, image: Image) -> ImageRef:
    """What the NC fetches: the object itself, or for a bundle the image Walrus decrypted
    (``/_image/<bucket>/<manifest>``, component keys only); either way the NC checks the
    SHA-256 recorded at registration."""
    bucket, key = split_location(image.location)
    if image.source == "bundle":
        from eucalypt.bundle import IMAGE_ENDPOINT  # here: this edit stays inside image_ref

        bucket, key = IMAGE_ENDPOINT, f"{bucket}/{key}"
    return ImageRef(
        image_id=image.id,
        url=services.walrus.url(bucket, key),
        sha256=image.sha256,
        size=image.size,
        format="qcow2" if image.disk_format == "qcow2" else "raw",
    )


def launch_spec(services: Services, plan: LaunchPlan, instance_id: str, rid: str) -> LaunchSpec:
    return LaunchSpec(
        instance_id=instance_id,
        reservation_id=rid,
        owner_id=plan.account_id,
        vm=VmSpec(
            name=plan.vm.name,
            cores=plan.vm.cores,
            memory_mib=plan.vm.memory_mib,
            disk_gib=plan.vm.disk_gib,
        ),
        images=BootImages(
            root=image_ref(services, plan.image),
            kernel=image_ref(services, plan.kernel) if plan.kernel else None,
            ramdisk=image_ref(services, plan.ramdisk) if plan.ramdisk else None,
        ),
        network=InstanceNetworkRequest(network=plan.group_ids[0], owner_id=plan.account_id),
    )


def advance(row: Instance, new: str, reason: str = "") -> bool:
    """Move ``row`` to state ``new`` if the transition table allows; True when it changed."""
    current = InstanceState(row.state)
    target = InstanceState(new)
    if target == current or target not in TRANSITIONS[current]:
        return False
    row.state = target.value
    if reason:
        row.state_reason = reason
    if target == InstanceState.TERMINATED:
        row.terminated_at = datetime.now(UTC)
    return True


def _forget_token(s: Session, reservation_id: str) -> None:
    for row in s.scalars(select(Instance).where(Instance.reservation_id == reservation_id)):
        row.client_token = None


class InstanceService:
    """Launch and terminate through the SRS and the CCs; keep the database in step."""

    def __init__(self, services: Services) -> None:
        self.services = services

    async def run(self, account: str, is_admin: bool, params: dict[str, Any]) -> str:
        """Launch per ``params`` (RunInstances); returns the reservation id."""
        services = self.services
        token = params.get("ClientToken")
        if token:
            existing = await services.db.run(
                lambda s: s.scalar(
                    select(Instance.reservation_id).where(
                        Instance.account_id == account, Instance.client_token == token
                    )
                )
            )
            if existing:
                return str(existing)
        plan = await services.db.run(lambda s: validate(s, services, account, is_admin, params))
        rid = new_id("r")
        ids = [new_id("i") for _ in range(plan.max_count)]
        try:
            allocation = await services.srs.reserve(ids, plan.vm, plan.min_count, plan.zone)
        except CapacityError as exc:
            raise InsufficientInstanceCapacity(exc.message) from None
        admitted = [i for zone_ids in allocation.values() for i in zone_ids]
        try:
            await services.db.run(lambda s: self._insert(s, plan, rid, allocation))
            # The instances' network must exist on their clusters before they boot.
            await services.netsync.push_group(plan.group_ids[0], zones=list(allocation))
        except Exception:
            services.srs.rollback(admitted)
            raise
        results = await asyncio.gather(
            *(self._launch_zone(plan, rid, zone, zone_ids) for zone, zone_ids in allocation.items())
        )
        launched = [i for ok_ids in results for i in ok_ids]
        if len(launched) < plan.min_count:
            await self.terminate_ids(launched, reason="Server.InsufficientInstanceCapacity")
            # A retry with the same ClientToken must try again, not find this failure.
            await services.db.run(lambda s: _forget_token(s, rid))
            raise InsufficientInstanceCapacity(
                f"Only {len(launched)} of the minimum {plan.min_count} instance(s) "
                "could be started."
            )
        return rid

    def _insert(
        self, s: Session, plan: LaunchPlan, rid: str, allocation: dict[str, list[str]]
    ) -> None:
        index = 0
        for zone, zone_ids in allocation.items():
            for instance_id in zone_ids:
                s.add(
                    Instance(
                        id=instance_id,
                        reservation_id=rid,
                        account_id=plan.account_id,
                        requester=plan.requester,
                        image_id=plan.image.id,
                        kernel_id=plan.kernel.id if plan.kernel else None,
                        ramdisk_id=plan.ramdisk.id if plan.ramdisk else None,
                        instance_type=plan.vm.name,
                        zone=zone,
                        state=InstanceState.PENDING.value,
                        key_name=plan.key_name,
                        public_key=plan.public_key,
                        user_data=plan.user_data,
                        group_ids=",".join(plan.group_ids),
                        launch_index=index,
                        client_token=plan.client_token,
                    )
                )
                s.flush()
                apply_tag_specifications(
                    s, plan.account_id, instance_id, "instance", plan.tag_specs
                )
                index += 1

    async def _launch_zone(
        self, plan: LaunchPlan, rid: str, zone: str, ids: list[str]
    ) -> list[str]:
        services = self.services
        specs = [launch_spec(services, plan, i, rid) for i in ids]
        try:
            reply = await services.clusters[zone].run_instances(
                RunInstancesRequest(instances=specs)
            )
            results = {r.instance_id: r for r in reply.results}
        except RemoteError as exc:
            log.warning("CC refused launch", extra={"zone": zone, "error": exc.message})
            results = {}
        ok = [i for i in ids if i in results and results[i].ok]
        failed = [i for i in ids if i not in ok]
        services.srs.commit(ok)
        services.srs.rollback(failed)

        def record(s: Session) -> None:
            for instance_id in ids:
                row = s.get(Instance, instance_id)
                if row is None:
                    continue
                result = results.get(instance_id)
                if result is not None and result.ok and result.instance is not None:
                    row.node_url = result.node_url
                    row.mac = result.instance.network.mac
                    row.private_ip = result.instance.network.private_ip
                    advance(row, result.instance.state.value, result.instance.reason)
                else:
                    why = (
                        f"{result.error_code}: {result.error_message}"
                        if result
                        else "cluster unreachable"
                    )
                    advance(
                        row, InstanceState.TERMINATED.value, f"Server.LaunchFailed: {why}"[:255]
                    )

        await services.db.run(record)
        return ok

    async def terminate_ids(self, instance_ids: list[str], reason: str = "User initiated") -> None:
        """Ask each instance's CC to terminate it; instances no CC knows are marked terminated."""
        services = self.services
        rows = await services.db.run(
            lambda s: [
                (r.id, r.zone, r.state)
                for r in s.scalars(select(Instance).where(Instance.id.in_(instance_ids)))
            ]
        )
        by_zone: dict[str, list[str]] = defaultdict(list)
        for instance_id, zone, state in rows:
            if state != InstanceState.TERMINATED.value:
                by_zone[zone].append(instance_id)
        updates: dict[str, tuple[str, str]] = {}
        for zone, ids in by_zone.items():
            client = services.clusters.get(zone)
            for instance_id in ids:
                state = InstanceState.SHUTTING_DOWN.value
                try:
                    if client is None:
                        raise RemoteError("InvalidInstanceID.NotFound", "zone gone", 404)
                    reply = await client.terminate_instances([instance_id])
                    state = reply.instances[0].instance.state.value
                except RemoteError as exc:
                    if exc.code == "InvalidInstanceID.NotFound":
                        state = InstanceState.TERMINATED.value
                    else:
                        log.warning(
                            "terminate failed",
                            extra={"instance_id": instance_id, "error": exc.message},
                        )
                updates[instance_id] = (state, reason)

        def record(s: Session) -> None:
            for instance_id, (state, why) in updates.items():
                row = s.get(Instance, instance_id)
                if row is None:
                    continue
                advance(row, state, why)

        await services.db.run(record)
        ended = [i for i, (state, _) in updates.items() if state == InstanceState.TERMINATED.value]
        await release_for_instances(services, ended)

    async def sync_once(self) -> None:
        """Pull every CC's view of its instances into the database."""
        services = self.services
        zones = list(services.clusters)
        replies = await asyncio.gather(
            *(services.clusters[z].describe_instances() for z in zones), return_exceptions=True
        )
        seen: dict[str, Any] = {}
        healthy: set[str] = set()
        for zone, reply in zip(zones, replies, strict=True):
            if isinstance(reply, BaseException):
                continue
            healthy.add(zone)
            for ci in reply.instances:
                seen[ci.instance.instance_id] = ci
        now = datetime.now(UTC)
        ended: list[str] = []
        needs_ip: list[tuple[str, str]] = []

        auto_ip = services.config.clc.auto_public_ip
        running = InstanceState.RUNNING.value

        def lost(zone: str, instance_id: str, launch_time: datetime) -> bool:
            launched = launch_time.replace(tzinfo=launch_time.tzinfo or UTC)
            return (
                zone in healthy
                and instance_id not in services.srs.in_flight
                and now - launched > LOST_AFTER
            )

        def update(row: Instance) -> None:
            was = row.state
            ci = seen.get(row.id)
            if ci is None:
                if lost(row.zone, row.id, row.launch_time):
                    advance(
                        row,
                        InstanceState.TERMINATED.value,
                        "Server.InstanceLost: no node of the cluster reports it",
                    )
                    ended.append(row.id)
                return
            info = ci.instance
            if info.network.private_ip and row.private_ip != info.network.private_ip:
                row.private_ip = info.network.private_ip
            if ci.node_url and row.node_url != ci.node_url:
                row.node_url = ci.node_url
            if info.state.value != row.state:
                advance(row, info.state.value, info.reason)
            if row.state != was and row.state == InstanceState.TERMINATED.value:
                ended.append(row.id)
            if auto_ip and row.state == running and row.private_ip and not row.public_ip:
                needs_ip.append((row.id, row.zone))

        def record(s: Session) -> None:
            # Most rounds change nothing: compare plain columns first, and load (and
            # update) the ORM rows of the instances that changed only.
            live = s.execute(
                select(
                    Instance.id, Instance.state, Instance.private_ip, Instance.node_url,
                    Instance.zone, Instance.launch_time, Instance.public_ip,
                ).where(Instance.state != InstanceState.TERMINATED.value)
            )
            changed: list[str] = []
            for r in live:
                ci = seen.get(r.id)
                if ci is None:
                    if lost(r.zone, r.id, r.launch_time):
                        changed.append(r.id)
                    continue
                info = ci.instance
                if (
                    info.state.value != r.state
                    or (info.network.private_ip and r.private_ip != info.network.private_ip)
                    or (ci.node_url and r.node_url != ci.node_url)
                ):
                    changed.append(r.id)
                elif auto_ip and r.state == running and r.private_ip and not r.public_ip:
                    needs_ip.append((r.id, r.zone))
            for i in range(0, len(changed), 500):
                chunk = changed[i : i + 500]
                for row in s.scalars(select(Instance).where(Instance.id.in_(chunk))):
                    update(row)

        await services.db.run(record)
        await release_for_instances(services, ended)
        for instance_id, zone in needs_ip:
            await auto_assign(services, instance_id, zone)

    async def sync_forever(self, interval: float) -> None:
        while True:
            try:
                await self.sync_once()
            except Exception:
                log.exception("instance sync failed")
            await asyncio.sleep(interval)
