"""Running real servers for tests: an ASGI app in a thread, free ports."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import uvicorn

from eucalypt.walrus.server import ServerThread


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_http(url: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(url, timeout=1.0).status_code < 500:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.05)
    raise TimeoutError(f"{url} did not answer within {timeout}s")


@contextmanager
def serve_in_thread(app: Any, port: int | None = None) -> Iterator[str]:
    """Serve ``app`` on 127.0.0.1 in a thread (Walrus on its own server, the others with
    uvicorn); yield its base URL."""
    port = port or free_port()
    from eucalypt.walrus.app import WalrusApp

    if isinstance(app, WalrusApp):
        # Plain asyncio, as below: several uvloop servers in one process race to spawn children.
        walrus = ServerThread(app, "127.0.0.1", port, use_uvloop=False)
        walrus.start()
        try:
            yield f"http://127.0.0.1:{port}"
        finally:
            walrus.stop()
        return
    server = uvicorn.Server(
        # Plain asyncio: several servers on uvloop in one process race to spawn children.
        uvicorn.Config(
            app, host="127.0.0.1", port=port, log_config=None, lifespan="on", loop="asyncio"
        )
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 20
        while not server.started:
            if time.monotonic() > deadline or not thread.is_alive():
                raise RuntimeError("test server did not start")
            time.sleep(0.02)
        yield url
    finally:
        server.should_exit = True
        thread.join(timeout=10)
