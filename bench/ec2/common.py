"""bench/ec2: what its parts share (plan, helpers, the report's data, eucalypt clouds)."""

from __future__ import annotations

import os
import shlex
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
sys.path.insert(0, str(ROOT / "src"))
# The clouds' processes (`python -m eucalypt ...`) run this tree's eucalypt too, not one
# the venv may have installed from another checkout.
os.environ["PYTHONPATH"] = os.pathsep.join(
    [str(ROOT / "src"), *filter(None, os.environ.get("PYTHONPATH", "").split(os.pathsep))]
)

import boto3  # noqa: E402
from botocore.config import Config as BotoConfig  # noqa: E402

from eucalypt.config import Config  # noqa: E402

EUCALYPT = [sys.executable, "-m", "eucalypt"]
READY = "EUCALYPT-GUEST-READY"
SIM_IMAGE = "emi-00000000000be0c01"
#: Instances per RunInstances call when populating either server; each call's instances
#: are tagged ``batch=b<n>`` (the tag filter picks one batch).
BATCH = 200
#: The one-host data plane of the boot cloud: names and addresses of our own, apart from
#: a developer's cloud (eucalypt0, 169.254.123.0/30, 198.51.100.0/26) and the e2e
#: tests' (169.254.124.0/30, 198.51.100.192/28).
LINK_NET = "169.254.125.0/30"
PUBLIC_POOL = "198.51.100.160/28"


@dataclass(frozen=True)
class Plan:
    repeats: int  # measured launches (and bare boots)
    sizes: tuple[int, ...]  # instances held while DescribeInstances is measured
    threads: tuple[int, ...]
    cell_seconds: float  # budget per (size, query, threads) cell; each thread calls once at least
    sim_nodes: int  # sim NCs of the describe cloud (sizes[-1] / sim_nodes instances each)


QUICK = Plan(repeats=1, sizes=(1000,), threads=(1, 4), cell_seconds=4, sim_nodes=2)
FULL = Plan(repeats=3, sizes=(1000, 10_000), threads=(1, 4), cell_seconds=15, sim_nodes=5)


# --------------------------------------------------------------------------- small helpers


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def cpu_seconds(pid: int) -> float:
    """User + system CPU of process ``pid`` (all its threads)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def wait_for(what: str, check: Callable[[], Any], timeout: float, every: float = 0.5) -> Any:
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(every)
    raise TimeoutError(f"{what}: not within {timeout:.0f} s (last: {last!r:.200})")


def say(msg: str) -> None:
    print(msg, flush=True)


def fmt(v: float | None, unit: str = "") -> str:
    if v is None:
        return "-"
    text = f"{v:,.0f}" if abs(v) >= 100 else f"{v:,.1f}" if abs(v) >= 10 else f"{v:,.2f}"
    return text + unit


def ec2_client(url: str, region: str, key: str, secret: str) -> Any:
    return boto3.client(
        "ec2",
        endpoint_url=url,
        region_name=region,
        aws_access_key_id=key,
        aws_secret_access_key=secret,
        config=BotoConfig(
            retries={"max_attempts": 1},
            read_timeout=900,
            connect_timeout=10,
            max_pool_connections=16,
        ),
    )


@dataclass
class Report:
    """Everything measured, for the console and RESULTS.md."""

    boot: dict[str, list[float]] = field(default_factory=dict)
    boot_notes: list[str] = field(default_factory=list)
    boot_skipped: str | None = None
    # (instances, query, threads) -> server -> (calls/s, server CPU ms per call, calls)
    describe: dict[tuple[int, str, int], dict[str, tuple[float, float, int]]] = field(
        default_factory=dict
    )
    # free-form (label, server, value, unit)
    extra: list[tuple[str, str, float | None, str]] = field(default_factory=list)
    facts: dict[str, str] = field(default_factory=dict)
    # (when, load averages over 1, 5 and 15 minutes as `uptime` shows them)
    loads: list[tuple[str, str]] = field(default_factory=list)

    def note_load(self, when: str) -> None:
        """Record the machine's load (other engineers' work shares its cores)."""
        load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
        say(f"  [load average {load}: {when}]")
        self.loads.append((when, load))

    def add_extra(self, label: str, server: str, value: float | None, unit: str) -> None:
        say(f"  {server:9s} {label:52s} {fmt(value):>10s} {unit}")
        self.extra.append((label, server, value, unit))


# --------------------------------------------------------------------------- eucalypt clouds


def eucalypt_up(config: Config, *args: str, timeout: float = 600) -> float:
    """`eucalypt up` on ``config`` (saved in its data dir); seconds it took."""
    started = time.monotonic()
    up = subprocess.run(
        [*EUCALYPT, "up", "--data-dir", str(config.data_dir), "--timeout", "180", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if up.returncode != 0:
        logs = "\n".join(
            f"--- {p.name}\n{p.read_text(errors='replace')[-2000:]}"
            for p in sorted(config.logs_dir.glob("*.log"))
        )
        raise RuntimeError(f"eucalypt up failed:\n{up.stdout[-3000:]}\n{up.stderr[-3000:]}\n{logs}")
    return time.monotonic() - started


def eucalypt_down(config: Config) -> None:
    subprocess.run(
        [*EUCALYPT, "down", "--config", str(config.config_path)],
        capture_output=True,
        text=True,
        timeout=180,
    )


def eucalypt_env(config: Config) -> dict[str, str]:
    out = subprocess.run(
        [*EUCALYPT, "env", "--config", str(config.config_path)],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout
    env: dict[str, str] = {}
    for line in out.splitlines():
        key, _, value = line.removeprefix("export ").partition("=")
        env[key] = shlex.split(value)[0] if value else ""
    return env


def component_pid(config: Config, component: str) -> int:
    return int((config.run_dir / f"{component}.pid").read_text().split()[0])
