"""bench/ec2: the figures as a table (RESULTS.md) and a summary on the terminal."""

from __future__ import annotations

import os
import platform
import statistics
from datetime import UTC, datetime
from pathlib import Path

from common import BATCH, Plan, Report, fmt, say

NOTES_BOOT = [
    "- The floor is QEMU alone: the same kernel, initramfs, kernel command line "
    "(the NC's), qcow2 overlay on the same ext4 root, 1 vCPU, 256 MiB, the same "
    "accelerator, timed from starting the process to the READY line in the serial log "
    "(read every 20 ms). Its guest gets DHCP from QEMU's user-mode network and reads "
    "instance-id from a tiny metadata server on 127.0.0.1 (IMDSv2), as eucalypt's guest "
    "does from dnsmasq and the CC's metadata proxy.",
    "- eucalypt is timed from the RunInstances call (boto3) to the first DescribeInstances "
    "(polled every 0.1 s) saying `running`, and to the READY line in GetConsoleOutput "
    "(polled every 0.2 s). In between: the CLC's admission (SRS) and records, the "
    "security group's network pushed to the CC, CC scheduling, the NC copying the cached "
    "image, making the overlay and the tap, QEMU (same flags, daemonized, QMP), and state "
    "flowing back up by polling: the NC is asked by the CC every `cc.poll_seconds`, the "
    "CC by the CLC every `clc.sync_seconds`, so `running` lags the VM start by up to their "
    "sum. The guest's DHCP server is the CC's dnsmasq in the namespace and its metadata "
    "goes through the CC's proxy to the CLC.",
    "- Each measured launch is a second (or later) launch of the registered test image: "
    "the image is in the NC's cache. The previous instance is terminated first.",
]
NOTES_DESCRIBE = [
    "- Both servers hold the same number of instances, launched with RunInstances "
    f"(MinCount = MaxCount = {BATCH}, each call's instances tagged `batch=b<n>`: a "
    "reservation per call) by the same boto3 client; eucalypt's run on sim-driver NCs "
    "(no VMs; the sim NCs keep their instance records on tmpfs), every instance `running`.",
    "- A call is a complete boto3 `describe_instances` (SigV4 signing, HTTP on 127.0.0.1, "
    "XML parsing into dicts). A `full listing` is what a real client does to list "
    "everything: DescribeInstances without MaxResults, following NextToken while one comes "
    "back (boto3's paginator, as the AWS CLI); both servers answer it in one call here "
    "(moto pages by 100 reservations unasked, and holds at most "
    f"{10_000 // BATCH} reservations), and the listing is checked to hold every instance. "
    "For a full listing the client's parsing alone takes the time "
    "shown under 'around the measurements', which bounds the calls/s any server could reach "
    "here. `CPU ms/call` is the CPU the serving process used per call (eucalypt: the CLC, "
    "less its idle rate -- the instance sync with the CC, measured just before -- times the "
    "cell's duration; moto_server: its one process, idle at 0).",
    "- `filter instance-id` is `Filters=[{Name: instance-id, Values: [one id]}]`, "
    f"`filter tag ({BATCH} match)` is `Filters=[{{Name: tag:batch, Values: [b<n>]}}]` "
    f"(one reservation of {BATCH} instances), `InstanceIds=[one]` names one instance; a "
    "random instance or batch each call. What each query answers is checked first.",
    "- eucalypt authenticates every request (SigV4 against its credential store), keeps "
    "instances in SQLite and renders the EC2 XML from botocore's model; moto_server checks "
    "no signature and keeps everything in memory. moto's instances are EC2-VPC ones: each "
    "carries a network interface, an EBS root device, metadata options and more, so its "
    "full listing is about 3x the bytes of eucalypt's (EC2-Classic-style, as the paper's "
    "cloud) and costs the client as much more to parse.",
    "- The client and the servers share the machine's 2 cores (and other work may be "
    "running: see the load averages above), so figures move between runs; each cell is one "
    "run of its time budget (each client thread completes one call at least), the boot "
    "figures are medians of the repeats, the bare and eucalypt boots alternating. The "
    "eucalypt cells run first, then moto's (one server at a time: eucalypt's idle sync "
    "would otherwise weigh on moto's figures).",
]


def median(values: list[float]) -> float:
    return statistics.median(values)


def boot_rows(report: Report) -> list[tuple[str, str, str]]:
    rows = [
        (label, fmt(median(v), " s"), ", ".join(f"{x:.2f}" for x in v))
        for label, v in report.boot.items()
        if v
    ]
    bare = report.boot.get("bare QEMU: process start → READY on the serial console")
    ready = report.boot.get("eucalypt: RunInstances → READY in GetConsoleOutput")
    running = report.boot.get("eucalypt: RunInstances → state running (DescribeInstances)")
    if bare and ready:
        rows.append(
            ("ratio eucalypt → READY / bare → READY", f"{median(ready) / median(bare):.2f}x", "")
        )
    if bare and running:
        rows.append(
            (
                "ratio eucalypt → running / bare → READY",
                f"{median(running) / median(bare):.2f}x",
                "",
            )
        )
    return rows


def describe_rows(report: Report) -> list[list[str]]:
    rows = []
    for (size, query, threads), by in report.describe.items():
        e, m = by.get("eucalypt"), by.get("moto")
        ratio = f"{e[0] / m[0]:.2f}x" if e and m and m[0] else "-"
        rows.append(
            [
                f"{size:,}",
                query,
                str(threads),
                fmt(e[0]) if e else "-",
                fmt(m[0]) if m else "-",
                ratio,
                fmt(e[1]) if e else "-",
                fmt(m[1]) if m else "-",
            ]
        )
    return rows


def write_report(path: Path, report: Report, plan_name: str, plan: Plan, elapsed: float) -> None:
    facts = ", ".join(f"{k}: {v}" for k, v in report.facts.items())
    lines = [
        "# EC2 benchmark: eucalypt vs bare QEMU and moto_server",
        "",
        f"Generated by `bench/ec2/run.py{' --quick' if plan_name == 'quick' else ''}` on "
        f"{datetime.now(UTC):%Y-%m-%d %H:%M UTC} in {elapsed:.0f} s "
        f"({os.cpu_count()} cores, Python {platform.python_version()}, "
        f"{platform.system()} {platform.release()}). {facts}.",
        "",
        "Load average (1, 5, 15 min; the 2 cores are shared with other work): "
        + "; ".join(f"{when}: {load}" for when, load in report.loads)
        + ".",
        "",
    ]
    if report.boot:
        lines += [f"## Boot latency on a cached image (median of {plan.repeats})", ""]
        lines += ["| measure | median | runs (s) |", "|---|---:|---|"]
        lines += [f"| {a} | {b} | {c} |" for a, b, c in boot_rows(report)]
        if report.boot_skipped:
            lines += ["", f"eucalypt part skipped: {report.boot_skipped}."]
        lines += [f"- {n}" for n in report.boot_notes]
        lines += ["", *NOTES_BOOT, ""]
    if report.describe:
        lines += [
            "## DescribeInstances: eucalypt vs moto_server",
            "",
            "Calls per second (higher is better) and the serving process's CPU per call "
            "(lower is better), from boto3 in the same machine.",
            "",
            "| instances | query | client threads | eucalypt calls/s | moto calls/s | "
            "eucalypt/moto | eucalypt CPU ms/call | moto CPU ms/call |",
            "|---:|---|---:|---:|---:|---:|---:|---:|",
        ]
        lines += ["| " + " | ".join(r) + " |" for r in describe_rows(report)]
        lines += [""]
    if report.extra:
        lines += [
            "## Setting up, and around the measurements",
            "",
            "| what | server | value |",
            "|---|---|---:|",
        ]
        lines += [
            f"| {label} | {server} | {fmt(v)} {unit} |" for label, server, v, unit in report.extra
        ]
        lines += [""]
    if report.describe:
        lines += ["## What is being compared", "", *NOTES_DESCRIBE, ""]
    path.write_text("\n".join(lines))


def print_summary(report: Report) -> None:
    if report.boot:
        say("\nboot latency (median):")
        for a, b, _ in boot_rows(report):
            say(f"  {a:62s} {b:>8s}")
    if report.describe:
        say(
            f"\n{'instances':>9s} {'query':24s} {'thr':>3s} {'eucalypt':>9s} {'moto':>9s} "
            f"{'ratio':>7s} {'euca ms':>8s} {'moto ms':>8s}  (calls/s; server CPU per call)"
        )
        for r in describe_rows(report):
            say(
                f"{r[0]:>9s} {r[1]:24s} {r[2]:>3s} {r[3]:>9s} {r[4]:>9s} {r[5]:>7s} "
                f"{r[6]:>8s} {r[7]:>8s}"
            )


