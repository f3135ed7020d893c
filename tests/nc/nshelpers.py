"""Helpers the VM tests run inside a network namespace (``ip netns exec NS python -m ...``).

* ``call CONFIG OP [ARG]``: one NC call with the CC's key, printed as JSON.
  OP: ``health`` (waits up to 30 s), ``resource``, ``run`` (ARG: request JSON),
  ``describe`` / ``terminate`` / ``console`` (ARG: instance id).
* ``metadata ADDR PORT INSTANCE_ID``: a tiny EC2 metadata service (v1) on ADDR:PORT.
"""

from __future__ import annotations

import asyncio
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from pydantic import BaseModel

from eucalypt.config import Config
from eucalypt.nc.api import NcClient, RunInstanceRequest
from eucalypt.rpc import ComponentKeys, RemoteError


async def call(config_path: str, op: str, arg: str) -> str:
    config = Config.load(Path(config_path))
    cred = ComponentKeys.load(config.keys_dir).credential("cc")
    client = NcClient(config.nc.url, cred, region=config.region, timeout=60)
    try:
        result: BaseModel
        if op == "health":
            deadline = time.monotonic() + 30
            while not await client.healthy():
                if time.monotonic() > deadline:
                    raise SystemExit("NC not healthy")
                await asyncio.sleep(0.2)
            return "{}"
        if op == "resource":
            result = await client.describe_resource()
        elif op == "run":
            result = await client.run_instance(RunInstanceRequest.model_validate_json(arg))
        elif op == "describe":
            result = await client.describe_instances([arg])
        elif op == "terminate":
            result = await client.terminate_instance(arg)
        elif op == "console":
            result = await client.get_console_output(arg)
        else:
            raise SystemExit(f"unknown op {op}")
        return result.model_dump_json()
    except RemoteError as exc:
        raise SystemExit(f"{exc.code}: {exc.message}") from exc
    finally:
        await client.aclose()


def metadata(addr: str, port: int, instance_id: str) -> None:
    files = {"/latest/meta-data/instance-id": instance_id.encode()}

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.0"

        def log_message(self, format: str, *args: object) -> None:
            pass

        def _send(self, code: int, body: bytes = b"") -> None:
            self.send_response(code)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_PUT(self) -> None:
            self._send(405)  # IMDSv1 only

        def do_GET(self) -> None:
            body = files.get(self.path)
            self._send(404) if body is None else self._send(200, body)

    ThreadingHTTPServer((addr, port), Handler).serve_forever()


def main(argv: list[str]) -> int:
    if argv[1] == "call":
        print(asyncio.run(call(argv[2], argv[3], argv[4] if len(argv) > 4 else "")))
        return 0
    if argv[1] == "metadata":
        metadata(argv[2], int(argv[3]), argv[4])
        return 0
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))
