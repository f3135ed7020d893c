"""Running the four services as supervised processes.

``eucalypt up`` starts one detached supervisor process; it starts each
component (``eucalypt serve <component>``) with its log under
``<data dir>/logs``, restarts one that dies (with back-off, giving up after
repeated crashes), and on SIGTERM stops them all. PIDs live in
``<data dir>/run`` so ``down`` and ``status`` can find them.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from eucalypt.config import Config

COMPONENTS = ("clc", "walrus", "cc", "nc")
SUPERVISOR = "supervisor"
STOP_GRACE_SECONDS = 10.0
MAX_RESTARTS = 5
RESTART_WINDOW_SECONDS = 60.0


def pid_file(config: Config, name: str) -> Path:
    return config.run_dir / f"{name}.pid"


def read_pid(config: Config, name: str) -> int | None:
    try:
        pid = int(pid_file(config, name).read_text().strip())
    except (FileNotFoundError, ValueError):
        return None
    return pid if alive(pid) else None


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie child of ours counts as gone.
    with contextlib.suppress(FileNotFoundError):
        if Path(f"/proc/{pid}/stat").read_text().split(") ", 1)[1].startswith("Z"):
            return False
    return True


def serve_command(config: Config, component: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "eucalypt",
        "serve",
        component,
        "--config",
        str(config.config_path),
    ]


def start_supervisor(config: Config) -> int:
    """Start the supervisor detached from this terminal; return its PID."""
    config.logs_dir.mkdir(parents=True, exist_ok=True)
    config.run_dir.mkdir(parents=True, exist_ok=True)
    log = (config.logs_dir / "supervisor.log").open("ab")
    proc = subprocess.Popen(
        [sys.executable, "-m", "eucalypt", "supervise", "--config", str(config.config_path)],
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=log,
        start_new_session=True,
        close_fds=True,
    )
    log.close()
    return proc.pid


def stop_pid(pid: int, grace: float = STOP_GRACE_SECONDS) -> None:
    """SIGTERM, wait up to ``grace`` seconds, then SIGKILL."""
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        if not alive(pid):
            return
        time.sleep(0.1)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)


@dataclass
class Child:
    component: str
    proc: subprocess.Popen[bytes] | None = None
    restarts: list[float] = field(default_factory=list)
    given_up: bool = False


class Supervisor:
    """Keeps the components running until told to stop."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.children = {c: Child(c) for c in COMPONENTS}
        self.stopping = False

    def log(self, message: str) -> None:
        stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        print(f'{{"ts": "{stamp}", "component": "supervisor", "msg": "{message}"}}', flush=True)

    def spawn(self, child: Child) -> None:
        log = (self.config.logs_dir / f"{child.component}.log").open("ab")
        child.proc = subprocess.Popen(
            serve_command(self.config, child.component),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
            close_fds=True,
        )
        log.close()
        pid_file(self.config, child.component).write_text(f"{child.proc.pid}\n")
        self.log(f"started {child.component} pid {child.proc.pid}")

    def on_exit(self, child: Child, code: int) -> None:
        now = time.monotonic()
        child.restarts = [t for t in child.restarts if now - t < RESTART_WINDOW_SECONDS] + [now]
        if len(child.restarts) > MAX_RESTARTS:
            child.given_up = True
            pid_file(self.config, child.component).unlink(missing_ok=True)
            self.log(
                f"{child.component} exited with {code} {MAX_RESTARTS} times within "
                f"{RESTART_WINDOW_SECONDS:.0f}s; not restarting it (see logs/{child.component}.log)"
            )
            return
        self.log(f"{child.component} exited with {code}; restarting")
        time.sleep(min(2 ** (len(child.restarts) - 1) * 0.5, 8.0))
        self.spawn(child)

    def request_stop(self, _signum: int, _frame: object) -> None:
        self.stopping = True

    def run(self) -> None:
        signal.signal(signal.SIGTERM, self.request_stop)
        signal.signal(signal.SIGINT, self.request_stop)
        pid_file(self.config, SUPERVISOR).write_text(f"{os.getpid()}\n")
        for child in self.children.values():
            self.spawn(child)
        while not self.stopping:
            time.sleep(0.5)
            for child in self.children.values():
                if child.proc is None or child.given_up or self.stopping:
                    continue
                code = child.proc.poll()
                if code is not None:
                    self.on_exit(child, code)
        self.shutdown()

    def shutdown(self) -> None:
        self.log("stopping all components")
        # Stop from the top of the request path down, each with a grace period.
        for component in ("clc", "walrus", "cc", "nc"):
            child = self.children[component]
            if child.proc is not None and child.proc.poll() is None:
                child.proc.terminate()
        deadline = time.monotonic() + STOP_GRACE_SECONDS
        for child in self.children.values():
            if child.proc is None:
                continue
            try:
                child.proc.wait(timeout=max(deadline - time.monotonic(), 0.1))
            except subprocess.TimeoutExpired:
                child.proc.kill()
                child.proc.wait()
            pid_file(self.config, child.component).unlink(missing_ok=True)
        pid_file(self.config, SUPERVISOR).unlink(missing_ok=True)
        self.log("stopped")
