#!/usr/bin/env python3
"""CC scale benchmark: one Cluster Controller schedules M instances over N sim NCs.

Everything runs on 127.0.0.1 in separate processes:

- the NCs: ``nchost.py`` serves N NC apps (``eucalypt.nc.app.create_app``,
  ``sim`` driver, each with its own instances directory under a temporary
  directory, in /dev/shm when there is one) behind ONE port per NC host
  process, routed by path prefix (``/n0042/v1/...``);
- the CC: ``ccserver.py``, the real CC app served as ``eucalypt serve cc``
  serves it, configured with the N node URLs (poll interval, scheduler and
  network mode SYSTEM as given);
- this process: the CLC's part, signing with the CLC's component key. It
  drives M placements through the CC's RunInstances (batches, several in
  flight), pausing at fill levels to time DescribeResources, and samples
  DescribeResources while placements run.

Measured: placements per second (overall and per quarter of the fill, so
a cost that grows with the number of instances shows), RunInstances batch
latency, the CC's CPU per placement, DescribeResources and DescribeInstances
latency (p50/p95), the duration of a poll round over N nodes (empty and
full), the CC's RSS. Checked: every placement succeeded, the nodes' own
instance counts (read from each NodeService, not through the CC) add up to
M, no node is over its capacity in cores, memory or disk, and (when the
cluster is exactly full, the default) one more instance is refused.

Node sizes vary (4, 8, 12, 16 slots of the VM type around the mean) and add
up to M x (1 + headroom) slots, so by default the cluster ends exactly full.

Usage: .venv/bin/python bench/cc/run.py [--nodes 1000] [--instances 10000] [--runs 2]
       .venv/bin/python bench/cc/run.py --quick        (100 nodes, 1,000 instances)
Bounded: every wait has a timeout and the whole run a --time-limit.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the repository: tests.support

from tests.support.simnodes import node_sizes

from eucalypt.cc.api import (
    CcClient,
    DescribeResourcesRequest,
    LaunchSpec,
    RunInstancesRequest,
    VmTypeSpec,
)
from eucalypt.config import CcConfig, ClcConfig, Config, VmType, default_vm_types
from eucalypt.nc.api import BootImages, ImageRef, VmSpec
from eucalypt.rpc import ComponentKeys, RemoteError

HERE = Path(__file__).resolve().parent
CLK_TCK = os.sysconf("SC_CLK_TCK")


# ---------------------------------------------------------------------------- helpers
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


def proc_cpu(pid: int) -> float:
    """CPU seconds (user + system) of a process, from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def proc_mem(pid: int) -> dict[str, float]:
    out = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            out[key] = int(value.split()[0]) / 1024
    return out


@dataclass
class Procs:
    """The processes this benchmark started (and only those are stopped)."""

    items: list[tuple[str, subprocess.Popen[bytes]]] = field(default_factory=list)

    def start(self, name: str, argv: list[str], log: Path) -> subprocess.Popen[bytes]:
        with log.open("wb") as fh:
            proc = subprocess.Popen(argv, stdout=fh, stderr=subprocess.STDOUT)
        self.items.append((name, proc))
        return proc

    def stop(self) -> None:
        for _, proc in self.items:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 20
        for _, proc in self.items:
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)
        self.items.clear()


def wait_http(url: str, timeout: float, proc: subprocess.Popen[bytes], log: Path) -> float:
    """Seconds until ``url`` answers 200; fails early if ``proc`` dies."""
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if proc.poll() is not None:
            raise RuntimeError(f"{url}: process exited {proc.returncode}\n{tail(log)}")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(url, timeout=5.0).status_code == 200:
                return time.monotonic() - started
        time.sleep(0.2)
    raise RuntimeError(f"{url} did not answer within {timeout:.0f}s\n{tail(log)}")


def tail(path: Path, n: int = 3000) -> str:
    try:
        return path.read_text(errors="replace")[-n:]
    except OSError:
        return ""


# ---------------------------------------------------------------------------- one run
@dataclass
class Settings:
    nodes: int
    instances: int
    batch: int
    concurrency: int
    scheduler: str
    vm: VmType
    headroom: float
    poll_seconds: float
    boot_seconds: float
    nc_procs: int
    checkpoints: int
    dr_samples: int
    time_limit: float


class Run:
    def __init__(self, s: Settings, root: Path) -> None:
        self.s = s
        self.root = root
        self.procs = Procs()
        self.r: dict[str, Any] = {}
        self.deadline = time.monotonic() + s.time_limit
        self.ids = (f"i-{k:017x}" for k in range(10**9))

    def left(self) -> float:
        return self.deadline - time.monotonic()

    # -- setup ---------------------------------------------------------------
    def start(self) -> None:
        s = self.s
        vm_types = [v for v in default_vm_types() if v.name != s.vm.name] + [s.vm]
        slots = int(s.instances * (1 + s.headroom))
        sizes = node_sizes(s.nodes, slots, s.vm)
        (self.root / "sizes.json").write_text(json.dumps(sizes))
        per_proc = -(-s.nodes // s.nc_procs)
        hosts = []
        for k in range(s.nc_procs):
            first = k * per_proc
            count = min(per_proc, s.nodes - first)
            if count > 0:
                hosts.append((first, count, free_port()))
        urls = [
            f"http://127.0.0.1:{port}/n{i:04d}"
            for first, count, port in hosts
            for i in range(first, first + count)
        ]
        config = Config(
            data_dir=self.root / "data",
            log_level="info",
            clc=ClcConfig(port=free_port()),  # not running: only the CLC's key is used
            cc=CcConfig(
                port=free_port(),
                nodes=urls,
                scheduler=s.scheduler,
                poll_seconds=s.poll_seconds,
                network_mode="SYSTEM",
            ),
            vm_types=vm_types,
        )
        config.save()
        self.config = config
        self.keys = ComponentKeys.generate(config.keys_dir)
        self.capacity = {f"n{i:04d}": size for i, size in enumerate(sizes)}
        self.slots = slots

        started = time.monotonic()
        self.nc_pids = []
        for k, (first, count, port) in enumerate(hosts):
            log = self.root / f"nchost-{k}.log"
            argv = [
                sys.executable,
                str(HERE / "nchost.py"),
                "--config",
                str(config.config_path),
                "--sizes",
                str(self.root / "sizes.json"),
                "--first",
                str(first),
                "--count",
                str(count),
                "--port",
                str(port),
                "--root",
                str(self.root / "nodes"),
                "--boot-seconds",
                str(s.boot_seconds),
            ]
            proc = self.procs.start(f"nchost-{k}", argv, log)
            self.nc_pids.append(proc.pid)
        self.nc_hosts = [f"http://127.0.0.1:{port}" for _, _, port in hosts]
        for k, url in enumerate(self.nc_hosts):
            wait_http(
                f"{url}/healthz",
                min(600, self.left()),
                self.procs.items[k][1],
                self.root / f"nchost-{k}.log",
            )
        self.r["nc_start_s"] = time.monotonic() - started
        self.r["nc_rss_mib"] = sum(proc_mem(p)["VmRSS"] for p in self.nc_pids)

        self.cc_url = config.cc.url
        self.cc_log = self.root / "cc.log"
        started = time.monotonic()
        cc = self.procs.start(
            "cc",
            [sys.executable, str(HERE / "ccserver.py"), "--config", str(config.config_path)],
            self.cc_log,
        )
        self.cc_pid = cc.pid
        wait_http(f"{self.cc_url}/healthz", min(300, self.left()), cc, self.cc_log)
        self.r["cc_serving_s"] = time.monotonic() - started
        while self.stats()["up"] < s.nodes:
            if time.monotonic() - started > min(300, self.left()):
                raise RuntimeError(f"only {self.stats()['up']} of {s.nodes} nodes up")
            time.sleep(0.2)
        self.r["cc_all_up_s"] = time.monotonic() - started
        self.r["cc_rss_start_mib"] = proc_mem(self.cc_pid)["VmRSS"]

    def stats(self) -> dict[str, Any]:
        reply = httpx.get(f"{self.cc_url}/bench/stats", timeout=30)
        reply.raise_for_status()
        doc: dict[str, Any] = reply.json()
        return doc

    def wait_rounds(self, n: int) -> tuple[list[float], float]:
        """Wait until ``n`` more poll rounds have finished: their durations, and the CC's
        CPU seconds per round meanwhile (nothing else asks the CC then)."""
        seen = len(self.stats()["poll_rounds"])
        limit = time.monotonic() + min(n * (self.s.poll_seconds + 120), self.left())
        while time.monotonic() < limit:
            rounds = self.stats()["poll_rounds"]
            if len(rounds) > seen:
                break
            time.sleep(0.1)
        seen, cpu = len(rounds), proc_cpu(self.cc_pid)
        while time.monotonic() < limit:
            rounds = self.stats()["poll_rounds"]
            if len(rounds) >= min(seen + n, 100):
                return list(rounds[-n:]), (proc_cpu(self.cc_pid) - cpu) / n
            time.sleep(0.1)
        raise RuntimeError("poll rounds did not finish in time")

    # -- measurements ----------------------------------------------------------
    def spec(self, vm: VmSpec, reservation: str) -> LaunchSpec:
        return LaunchSpec(
            instance_id=next(self.ids),
            reservation_id=reservation,
            owner_id="000000000001",
            vm=vm,
            images=BootImages(
                root=ImageRef(image_id="emi-00000000000000001", url="http://127.0.0.1:9/sim")
            ),
        )

    async def describe_resources(self, cc: CcClient, n: int) -> list[float]:
        req = DescribeResourcesRequest(vm_types=self.vm_type_specs)
        out = []
        for _ in range(n):
            t = time.perf_counter()
            await cc.describe_resources(req)
            out.append(time.perf_counter() - t)
        return out

    async def place(self, cc: CcClient, count: int, lat: list[float], codes: Counter[str]) -> int:
        """``count`` placements in batches, ``concurrency`` batches in flight; placed count."""
        s = self.s
        vm = VmSpec(
            name=s.vm.name, cores=s.vm.cores, memory_mib=s.vm.memory_mib, disk_gib=s.vm.disk_gib
        )
        sizes = [s.batch] * (count // s.batch) + ([count % s.batch] if count % s.batch else [])
        batches = iter(sizes)
        placed = 0

        async def worker() -> None:
            nonlocal placed
            for size in batches:
                if self.left() < 0:
                    return
                specs = [self.spec(vm, f"r-{time.monotonic_ns():017x}") for _ in range(size)]
                t = time.perf_counter()
                reply = await cc.run_instances(RunInstancesRequest(instances=specs))
                lat.append(time.perf_counter() - t)
                for res in reply.results:
                    if res.ok:
                        placed += 1
                    else:
                        codes[res.error_code] += 1

        await asyncio.gather(*(worker() for _ in range(s.concurrency)))
        return placed

    async def drive(self) -> None:
        s, r = self.s, self.r
        cc = CcClient(
            self.cc_url, self.keys.credential("clc"), region=self.config.region, timeout=600.0
        )
        self.vm_type_specs = [VmTypeSpec(**v.model_dump()) for v in self.config.vm_types]
        try:
            r["poll_idle"], r["poll_idle_cpu"] = self.wait_rounds(3)
            r["dr_fill"] = {0: await self.describe_resources(cc, s.dr_samples)}
            marks = [round(s.instances * (k + 1) / s.checkpoints) for k in range(s.checkpoints)]
            placed = 0
            batch_lat: list[float] = []
            codes: Counter[str] = Counter()
            segments = []
            under_load: list[float] = []
            cpu_cc = cpu_nc = 0.0
            for mark in marks:
                stop = asyncio.Event()

                async def sampler(stop: asyncio.Event = stop) -> None:
                    while not stop.is_set():
                        under_load.extend(await self.describe_resources(cc, 1))
                        with contextlib.suppress(TimeoutError):
                            await asyncio.wait_for(stop.wait(), 0.5)

                cc0, nc0 = proc_cpu(self.cc_pid), sum(proc_cpu(p) for p in self.nc_pids)
                t = time.perf_counter()
                probe = asyncio.create_task(sampler())
                done = await self.place(cc, mark - placed, batch_lat, codes)
                elapsed = time.perf_counter() - t
                stop.set()
                await probe
                cpu_cc += proc_cpu(self.cc_pid) - cc0
                cpu_nc += sum(proc_cpu(p) for p in self.nc_pids) - nc0
                segments.append((placed, placed + done, elapsed))
                placed += done
                r["dr_fill"][round(100 * mark / s.instances)] = await self.describe_resources(
                    cc, s.dr_samples
                )
                if self.left() < 0:
                    break
            r["placed"], r["failed"] = placed, dict(codes)
            r["segments"] = segments
            r["place_s"] = sum(seg[2] for seg in segments)
            r["batch_lat"] = batch_lat
            r["dr_under_load"] = under_load
            r["cc_cpu_place_s"] = cpu_cc
            r["nc_cpu_place_s"] = cpu_nc
            r["cc_rss_full_mib"] = proc_mem(self.cc_pid)["VmRSS"]

            # Full: the CC's view from the nodes' own reports, then the checks.
            self.wait_rounds(1)  # a whole round after the last placement
            r["poll_full"], r["poll_full_cpu"] = self.wait_rounds(3)
            di = []
            for _ in range(5):
                t = time.perf_counter()
                found = await cc.describe_instances()
                di.append(time.perf_counter() - t)
            r["di_all"], r["di_count"] = di, len(found.instances)
            view = await cc.describe_resources(
                DescribeResourcesRequest(vm_types=self.vm_type_specs)
            )
            mine = next(a for a in view.vm_types if a.name == s.vm.name)
            r["cc_available_at_end"], r["cc_maximum"] = mine.available, mine.maximum
            r["cc_nodes_up_at_end"] = sum(1 for n in view.nodes if n.state == "up")
            if self.slots == s.instances and placed == s.instances:
                extra = await cc.run_instances(
                    RunInstancesRequest(
                        instances=[self.spec(VmSpec(**s.vm.model_dump()), "r-overflow")]
                    )
                )
                res = extra.results[0]
                r["overflow"] = "refused" if not res.ok else f"PLACED on {res.node_url}"
                r["overflow_code"] = res.error_code
            r["cc_cpu_total_s"] = proc_cpu(self.cc_pid)
            mem = proc_mem(self.cc_pid)
            r["cc_rss_end_mib"], r["cc_hwm_mib"] = mem["VmRSS"], mem["VmHWM"]
        finally:
            await cc.aclose()

    def check(self) -> None:
        """Ground truth from every NodeService: counts, capacity."""
        r = self.r
        total = running = over = 0
        fullest = 0.0
        for host in self.nc_hosts:
            nodes = httpx.get(f"{host}/_truth", timeout=300).json()["nodes"]
            for name, n in nodes.items():
                total += n["active"]
                running += n["running"]
                res, cap = n["resources"], self.capacity[name]
                if (
                    min(res["cores_free"], res["memory_mib_free"], res["disk_gib_free"]) < 0
                    or res["cores_total"] != cap["cores"]
                    or res["memory_mib_total"] != cap["memory_mib"]
                    or res["disk_gib_total"] != cap["disk_gib"]
                    or n["active"] * self.s.vm.cores > cap["cores"]
                ):
                    over += 1
                fullest = max(fullest, 1 - res["cores_free"] / res["cores_total"])
        r["truth_active"], r["truth_running"] = total, running
        r["nodes_over_capacity"] = over
        r["fullest_node"] = fullest
        log = self.cc_log.read_text(errors="replace")
        r["cc_log_errors"] = log.count('"level": "error"')
        r["cc_slow_rounds"] = log.count("poll round slower")
        r["cc_nodes_down"] = log.count('"msg": "node down"')
        r["cc_launch_retries"] = log.count('"msg": "launch failed on node"')
        # The CC's own time per request (its access log: receive to response built).
        served: dict[str, list[float]] = {}
        for line in log.splitlines():
            if '"msg": "request"' not in line:
                continue
            with contextlib.suppress(ValueError, KeyError):
                entry = json.loads(line)
                served.setdefault(entry["path"], []).append(entry["ms"] / 1000)
        r["served"] = served

    def execute(self) -> dict[str, Any]:
        started = time.monotonic()
        load = os.getloadavg()[0]
        try:
            self.start()
            asyncio.run(self.drive())
            self.check()
        finally:
            self.procs.stop()
        self.r["wall_s"] = time.monotonic() - started
        self.r["load_before"] = load
        return self.r


# ---------------------------------------------------------------------------- report
def ms(v: float) -> str:
    return f"{v * 1000:,.0f}" if v >= 0.1 else f"{v * 1000:,.1f}"


def rows(r: dict[str, Any], s: Settings) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    add = out.append
    rate = r.get("placed", 0) / r["place_s"] if r.get("place_s") else 0.0
    add(("placements/s (all)", f"{rate:,.0f}"))
    for a, b, secs in r.get("segments", []):
        add(
            (
                f"placements/s, {100 * a // s.instances}-{100 * b // s.instances}% full",
                f"{(b - a) / secs:,.0f}",
            )
        )
    bl = r.get("batch_lat", [])
    add((f"RunInstances of {s.batch}, ms p50 / p95", f"{ms(pct(bl, 0.5))} / {ms(pct(bl, 0.95))}"))
    if r.get("placed"):
        add(
            (
                "CC CPU per placement (poll rounds meanwhile included), ms",
                f"{1000 * r['cc_cpu_place_s'] / r['placed']:.2f}",
            )
        )
        add(("NC host CPU per placement, ms", f"{1000 * r['nc_cpu_place_s'] / r['placed']:.2f}"))
    for level, lat in r.get("dr_fill", {}).items():
        add(
            (
                f"DescribeResources at {level}% full, ms p50 / p95",
                f"{ms(pct(lat, 0.5))} / {ms(pct(lat, 0.95))}",
            )
        )
    ul = r.get("dr_under_load", [])
    add(
        (
            "DescribeResources while placing, ms p50 / p95",
            f"{ms(pct(ul, 0.5))} / {ms(pct(ul, 0.95))} (n={len(ul)})",
        )
    )
    di = r.get("di_all", [])
    if di:
        add(
            (
                f"DescribeInstances, all {r['di_count']:,}, ms p50 / max",
                f"{ms(pct(di, 0.5))} / {ms(max(di))}",
            )
        )
    for path in ("/v1/RunInstances", "/v1/DescribeResources", "/v1/DescribeInstances"):
        times = r.get("served", {}).get(path, [])
        if times:
            add(
                (
                    f"CC's own time for {path.rsplit('/', 1)[1]}, ms p50 / p95 (n)",
                    f"{ms(pct(times, 0.5))} / {ms(pct(times, 0.95))} ({len(times)})",
                )
            )
    for key, label in (("poll_idle", "0 instances"), ("poll_full", f"{s.instances:,} instances")):
        pr = r.get(key, [])
        if pr:
            add(
                (
                    f"poll round over {s.nodes:,} nodes, {label}: s (median / max), CC CPU s",
                    f"{statistics.median(pr):.2f} / {max(pr):.2f}, {r[key + '_cpu']:.2f}",
                )
            )
    add(
        ("CC start: serving / all nodes up, s", f"{r['cc_serving_s']:.1f} / {r['cc_all_up_s']:.1f}")
    )
    add(
        (
            "CC RSS: all up / full / peak, MiB",
            f"{r['cc_rss_start_mib']:.0f} / {r.get('cc_rss_end_mib', 0):.0f} / "
            f"{r.get('cc_hwm_mib', 0):.0f}",
        )
    )
    add(("NC host(s): start s / RSS MiB", f"{r['nc_start_s']:.1f} / {r['nc_rss_mib']:.0f}"))
    add(("placed / failed", f"{r.get('placed', 0):,} / {sum(r.get('failed', {}).values())}"))
    add(("instances on the nodes (their own count)", f"{r.get('truth_active', 0):,}"))
    add(("nodes over capacity", str(r.get("nodes_over_capacity", "?"))))
    add(("fullest node (cores used)", f"{100 * r.get('fullest_node', 0):.0f}%"))
    if "overflow" in r:
        add(("one more instance when full", f"{r['overflow']} ({r['overflow_code']})"))
    add(("CC: DescribeResources available at end", str(r.get("cc_available_at_end", "?"))))
    add(("CC log: errors / slow poll rounds", f"{r['cc_log_errors']} / {r['cc_slow_rounds']}"))
    if "cc_nodes_down" in r:
        add(
            (
                "CC log: nodes called down / launches moved to another node",
                f"{r['cc_nodes_down']} / {r['cc_launch_retries']}",
            )
        )
    add(("wall time, s (load average before)", f"{r['wall_s']:.0f} ({r['load_before']:.1f})"))
    return out


def render(results: list[dict[str, Any]], s: Settings, wall: float) -> str:
    tables = [rows(r, s) for r in results]
    head = "| figure | " + " | ".join(f"run {i + 1}" for i in range(len(results))) + " |"
    lines = [head, "|---|" + "---:|" * len(results)]
    labels = list(dict.fromkeys(label for t in tables for label, _ in t))
    by_label = [dict(t) for t in tables]
    for label in labels:
        lines.append(f"| {label} | " + " | ".join(t.get(label, "") for t in by_label) + " |")
    when = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    return "\n".join(
        [
            f"# CC scale benchmark: {s.instances:,} instances over {s.nodes:,} sim NCs",
            "",
            f"Generated by `bench/cc/run.py` on {when} in {wall:.0f} s ({os.cpu_count()} cores, "
            f"Python {platform.python_version()}, Linux {platform.release()}). Machine shared "
            "with other work: see the load average per run.",
            "",
            f"Settings: {s.nodes:,} NCs (sim driver, boot {s.boot_seconds} s) in {s.nc_procs} "
            f"process(es), one CC (`{s.scheduler}`, poll every {s.poll_seconds:g} s, SYSTEM "
            f"network), {s.instances:,} x {s.vm.name} ({s.vm.cores} core, {s.vm.memory_mib} MiB, "
            f"{s.vm.disk_gib} GiB) in RunInstances batches of {s.batch}, {s.concurrency} in "
            f"flight; node sizes 4-16 slots, {int(s.instances * (1 + s.headroom)):,} slots in "
            "all. DescribeResources asks for the configured VM types; latencies are seen by "
            "the caller (signing, HTTP, parsing included).",
            "",
            *lines,
            "",
            "## How it runs",
            "",
            "- NCs: `bench/cc/nchost.py`, one process serving every NC app "
            "(`eucalypt.nc.app.create_app`, sim driver, own instances directory in /dev/shm) "
            "behind one port, routed by path prefix (`/n0042/v1/...`); SigV4 is checked on "
            "the full path. The NC host's CPU is on the same 2 cores as the CC.",
            "- CC: `bench/cc/ccserver.py` = `eucalypt serve cc` (uvicorn, uvloop, httptools, "
            "JSON logs at info) plus a read-only `/bench/stats` route for the poll-round "
            "durations.",
            "- Caller: this process, with the CLC's key. Placements pause at each quarter to "
            "time DescribeResources on a quiet CC (the node poller still runs); a sampler "
            "also times it every 0.5 s while placements run.",
            "- Correctness from the nodes' own NodeService (not through the CC): the sum of "
            "active instances, each node's free cores/memory/disk never below zero.",
            "",
        ]
    )


# ---------------------------------------------------------------------------- main
def main() -> int:
    parser = argparse.ArgumentParser(
        description="One CC schedules --instances sim instances over --nodes sim NCs "
        "(all on 127.0.0.1); prints and writes the figures.",
    )
    parser.add_argument("--nodes", type=int, default=1000, help="sim NCs (default 1000)")
    parser.add_argument("--instances", type=int, default=10_000, help="placements (10000)")
    parser.add_argument("--quick", action="store_true", help="100 nodes, 1000 instances")
    parser.add_argument("--batch", type=int, default=50, help="instances per RunInstances (50)")
    parser.add_argument("--concurrency", type=int, default=4, help="RunInstances in flight (4)")
    parser.add_argument("--scheduler", default="firstfit", help="cc.scheduler (firstfit)")
    parser.add_argument("--vm-type", default="m1.small", help="VM type to place (m1.small)")
    parser.add_argument(
        "--headroom", type=float, default=0.0, help="spare capacity fraction (0: ends full)"
    )
    parser.add_argument("--poll-seconds", type=float, default=5.0, help="cc.poll_seconds (5)")
    parser.add_argument("--boot-seconds", type=float, default=0.05, help="sim boot time (0.05)")
    parser.add_argument("--nc-procs", type=int, default=1, help="NC host processes (1)")
    parser.add_argument("--checkpoints", type=int, default=4, help="fill levels timed (4)")
    parser.add_argument("--dr-samples", type=int, default=30, help="DescribeResources per level")
    parser.add_argument("--runs", type=int, default=1, help="repeat the whole run (1)")
    parser.add_argument("--time-limit", type=float, default=1200, help="seconds per run (1200)")
    parser.add_argument("--out", type=Path, default=HERE / "RESULTS.md", help="report file")
    parser.add_argument("--no-write", action="store_true", help="print only")
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory")
    args = parser.parse_args()
    if args.quick:
        args.nodes, args.instances = 100, 1000
    vm = next((v for v in default_vm_types() if v.name == args.vm_type), None)
    if vm is None:
        parser.error(f"unknown VM type {args.vm_type}")
    s = Settings(
        nodes=args.nodes,
        instances=args.instances,
        batch=args.batch,
        concurrency=args.concurrency,
        scheduler=args.scheduler,
        vm=vm,
        headroom=args.headroom,
        poll_seconds=args.poll_seconds,
        boot_seconds=args.boot_seconds,
        nc_procs=args.nc_procs,
        checkpoints=args.checkpoints,
        dr_samples=args.dr_samples,
        time_limit=args.time_limit,
    )
    started = time.monotonic()
    results = []
    shm = Path("/dev/shm")
    for k in range(args.runs):
        root = Path(
            tempfile.mkdtemp(prefix="eucalypt-bench-cc-", dir=shm if shm.is_dir() else None)
        )
        print(f"run {k + 1}/{args.runs}: {s.nodes} nodes, {s.instances} instances in {root}")
        try:
            results.append(Run(s, root).execute())
        except (RuntimeError, RemoteError) as exc:
            print(f"run {k + 1} failed: {exc}", file=sys.stderr)
            return 1
        finally:
            if not args.keep:
                shutil.rmtree(root, ignore_errors=True)
        for label, value in rows(results[-1], s):
            print(f"  {label:<58} {value}")
    report = render(results, s, time.monotonic() - started)
    if not args.no_write:
        args.out.write_text(report)
        print(f"wrote {args.out}")
    ok = all(
        r.get("placed") == s.instances
        and r.get("truth_active") == s.instances
        and r.get("nodes_over_capacity") == 0
        and r.get("overflow", "refused") == "refused"
        for r in results
    )
    print("correctness:", "OK" if ok else "FAILED")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
