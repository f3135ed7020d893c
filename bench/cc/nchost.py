#!/usr/bin/env python3
"""Many sim NCs behind one HTTP port, for the CC scale benchmark.

``http://127.0.0.1:PORT/n0042/v1/<Operation>`` reaches node ``n0042``'s NC
app (``eucalypt.nc.app.create_app``, ``sim`` driver, its own instances
directory): see ``tests/support/simnodes.py``. ``GET /healthz`` answers
once every node has started; ``GET /_truth`` reports each node's ground
truth for the benchmark's correctness check.

Usage (run by bench/cc/run.py): nchost.py --config FILE --sizes FILE --first I --count N
    --port P --root DIR [--boot-seconds S]
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path

import uvicorn

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the repository: tests.support

from tests.support.simnodes import PrefixRouter, build_nodes

from eucalypt.config import Config


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", required=True)
    parser.add_argument("--sizes", required=True, help="JSON list of {cores, memory_mib, disk_gib}")
    parser.add_argument("--first", type=int, default=0)
    parser.add_argument("--count", type=int, required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--root", required=True, help="directory for the nodes' instances")
    parser.add_argument("--boot-seconds", type=float, default=0.05)
    parser.add_argument("--monitor-seconds", type=float, default=5.0)
    args = parser.parse_args()
    # The nodes stand in for other machines: keep their logging (and its CPU) out of the way.
    logging.basicConfig(level=logging.WARNING)
    started = time.monotonic()
    apps = build_nodes(
        Config.load(Path(args.config)),
        json.loads(Path(args.sizes).read_text()),
        Path(args.root),
        first=args.first,
        count=args.count,
        boot_seconds=args.boot_seconds,
        monitor_seconds=args.monitor_seconds,
    )
    logging.getLogger("bench.nchost").warning(
        "built %d NC apps in %.1f s", len(apps), time.monotonic() - started
    )
    uvicorn.run(
        PrefixRouter(apps),
        host="127.0.0.1",
        port=args.port,
        loop="uvloop",
        http="httptools",
        log_config=None,
        access_log=False,
        lifespan="on",
        backlog=4096,
    )


if __name__ == "__main__":
    main()
