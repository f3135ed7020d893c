#!/usr/bin/env python3
"""Walrus vs moto_server, side by side, with boto3, all on 127.0.0.1.

Measures PUT/GET throughput (1 MiB, 64 MiB, 1 GiB objects; 1 and 4 clients),
4 KiB PUT/GET operations per second (8 threads), and a full ListObjectsV2
pagination over 10,000 keys; plus the machine's ceilings in the same run
(loopback TCP, disk write + fsync, one core of MD5). Prints every figure for
both servers with the ratio, and writes them to ``bench/s3/RESULTS.md``.

Both servers run at once and every measurement is taken on one, then right
away on the other (alternating which goes first), so that a machine whose
load drifts (other work on it) affects both alike; the short measurements
are repeated and the median kept.

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
from collections.abc import Callable
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
    sizes: tuple[tuple[int, int, int], ...]  # (bytes, repetitions per client, rounds)
    clients: tuple[int, ...]
    ops_seconds: float
    ops_rounds: int
    list_keys: int
    list_rounds: int
    cell_budget: float
    loopback_seconds: float
    disk_mib: int


QUICK = Plan(sizes=((MiB, 16, 1), (64 * MiB, 2, 1)), clients=(1, 4), ops_seconds=2.5,
             ops_rounds=1, list_keys=1000, list_rounds=2, cell_budget=8, loopback_seconds=1,
             disk_mib=256)
FULL = Plan(sizes=((MiB, 64, 3), (64 * MiB, 4, 1), (1024 * MiB, 1, 1)), clients=(1, 4),
            ops_seconds=5, ops_rounds=3, list_keys=10_000, list_rounds=3, cell_budget=150,
            loopback_seconds=3, disk_mib=2048)


NOTES = [
    "- Both servers get the same boto3 requests. Over plain HTTP boto3 signs the payload "
    "SHA-256 and sends a CRC32 checksum, so each PUT byte is hashed by the client twice.",
    "- Walrus, per PUT: verifies the SigV4 signature and the payload SHA-256 and CRC32, "
    "computes the MD5 ETag (in a second thread, overlapping the body's arrival). A body of "
    "at most 128 KiB is kept inline: its bytes are committed with its metadata in one "
    "SQLite transaction. A larger one is written to a temp file, renamed into place, and its "
    "bytes (fdatasync) and directory entry (fsync) are on disk before its metadata is "
    "written. Concurrent requests' metadata writes share one SQLite transaction (group "
    "commit; WAL, `synchronous=FULL`: the WAL is fsynced at every commit), and a PUT is "
    "answered only once that commit is on disk. GET streams from the file in 1-4 MiB "
    "reads (no sendfile path); an inline object is answered from memory. Walrus runs on "
    "its own HTTP server (`eucalypt.walrus.server`), which reads an upload's body straight "
    "into its buffer.",
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


def make_bucket(server: servers.Server, name: str) -> str:
    s3 = workloads.client(server)
    if server.region == "us-east-1":
        s3.create_bucket(Bucket=name)
    else:
        s3.create_bucket(Bucket=name,
                         CreateBucketConfiguration={"LocationConstraint": server.region})
    return name


Cell = Callable[[servers.Server, str], tuple[float | None, ...]]


def alternate(live: list[servers.Server], buckets: dict[str, str], rounds: int, turn: int,
              cell: Cell) -> dict[str, list[tuple[float | None, ...]]]:
    """Run ``cell`` on every server, ``rounds`` times, swapping the order each time."""
    out: dict[str, list[tuple[float | None, ...]]] = {s.name: [] for s in live}
    for r in range(rounds):
        order = live if (turn + r) % 2 == 0 else live[::-1]
        for server in order:
            out[server.name].append(cell(server, buckets[server.name]))
    return out


def median_of(values: list[tuple[float | None, ...]], i: int) -> float | None:
    got = sorted(x for v in values if (x := v[i]))
    return got[len(got) // 2] if got else None


def measure(live: list[servers.Server], plan: Plan, results: Results) -> None:
    buckets = {s.name: make_bucket(s, "bench-" + os.urandom(4).hex()) for s in live}
    turn = 0
    for size, reps, rounds in plan.sizes:
        for clients in plan.clients:
            truncated: list[bool] = []

            def cell(server: servers.Server, bucket: str, size: int = size,
                     clients: int = clients, reps: int = reps,
                     truncated: list[bool] = truncated) -> tuple[float | None, ...]:
                tp = workloads.throughput(server, bucket, size, clients, reps, plan.cell_budget)
                truncated.append(tp.truncated)
                return tp.put_mib_s or None, tp.get_mib_s or None

            got = alternate(live, buckets, rounds, turn, cell)
            turn += 1
            label = f"{size_name(size)} x{clients} client{'s' if clients > 1 else ''}"
            note = " (budget hit)" if any(truncated) else ""
            for name, values in got.items():
                results.add(f"PUT {label}", "MiB/s" + note, name, median_of(values, 0))
                results.add(f"GET {label}", "MiB/s" + note, name, median_of(values, 1))
    got = alternate(live, buckets, plan.ops_rounds, turn,
                    lambda server, bucket: workloads.small_ops(server, bucket, 8,
                                                               plan.ops_seconds))
    turn += 1
    for name, values in got.items():
        results.add("4 KiB PUT, 8 threads", "ops/s", name, median_of(values, 0))
        results.add("4 KiB GET, 8 threads", "ops/s", name, median_of(values, 1))
    lists = {s.name: make_bucket(s, "bench-list-" + os.urandom(4).hex()) for s in live}
    for server in live:
        workloads.fill(server, lists[server.name], plan.list_keys)
    got = alternate(live, lists, plan.list_rounds, turn, lambda server, bucket: (
        plan.list_keys / workloads.list_all(server, bucket, plan.list_keys, 1),))
    for name, values in got.items():
        results.add(f"ListObjectsV2, {plan.list_keys:,} keys", "keys/s", name,
                    median_of(values, 0))
    for server in live:
        results.add("server RSS after run", "MB", server.name, server.rss_mb())


def write_report(path: Path, results: Results, ceiling: dict[str, float], plan_name: str,
                 elapsed: float) -> None:
    plan = QUICK if plan_name == "quick" else FULL
    rounds = plan.sizes[0][2]
    rounds_note = (f"; 1 MiB, 4 KiB and listing figures are medians of {rounds} rounds"
                   if rounds > 1 else "")
    lines = [
        "# S3 benchmark: Walrus vs moto_server",
        "",
        f"Generated by `bench/s3/run.py{' --quick' if plan_name == 'quick' else ''}` on "
        f"{datetime.now(UTC):%Y-%m-%d %H:%M UTC} in {elapsed:.0f} s "
        f"({os.cpu_count()} cores, Python {platform.python_version()}, "
        f"{platform.system()} {platform.release()}). Client: boto3 (SigV4, path-style, "
        "default checksums) in the same machine; servers on 127.0.0.1, both running, each "
        "measurement taken on one then at once on the other (alternating which goes "
        f"first){rounds_note}. Higher is better everywhere.",
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
        live = [stack.enter_context(start(workdir / name))
                for name, start in (("walrus", servers.walrus), ("moto", servers.moto))
                if not args.only or args.only == name]
        print("measuring " + " and ".join(s.name for s in live) + ":", flush=True)
        measure(live, plan, results)
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
