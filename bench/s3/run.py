#!/usr/bin/env python3
"""Walrus vs moto_server, side by side, with boto3, all on 127.0.0.1.

Measures PUT/GET throughput (1 MiB, 64 MiB, 1 GiB objects; 1 and 4 clients),
4 KiB PUT/GET operations per second (8 threads), and a full ListObjectsV2
pagination over 10,000 keys; plus the machine's ceilings in the same run
(loopback TCP, disk write + fsync, one core of MD5). Prints every figure for
both servers with the ratio, and writes them to ``bench/s3/RESULTS.md``.

Usage: .venv/bin/python bench/s3/run.py [--quick] [--only walrus|moto] [--out FILE]
Every measurement has a time budget, so a run is bounded (``--quick`` < 1 min).
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from contextlib import ExitStack
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parents[1] / "src"))

import ceilings  # type: ignore[import-not-found]  # noqa: E402
import servers  # type: ignore[import-not-found]  # noqa: E402
import workloads  # type: ignore[import-not-found]  # noqa: E402

MiB = 1 << 20


@dataclass(frozen=True)
class Plan:
    sizes: tuple[tuple[int, int], ...]  # (bytes, repetitions per client)
    clients: tuple[int, ...]
    ops_seconds: float
    list_keys: int
    list_repeats: int
    cell_budget: float
    loopback_seconds: float
    disk_mib: int


QUICK = Plan(sizes=((MiB, 16), (64 * MiB, 2)), clients=(1, 4), ops_seconds=2.5,
             list_keys=1000, list_repeats=2, cell_budget=8, loopback_seconds=1, disk_mib=256)
FULL = Plan(sizes=((MiB, 64), (64 * MiB, 4), (1024 * MiB, 1)), clients=(1, 4),
            ops_seconds=10, list_keys=10_000, list_repeats=3, cell_budget=150,
            loopback_seconds=3, disk_mib=2048)


NOTES = [
    "- Both servers get the same boto3 requests. Over plain HTTP boto3 signs the payload "
    "SHA-256 and sends a CRC32 checksum, so each PUT byte is hashed by the client twice.",
    "- Walrus, per PUT: verifies the SigV4 signature and the payload SHA-256 and CRC32, "
    "computes the MD5 ETag, writes a temp file, fsyncs it, renames it, fsyncs the directory "
    "and commits the metadata (SQLite, `synchronous=FULL`) before it answers. GET streams "
    "from the file in 1-4 MiB reads (uvicorn has no sendfile path).",
    "- moto_server: no signature check, no fsync; objects under ~5 MiB stay in memory, "
    "larger ones spill to temporary files.",
    "- The client shares the machine's cores with the server, so small-request rates are "
    "bounded by both sides' CPU. Large-object goal: within 2x of the disk (PUT) and loopback "
    "(GET) ceilings above.",
]


def size_name(n: int) -> str:
    return f"{n // (1024 * MiB)} GiB" if n >= 1024 * MiB else f"{n // MiB} MiB"


class Results:
    def __init__(self) -> None:
        self.rows: list[tuple[str, str, dict[str, float | None]]] = []

    def add(self, metric: str, unit: str, server: str, value: float | None) -> None:
        print(f"  {server:7s} {metric:34s} {fmt(value):>10s} {unit}", flush=True)
        for m, _, values in self.rows:
            if m == metric:
                values[server] = value
                return
        self.rows.append((metric, unit, {server: value}))


def fmt(v: float | None) -> str:
    if v is None:
        return "-"
    return f"{v:,.0f}" if v >= 100 else f"{v:,.1f}"


def measure(server: servers.Server, plan: Plan, results: Results) -> None:
    s3 = workloads.client(server)
    bucket = "bench-" + os.urandom(4).hex()
    s3.create_bucket(Bucket=bucket) if server.region == "us-east-1" else s3.create_bucket(
        Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": server.region})
    for size, reps in plan.sizes:
        for clients in plan.clients:
            tp = workloads.throughput(server, bucket, size, clients, reps, plan.cell_budget)
            label = f"{size_name(size)} x{clients} client{'s' if clients > 1 else ''}"
            note = " (budget hit)" if tp.truncated else ""
            results.add(f"PUT {label}", "MiB/s" + note, server.name, tp.put_mib_s or None)
            results.add(f"GET {label}", "MiB/s" + note, server.name, tp.get_mib_s or None)
    put_ops, get_ops = workloads.small_ops(server, bucket, 8, plan.ops_seconds)
    results.add("4 KiB PUT, 8 threads", "ops/s", server.name, put_ops)
    results.add("4 KiB GET, 8 threads", "ops/s", server.name, get_ops)
    list_bucket = bucket + "-list"
    s3.create_bucket(Bucket=list_bucket) if server.region == "us-east-1" else s3.create_bucket(
        Bucket=list_bucket, CreateBucketConfiguration={"LocationConstraint": server.region})
    workloads.fill(server, list_bucket, plan.list_keys)
    secs = workloads.list_all(server, list_bucket, plan.list_keys, plan.list_repeats)
    results.add(f"ListObjectsV2, {plan.list_keys:,} keys", "keys/s", server.name,
                plan.list_keys / secs)
    results.add("server RSS after run", "MB", server.name, server.rss_mb())


def write_report(path: Path, results: Results, ceiling: dict[str, float], plan_name: str,
                 elapsed: float) -> None:
    lines = [
        "# S3 benchmark: Walrus vs moto_server",
        "",
        f"Generated by `bench/s3/run.py{' --quick' if plan_name == 'quick' else ''}` on "
        f"{datetime.now(UTC):%Y-%m-%d %H:%M UTC} in {elapsed:.0f} s "
        f"({os.cpu_count()} cores, Python {platform.python_version()}, "
        f"{platform.system()} {platform.release()}). Client: boto3 (SigV4, path-style, "
        "default checksums) in the same machine; servers on 127.0.0.1, measured one at a "
        "time. Higher is better everywhere.",
        "",
        "## Machine ceilings (same run)",
        "",
        "| ceiling | MiB/s |",
        "|---|---:|",
    ]
    lines += [f"| {k} | {fmt(v)} |" for k, v in ceiling.items()]
    lines += ["", "## Results", "", "| workload | unit | Walrus | moto_server | Walrus/moto |",
              "|---|---|---:|---:|---:|"]
    for metric, unit, values in results.rows:
        w, m = values.get("walrus"), values.get("moto")
        ratio = f"{w / m:.2f}x" if w and m else "-"
        lines.append(f"| {metric} | {unit} | {fmt(w)} | {fmt(m)} | {ratio} |")
    lines += ["", "## What is being compared", "", *NOTES]
    path.write_text("\n".join(lines) + "\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true",
                        help="small sizes and short runs (finishes in under a minute)")
    parser.add_argument("--only", choices=["walrus", "moto"], help="benchmark one server")
    parser.add_argument("--out", type=Path, default=HERE / "RESULTS.md",
                        help="markdown report (default: bench/s3/RESULTS.md)")
    parser.add_argument("--workdir", type=Path, default=None,
                        help="where the servers keep data (default: a temp dir)")
    parser.add_argument("--serve-walrus", metavar="SPEC", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve_walrus:
        servers.serve_walrus(args.serve_walrus)
        return 0
    plan, plan_name = (QUICK, "quick") if args.quick else (FULL, "full")
    started = time.monotonic()
    results = Results()
    with ExitStack() as stack:
        workdir = args.workdir or Path(stack.enter_context(tempfile.TemporaryDirectory(
            prefix="s3bench-", dir="/var/tmp")))
        workdir.mkdir(parents=True, exist_ok=True)
        print("machine ceilings:", flush=True)
        ceiling = {
            "loopback TCP, 1 stream": ceilings.loopback_mib_s(plan.loopback_seconds),
            f"disk write + fsync ({size_name(plan.disk_mib * MiB)})":
                ceilings.disk_fsync_mib_s(workdir, plan.disk_mib),
            "MD5, one core": ceilings.md5_mib_s(),
        }
        for k, v in ceiling.items():
            print(f"  {k:40s} {fmt(v):>10s} MiB/s", flush=True)
        for name, start in (("walrus", servers.walrus), ("moto", servers.moto)):
            if args.only and args.only != name:
                continue
            print(f"{name}:", flush=True)
            with start(workdir / name) as server:
                measure(server, plan, results)
    elapsed = time.monotonic() - started
    write_report(args.out, results, ceiling, plan_name, elapsed)
    print(f"\nwrote {args.out} ({elapsed:.0f} s)")
    print(f"\n{'workload':42s} {'Walrus':>10s} {'moto':>10s} {'ratio':>8s}")
    for metric, unit, values in results.rows:
        w, m = values.get("walrus"), values.get("moto")
        ratio = f"{w / m:.2f}x" if w and m else "-"
        print(f"{metric + ' (' + unit.split(' ')[0] + ')':42s} {fmt(w):>10s} {fmt(m):>10s} "
              f"{ratio:>8s}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
