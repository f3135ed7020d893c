#!/usr/bin/env python3
"""The CC under test: ``eucalypt serve cc`` plus one read-only stats route.

The app is :func:`eucalypt.cc.app.create_app` served exactly as ``eucalypt
serve cc`` serves it (uvicorn, uvloop, httptools, JSON logs at the
configured level); ``GET /bench/stats`` (unauthenticated, bench only) adds
what the benchmark cannot see from outside: the durations of the poll
rounds, how many nodes are up, the process's RSS, peak RSS and CPU time.

Usage (run by bench/cc/run.py): ccserver.py --config FILE
"""

from __future__ import annotations

import argparse
import os
import signal
import time
from collections import deque
from pathlib import Path
from typing import Any

import uvicorn

from eucalypt.cc.app import create_app
from eucalypt.config import Config
from eucalypt.logs import setup_logging


def proc_status() -> dict[str, float]:
    out: dict[str, float] = {}
    for line in Path("/proc/self/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            out[key] = int(value.split()[0]) / 1024  # MiB
    times = os.times()
    out["cpu_seconds"] = times.user + times.system
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", required=True)
    args = parser.parse_args()
    config = Config.load(Path(args.config))
    setup_logging("cc", config.log_level)
    app = create_app(config)
    cluster = app.state.service.cluster
    if os.environ.get("BENCH_POLL_CONCURRENCY"):  # experiments only
        cluster.poll_concurrency = int(os.environ["BENCH_POLL_CONCURRENCY"])
    if not hasattr(cluster, "poll_rounds"):  # an older CC (before/after comparisons)
        cluster.poll_rounds = deque(maxlen=100)
        refresh = cluster.refresh

        async def timed_refresh(timeout: float | None = None) -> None:
            started = time.monotonic()
            await refresh(timeout)
            cluster.poll_rounds.append(time.monotonic() - started)

        cluster.refresh = timed_refresh

    @app.get("/bench/stats", include_in_schema=False)
    async def stats() -> dict[str, Any]:
        return {
            "nodes": len(cluster.nodes),
            "up": sum(1 for n in cluster.nodes.values() if n.status.state == "up"),
            "poll_rounds": list(cluster.poll_rounds),
            **proc_status(),
        }

    profile = os.environ.get("BENCH_CC_PROFILE")  # a file: cProfile the CC, dumped at exit
    if profile:
        import cProfile

        profiler = cProfile.Profile()
        profiler.enable()

        def dump(_signo: int, _frame: Any) -> None:
            # uvicorn re-raises SIGTERM after its graceful shutdown: we land here then.
            profiler.disable()
            profiler.dump_stats(profile)
            raise SystemExit(0)

        signal.signal(signal.SIGTERM, dump)
    uvicorn.run(
        app,
        host=config.cc.host,
        port=config.cc.port,
        loop="uvloop",
        http="httptools",
        log_config=None,
        access_log=False,
        timeout_graceful_shutdown=5,
    )


if __name__ == "__main__":
    main()
