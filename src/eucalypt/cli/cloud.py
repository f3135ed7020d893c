"""``eucalypt up | down | status | supervise | serve``."""

from __future__ import annotations

import time
from pathlib import Path

import click
import httpx
from rich.console import Console
from rich.table import Table

from eucalypt.cli.common import COMPONENTS, config_option, load_config
from eucalypt.cli.init import initialise
from eucalypt.cli.supervisor import (
    SUPERVISOR,
    Supervisor,
    alive,
    read_pid,
    start_supervisor,
    stop_pid,
)
from eucalypt.config import Config, default_data_dir

ROLES = {
    "clc": "Cloud Controller (EC2 API)",
    "walrus": "Walrus (S3 API)",
    "cc": "Cluster Controller",
    "nc": "Node Controller",
}


def health(config: Config, component: str) -> str:
    try:
        reply = httpx.get(f"{config.service(component).url}/healthz", timeout=1.0)
    except httpx.HTTPError:
        return "down"
    return "up" if reply.status_code == 200 else f"http {reply.status_code}"


def status_table(config: Config) -> Table:
    table = Table(title=f"eucalypt ({config.data_dir})")
    for col in ("component", "role", "endpoint", "pid", "health"):
        table.add_column(col)
    for c in COMPONENTS:
        pid = read_pid(config, c)
        table.add_row(c, ROLES[c], config.service(c).url, str(pid or "-"), health(config, c))
    return table


@click.command("up")
@click.option(
    "--data-dir",
    type=click.Path(path_type=Path, file_okay=False),
    default=None,
    help="Where the cloud keeps its state (default: $EUCALYPT_DATA_DIR or ~/.eucalypt).",
)
@click.option("--timeout", default=90.0, show_default=True, help="Seconds to wait for health.")
@click.option(
    "--test-image/--no-test-image",
    default=True,
    show_default=True,
    help="Build and register the tiny test guest image so instances can be launched at once.",
)
def up_command(data_dir: Path | None, timeout: float, test_image: bool) -> None:
    """Initialise if needed, start all four services, wait until healthy."""
    console = Console()
    result = initialise((data_dir or default_data_dir()).resolve())
    config = result.config
    pid = read_pid(config, SUPERVISOR)
    if pid is None:
        pid = start_supervisor(config)
        console.print(f"started supervisor (pid {pid}); logs in {config.logs_dir}")
    else:
        console.print(f"already running (supervisor pid {pid})")
    deadline = time.monotonic() + timeout
    with console.status("waiting for the services to answer /healthz ..."):
        while time.monotonic() < deadline:
            if all(health(config, c) == "up" for c in COMPONENTS):
                break
            if not alive(pid):
                raise click.ClickException(
                    f"the supervisor died; see {config.logs_dir}/supervisor.log"
                )
            time.sleep(0.3)
    console.print(status_table(config))
    down = [c for c in COMPONENTS if health(config, c) != "up"]
    if down:
        raise click.ClickException(
            f"not healthy after {timeout:.0f}s: {', '.join(down)}; "
            f"see {config.logs_dir}/<component>.log"
        )
    if test_image:
        from eucalypt.cli.images import install_test_image

        reg = install_test_image(config, console)
        console.print(
            f"test image: {reg.image_id} (kernel {reg.kernel_id}, ramdisk {reg.ramdisk_id})"
        )
    env_hint = f'eval "$(eucalypt env --config {config.config_path})"'
    console.print(f"\nready. Next: {env_hint} && aws ec2 describe-availability-zones")


def stop_instances(config: Config) -> int:
    """Stop the VMs of this node (their QEMU pid files); how many were running."""
    stopped = 0
    instances = Path(config.nc.instances_dir)
    for pid_path in sorted(instances.glob("*/qemu.pid")):
        instance_id = pid_path.parent.name
        try:
            pid = int(pid_path.read_text().split()[0])
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except (OSError, ValueError, IndexError):
            continue
        if instance_id.encode() in cmdline:
            stop_pid(pid, grace=10.0)
            stopped += 1
    return stopped


@click.command("down")
@config_option
@click.option(
    "--keep-instances",
    is_flag=True,
    help="Leave running VMs alone (the NC adopts them at the next `up`).",
)
def down_command(config_path: Path | None, keep_instances: bool) -> None:
    """Stop all services started by `eucalypt up` (by PID), and their VMs."""
    config = load_config(config_path)
    pid = read_pid(config, SUPERVISOR)
    if pid is not None:
        stop_pid(pid, grace=30.0)
    # Anything the supervisor did not get to (it was killed, say).
    for c in COMPONENTS:
        child = read_pid(config, c)
        if child is not None:
            stop_pid(child)
    vms = 0 if keep_instances else stop_instances(config)
    if config.cc.local_uplink and not keep_instances:
        # The one-host data plane: its namespace, veth and host routes go too.
        import asyncio

        from eucalypt.net.local import teardown_local_dataplane, uplink_from_config
        from eucalypt.net.runner import CommandRunner

        asyncio.run(teardown_local_dataplane(CommandRunner(), uplink_from_config(config)))
    click.echo(
        ("stopped" if pid else "was not running") + (f"; stopped {vms} VM(s)" if vms else "")
    )


@click.command("status")
@config_option
def status_command(config_path: Path | None) -> None:
    """Show each service's endpoint, PID and health."""
    config = load_config(config_path)
    Console().print(status_table(config))
    if any(health(config, c) != "up" for c in COMPONENTS):
        raise SystemExit(1)


@click.command("supervise", hidden=True)
@config_option
def supervise_command(config_path: Path | None) -> None:
    """Run the supervisor in the foreground (used by `eucalypt up`)."""
    Supervisor(load_config(config_path)).run()


@click.command("serve")
@click.argument("component", type=click.Choice(COMPONENTS))
@config_option
def serve_command(component: str, config_path: Path | None) -> None:
    """Run one component's HTTP service in the foreground."""
    import importlib

    import uvicorn

    from eucalypt.logs import setup_logging

    config = load_config(config_path)
    setup_logging(component, config.log_level)
    module = importlib.import_module(f"eucalypt.{component}.app")
    app = module.create_app(config)
    svc = config.service(component)
    if hasattr(module, "run_app"):  # a component with its own HTTP server (Walrus)
        module.run_app(app, svc.host, svc.port)
        return
    uvicorn.run(
        app,
        host=svc.host,
        port=svc.port,
        loop="uvloop",
        http="httptools",
        log_config=None,
        access_log=False,
        timeout_graceful_shutdown=5,
    )
