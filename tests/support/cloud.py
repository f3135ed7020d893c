"""A whole cloud started with the real CLI (`eucalypt up`) for tests."""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from eucalypt.config import CcConfig, ClcConfig, Config, NcConfig, WalrusConfig
from tests.support.servers import free_port

EUCALYPT = [sys.executable, "-m", "eucalypt"]


@dataclass
class Cloud:
    config: Config
    env: dict[str, str]  # os.environ plus `eucalypt env` exports

    def cli(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*EUCALYPT, *args], capture_output=True, text=True, check=check, timeout=120
        )

    def aws(
        self, *args: str, check: bool = True, env: dict[str, str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        """Run the AWS CLI (from this venv) with the cloud's `eucalypt env` exports."""
        aws = str(Path(sys.executable).with_name("aws"))
        return subprocess.run(
            [aws, *args, "--output", "json"],
            capture_output=True,
            text=True,
            env={**self.env, **(env or {})},
            check=check,
            timeout=120,
        )


def make_config(data_dir: Path, *, hypervisor: str = "qemu") -> Config:
    nc_port = free_port()
    config = Config(
        data_dir=data_dir,
        clc=ClcConfig(port=free_port(), sync_seconds=0.5),
        walrus=WalrusConfig(port=free_port()),
        cc=CcConfig(port=free_port(), nodes=[f"http://127.0.0.1:{nc_port}"], poll_seconds=1.0),
        nc=NcConfig(
            port=nc_port,
            hypervisor=hypervisor,
            sim_boot_seconds=0.3,
            sim_cores=8,
            sim_memory_mib=8192,
            sim_disk_gib=100,
        ),
    )
    config.save()
    return config


def start_cloud(data_dir: Path, *up_args: str) -> Cloud:
    """`eucalypt up` on a fresh data dir (free ports); ``up_args`` go to `up`."""
    return start_cloud_with(make_config(data_dir), *up_args)


def start_cloud_with(config: Config, *up_args: str) -> Cloud:
    """`eucalypt up` on ``config`` (already saved in its data dir)."""
    data_dir = config.data_dir
    up = subprocess.run(
        [*EUCALYPT, "up", "--data-dir", str(data_dir), "--timeout", "120", *up_args],
        capture_output=True,
        text=True,
        timeout=900,  # a first `up` builds the test image (downloads Debian packages)
    )
    if up.returncode != 0:
        logs = "\n".join(
            f"--- {p.name}\n{p.read_text()[-3000:]}" for p in sorted(config.logs_dir.glob("*.log"))
        )
        raise RuntimeError(f"eucalypt up failed:\n{up.stdout}\n{up.stderr}\n{logs}")
    out = subprocess.run(
        [*EUCALYPT, "env", "--config", str(config.config_path)],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout
    env = dict(os.environ)
    for line in out.splitlines():
        key, _, value = line.removeprefix("export ").partition("=")
        env[key] = shlex.split(value)[0] if value else ""
    env.pop("AWS_PROFILE", None)
    env["AWS_CONFIG_FILE"] = str(data_dir / "no-aws-config")
    env["AWS_SHARED_CREDENTIALS_FILE"] = str(data_dir / "no-aws-credentials")
    return Cloud(config=config, env=env)


def stop_cloud(cloud: Cloud) -> None:
    subprocess.run(
        [*EUCALYPT, "down", "--config", str(cloud.config.config_path)],
        capture_output=True,
        text=True,
        timeout=120,
    )
