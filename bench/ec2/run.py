#!/usr/bin/env python3
"""eucalypt's EC2 side against its floor and a peer, all on 127.0.0.1, in one run.

1. Boot latency on a cached image: a bare ``qemu-system-x86_64`` boot of the test guest
   image (kernel + initramfs + qcow2 overlay on the ext4 root, the accelerator
   ``detect_accel`` picks, user-mode network restricted to a metadata forward to a tiny
   server on 127.0.0.1) timed from QEMU's start to ``EUCALYPT-GUEST-READY`` on its serial
   console -- the floor -- against eucalypt (``eucalypt up`` on a temp data dir, the
   one-host data plane in a namespace of our own) timed from the RunInstances call to
   state ``running`` and to the READY line in GetConsoleOutput. Needs root (namespaces,
   taps, iptables); without it this part is skipped (SYSTEM mode has no bootable network).
2. DescribeInstances calls/s with 1,000 and 10,000 instances: eucalypt (``eucalypt up``
   with sim-driver NCs) against moto_server holding the same number, full listing and
   filtered by instance-id, from 1 and 4 boto3 client threads; plus the servers' CPU per
   call and what populating them cost.

Prints every figure with the ratio and writes them to ``bench/ec2/RESULTS.md``.

Usage: .venv/bin/python bench/ec2/run.py [--quick] [--only boot|describe] [--out FILE]
Every wait and every measurement has a time budget, so a run is bounded
(``--quick``: one boot each, 1,000 instances, short cells: a few minutes).
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import sys
import tempfile
import time
from pathlib import Path

from boot import boot_bench
from common import FULL, HERE, QUICK, Report, say
from describe import describe_bench
from report import print_summary, write_report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=(__doc__ or "").split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="one boot each, 1,000 instances, 4 s cells (a few minutes)",
    )
    parser.add_argument("--only", choices=["boot", "describe"], help="run one of the two parts")
    parser.add_argument(
        "--no-moto",
        action="store_true",
        help="DescribeInstances: eucalypt only (to compare two versions of eucalypt)",
    )
    parser.add_argument(
        "--repeats",
        type=int,
        default=None,
        help="measured boots per side (default 3, --quick 1); medians reported",
    )
    parser.add_argument(
        "--sizes",
        type=lambda s: tuple(int(x) for x in s.split(",")),
        default=None,
        help="instance counts for DescribeInstances (default 1000,10000; --quick 1000)",
    )
    parser.add_argument(
        "--poll-seconds",
        type=float,
        default=None,
        help="boot cloud: CLC sync and CC poll interval "
        "(default: eucalypt's defaults, 2 s and 5 s)",
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=HERE / "RESULTS.md",
        help="markdown report (default: bench/ec2/RESULTS.md)",
    )
    parser.add_argument(
        "--workdir",
        type=Path,
        default=None,
        help="where the clouds keep their data (default: a temp dir)",
    )
    args = parser.parse_args(argv)
    plan, plan_name = (QUICK, "quick") if args.quick else (FULL, "full")
    if args.repeats is not None:
        plan = dataclasses.replace(plan, repeats=max(1, args.repeats))
    if args.sizes:
        plan = dataclasses.replace(plan, sizes=tuple(sorted(args.sizes)))
    started = time.monotonic()
    report = Report()
    report.note_load("start")
    with contextlib.ExitStack() as stack:
        workdir = args.workdir or Path(
            stack.enter_context(tempfile.TemporaryDirectory(prefix="ec2bench-", dir="/var/tmp"))
        )
        workdir.mkdir(parents=True, exist_ok=True)
        if args.only in (None, "boot"):
            boot_bench(workdir, plan.repeats, args.poll_seconds, report)
            report.note_load("boot latency done")
        if args.only in (None, "describe"):
            describe_bench(workdir, plan, report, moto=not args.no_moto)
    elapsed = time.monotonic() - started
    report.note_load("end")
    write_report(args.out, report, plan_name, plan, elapsed)
    print_summary(report)
    say(f"\nwrote {args.out} ({elapsed:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
