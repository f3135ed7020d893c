"""Part 2 of bench/ec2: DescribeInstances calls/s, eucalypt (sim NCs) against moto_server."""

from __future__ import annotations

import contextlib
import os
import random
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from botocore.exceptions import ClientError
from common import (
    BATCH,
    EUCALYPT,
    SIM_IMAGE,
    Plan,
    Report,
    component_pid,
    cpu_seconds,
    ec2_client,
    eucalypt_down,
    eucalypt_up,
    fmt,
    free_port,
    rss_mb,
    say,
    wait_for,
)

from eucalypt.config import CcConfig, ClcConfig, Config, NcConfig, WalrusConfig


@dataclass
class Server:
    name: str
    ec2: Callable[[], Any]  # a new client (one per thread)
    pid: int  # the process serving EC2 requests
    background: list[int]  # every process of the server (for its idle CPU)
    ids: list[str] = field(default_factory=list)
    batches: list[str] = field(default_factory=list)  # tag values, one per reservation


def measure_rate(
    server: Server, call: Callable[[Any], Any], threads: int, budget: float, idle_rate: float
) -> tuple[float, float, int]:
    """(calls/s, server CPU ms per call, calls): ``threads`` clients calling for ``budget``
    seconds (each at least once). The CPU is the serving process's, less what it spends
    idle (``idle_rate``, CPU seconds per second: eucalypt's CLC syncs with its CCs)."""
    clients = [server.ec2() for _ in range(threads)]
    counts = [0] * threads
    errors: list[BaseException] = []
    start_cpu = cpu_seconds(server.pid)
    started = time.monotonic()
    deadline = started + budget

    def worker(i: int) -> None:
        try:
            while counts[i] == 0 or time.monotonic() < deadline:
                call(clients[i])
                counts[i] += 1
        except BaseException as exc:  # reported below
            errors.append(exc)

    pool = [threading.Thread(target=worker, args=(i,)) for i in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    wall = time.monotonic() - started
    if errors:
        raise errors[0]
    calls = sum(counts)
    cpu = max(cpu_seconds(server.pid) - start_cpu - idle_rate * wall, 0.0)
    return calls / wall, cpu * 1000 / calls, calls


def idle_rate(pids: list[int], seconds: float = 8.0) -> float:
    """CPU seconds per second that processes ``pids`` use while nobody calls them."""
    before = sum(cpu_seconds(p) for p in pids)
    time.sleep(seconds)
    return (sum(cpu_seconds(p) for p in pids) - before) / seconds


def parse_floor(server: Server) -> tuple[float, float]:
    """(MB, seconds): the size of one full-listing response and the time boto3 takes to
    parse it, with no network and no server -- the floor of a full-listing call."""
    import botocore.parsers

    client = server.ec2()
    captured: dict[str, Any] = {}

    def grab(response_dict: dict[str, Any], **_: Any) -> None:
        captured["response"] = response_dict

    client.meta.events.register("before-parse.ec2.DescribeInstances", grab)
    client.describe_instances()
    response = captured["response"]
    shape = client.meta.service_model.operation_model("DescribeInstances").output_shape
    parser = botocore.parsers.create_parser("ec2")
    best = float("inf")
    for _ in range(2):
        started = time.perf_counter()
        parser.parse(response, shape)
        best = min(best, time.perf_counter() - started)
    return len(response["body"]) / 1e6, best


def full_listing(client: Any) -> tuple[int, int]:
    """(instances, calls): the whole listing as a real client gets it -- DescribeInstances
    without MaxResults, then following NextToken while the server returns one (boto3's
    paginator, as the AWS CLI does; moto pages by 100 reservations unasked)."""
    pages = list(client.get_paginator("describe_instances").paginate())
    return sum(len(r["Instances"]) for p in pages for r in p["Reservations"]), len(pages)


def _count(reply: dict[str, Any]) -> int:
    return sum(len(r["Instances"]) for r in reply["Reservations"])


def describe_cells(server: Server, size: int, plan: Plan, report: Report) -> None:
    client = server.ec2()
    listed, calls = full_listing(client)
    report.add_extra(
        f"full listing (holding {size:,}): instances / DescribeInstances calls",
        server.name,
        listed,
        f"instances / {calls} call{'s' if calls > 1 else ''}",
    )
    if listed != size:
        raise RuntimeError(f"{server.name} lists {listed} instances, not {size}")
    # The queries below answer what they should (a batch is one reservation).
    one = server.ids[len(server.ids) // 2]
    batch = server.batches[-1]
    checks = {
        "filter instance-id": _count(
            client.describe_instances(Filters=[{"Name": "instance-id", "Values": [one]}])
        ),
        "filter tag": _count(
            client.describe_instances(Filters=[{"Name": "tag:batch", "Values": [batch]}])
        ),
        "InstanceIds": _count(client.describe_instances(InstanceIds=[one])),
    }
    expected = {"filter instance-id": 1, "filter tag": BATCH, "InstanceIds": 1}
    if checks != expected:
        raise RuntimeError(f"{server.name}: queries answer {checks}, not {expected}")
    idle_all = idle_rate(server.background)
    idle_server = idle_rate([server.pid]) if server.background != [server.pid] else idle_all
    report.add_extra(
        f"idle CPU, holding {size:,} (all its processes)",
        server.name,
        100 * idle_all,
        "% of a core",
    )
    if server.background != [server.pid]:
        report.add_extra(
            f"idle CPU, holding {size:,} (the CLC: sync with the CC)",
            server.name,
            100 * idle_server,
            "% of a core",
        )
    mb, parse = parse_floor(server)
    report.add_extra(f"full-listing response, {size:,} instances", server.name, mb, "MB")
    report.add_extra(
        f"boto3 parsing that response alone (no network), {size:,}", server.name, parse, "s"
    )
    pick = random.Random(size).choice
    queries: list[tuple[str, Callable[[Any], Any]]] = [
        ("full listing", full_listing),
        (
            "filter instance-id",
            lambda c: c.describe_instances(
                Filters=[{"Name": "instance-id", "Values": [pick(server.ids)]}]
            ),
        ),
        (
            f"filter tag ({BATCH} match)",
            lambda c: c.describe_instances(
                Filters=[{"Name": "tag:batch", "Values": [pick(server.batches)]}]
            ),
        ),
        ("InstanceIds=[one]", lambda c: c.describe_instances(InstanceIds=[pick(server.ids)])),
    ]
    for query, call in queries:
        for threads in plan.threads:
            rate, cpu_ms, calls = measure_rate(
                server, call, threads, plan.cell_seconds, idle_server
            )
            report.describe.setdefault((size, query, threads), {})[server.name] = (
                rate,
                cpu_ms,
                calls,
            )
            say(
                f"  {server.name:9s} {size:>6,} {query:24s} x{threads}: {fmt(rate):>8s} calls/s"
                f"  server CPU {fmt(cpu_ms):>7s} ms/call  ({calls} calls)"
            )


def _sim_nc_config(base: Config, data_dir: Path, port: int, per_node: int, shm: Path) -> Config:
    config = base.model_copy(deep=True)
    config.data_dir = data_dir
    config.nc = NcConfig(
        port=port,
        hypervisor="sim",
        sim_boot_seconds=0.0,
        sim_cores=per_node,  # t1.micro: 1 core, 256 MiB, 1 GiB
        sim_memory_mib=per_node * 256,
        sim_disk_gib=per_node,
        reserve_memory_mib=0,
        # Records on tmpfs: a sim instance's durable record is not what is measured here.
        instances_dir=str(shm / f"nc-{port}" / "instances"),
        cache_dir=str(data_dir / "nc" / "cache"),
    )
    return config


@contextlib.contextmanager
def eucalypt_sim_cloud(workdir: Path, plan: Plan, report: Report) -> Iterator[Server]:
    """`eucalypt up` with sim NCs (the first started by `up`, the others by us), a tenant
    account and a registered (never fetched) image."""
    from eucalypt.clc import identity
    from eucalypt.clc.app import open_database
    from eucalypt.clc.models import Image
    from eucalypt.cli.init import initialise

    data_dir = workdir / "sim-cloud"
    shm_root = Path("/dev/shm") if Path("/dev/shm").is_dir() else workdir
    shm = Path(tempfile.mkdtemp(prefix="eucalypt-bench-", dir=shm_root))
    per_node = -(-int(max(plan.sizes) * 1.1) // plan.sim_nodes)
    ports = [free_port() for _ in range(plan.sim_nodes)]
    config = Config(
        data_dir=data_dir,
        clc=ClcConfig(port=free_port()),
        walrus=WalrusConfig(port=free_port()),
        cc=CcConfig(port=free_port(), nodes=[f"http://127.0.0.1:{p}" for p in ports]),
    )
    config.nc = _sim_nc_config(config, data_dir, ports[0], per_node, shm).nc
    config.save()
    report.facts["sim cloud"] = (
        f"{plan.sim_nodes} sim NCs x {per_node:,} t1.micro; CLC sync every "
        f"{config.clc.sync_seconds:g} s, CC polls every {config.cc.poll_seconds:g} s; SQLite"
    )
    init = initialise(data_dir)
    db = open_database(config)
    try:
        tenant = db.run_sync(
            lambda s: identity.create_access_key(
                s, identity.get_user(s, identity.create_account(s, "bench"), "admin")
            )
        )
        db.run_sync(
            lambda s: s.add(
                Image(
                    id=SIM_IMAGE,
                    account_id=init.admin.account_id,
                    name="sim-image",
                    image_type="machine",
                    state="available",
                    location="images/sim.img",
                    is_public=True,
                    sha256="0" * 64,
                    size=1,
                )
            )
        )
    finally:
        db.dispose()
    extra: list[subprocess.Popen[bytes]] = []
    try:
        for i, port in enumerate(ports[1:], 1):
            nc_dir = workdir / f"sim-nc{i}"
            shutil.copytree(config.keys_dir, nc_dir / "keys")
            nc_config = _sim_nc_config(config, nc_dir, port, per_node, shm)
            nc_config.save()
            with (nc_dir / "nc.log").open("wb") as log:
                extra.append(
                    subprocess.Popen(
                        [*EUCALYPT, "serve", "nc", "--config", str(nc_config.config_path)],
                        stdin=subprocess.DEVNULL,
                        stdout=log,
                        stderr=log,
                    )
                )
        took = eucalypt_up(config, "--no-test-image")
        for port in ports[1:]:
            wait_for(f"sim NC :{port}", lambda p=port: _healthy(p), 60, 0.3)  # type: ignore[misc]
        say(f"  `eucalypt up` with {plan.sim_nodes} sim NCs: {took:.1f} s")
        pids = [component_pid(config, c) for c in ("clc", "cc", "nc")] + [p.pid for p in extra]

        def client() -> Any:
            return ec2_client(config.clc.url, config.region, tenant.access_key, tenant.secret_key)

        yield Server("eucalypt", client, component_pid(config, "clc"), pids)
    finally:
        eucalypt_down(config)
        for proc in extra:
            proc.terminate()
        for proc in extra:
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        shutil.rmtree(shm, ignore_errors=True)


def _healthy(port: int) -> bool:
    try:
        return httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


@contextlib.contextmanager
def moto_server(workdir: Path) -> Iterator[Server]:
    port = free_port()
    moto_bin = Path(sys.executable).with_name("moto_server")
    log = (workdir / "moto.log").open("wb")
    proc = subprocess.Popen(
        [str(moto_bin), "-H", "127.0.0.1", "-p", str(port)],
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=log,
        env={**os.environ, "MOTO_ALLOW_NONEXISTENT_REGION": "true"},
    )
    try:
        wait_for("moto_server", lambda: proc.poll() is not None or _answers(port), 60, 0.2)
        if proc.poll() is not None:
            raise RuntimeError(f"moto_server exited with {proc.returncode}")

        def client() -> Any:
            return ec2_client(f"http://127.0.0.1:{port}", "us-east-1", "AKIDBENCH", "secret")

        yield Server("moto", client, proc.pid, [proc.pid])
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


def _answers(port: int) -> bool:
    try:
        httpx.get(f"http://127.0.0.1:{port}/", timeout=1)
        return True
    except httpx.HTTPError:
        return False


def populate(server: Server, image_id: str, target: int, batch: int, report: Report) -> None:
    """RunInstances in batches until ``server.ids`` holds ``target`` instances, then wait
    until none is pending. Each batch is a reservation tagged ``batch=b<n>``."""
    ec2 = server.ec2()
    need = target - len(server.ids)
    started = time.monotonic()
    failures = 0
    while len(server.ids) < target:
        count = min(batch, target - len(server.ids))
        try:
            reply = ec2.run_instances(
                ImageId=image_id,
                MinCount=count,
                MaxCount=count,
                InstanceType="t1.micro",
                TagSpecifications=[
                    {
                        "ResourceType": "instance",
                        "Tags": [{"Key": "batch", "Value": f"b{len(server.batches)}"}],
                    }
                ],
            )
        except ClientError as exc:
            # eucalypt: the CC's capacity is known after its first poll of the NCs, and a
            # slow CC answer (a loaded machine) fails a batch; try again, a bounded number
            # of times.
            failures += 1
            if failures > 30:
                raise
            say(f"  {server.name}: RunInstances x{count} failed ({exc}); again")
            time.sleep(2)
            continue
        server.ids += [i["InstanceId"] for i in reply["Instances"]]
        server.batches.append(f"b{len(server.batches)}")
    took = time.monotonic() - started
    report.add_extra(
        f"RunInstances, {need:,} more in batches of {batch} (to {target:,})",
        server.name,
        need / took,
        "instances/s",
    )
    if failures:
        report.add_extra(
            f"RunInstances batches failed and retried (to {target:,})",
            server.name,
            failures,
            "batches",
        )
    wait_for(
        f"{server.name}: no instance pending",
        lambda: (
            not ec2.describe_instances(
                Filters=[{"Name": "instance-state-name", "Values": ["pending"]}]
            )["Reservations"]
        ),
        300,
        1.0,
    )


def describe_bench(workdir: Path, plan: Plan, report: Report, moto: bool = True) -> None:
    say("eucalypt (sim NCs):")
    with eucalypt_sim_cloud(workdir, plan, report) as server:
        need = max(plan.sizes)
        wait_for("the CC to know its nodes' capacity", lambda: _capacity(server, need), 120, 1.0)
        for size in plan.sizes:
            populate(server, SIM_IMAGE, size, BATCH, report)
            report.note_load(f"eucalypt DescribeInstances cells, {size:,} instances")
            describe_cells(server, size, plan, report)
        report.add_extra("CLC RSS after the run", "eucalypt", rss_mb(server.pid), "MB")
    if not moto:
        return
    say("moto_server:")
    with moto_server(workdir) as server:
        ec2 = server.ec2()
        image_id = ec2.describe_images(Owners=["amazon"])["Images"][0]["ImageId"]
        for size in plan.sizes:
            populate(server, image_id, size, BATCH, report)
            report.note_load(f"moto DescribeInstances cells, {size:,} instances")
            describe_cells(server, size, plan, report)
        report.add_extra("moto_server RSS after the run", "moto", rss_mb(server.pid), "MB")


def _capacity(server: Server, need: int) -> bool:
    """Whether the cloud has room for ``need`` more t1.micro (DescribeAvailabilityZones
    verbose: ``|- t1.micro`` with State ``free / max ...``)."""
    zones = server.ec2().describe_availability_zones(ZoneNames=["verbose"])["AvailabilityZones"]
    for zone in zones:
        if zone["ZoneName"] == "|- t1.micro":
            free = zone.get("State", "").split()[:1]
            return bool(free) and free[0].isdigit() and int(free[0]) >= need
    return False


