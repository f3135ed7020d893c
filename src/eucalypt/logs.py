"""Structured logging: one JSON object per line, tagged with the request id.

``request_id`` is a context variable: HTTP middleware sets it for each
request, every log line emitted while serving that request carries it, and
the internal RPC client forwards it (``x-eucalypt-request-id``) so one user
request can be followed across CLC, CC and NC logs.
"""

from __future__ import annotations

import contextvars
import json
import logging
import sys
import time
import uuid
from pathlib import Path
from typing import Any

request_id_var: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="-")

REQUEST_ID_HEADER = "x-eucalypt-request-id"

_RESERVED = set(vars(logging.makeLogRecord({}))) | {"message", "asctime"}


def new_request_id() -> str:
    return str(uuid.uuid4())


class JsonFormatter(logging.Formatter):
    """Formats records as JSON with ts, level, component, request_id, msg and extras."""

    def __init__(self, component: str) -> None:
        super().__init__()
        self.component = component

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "component": self.component,
            "logger": record.name,
            "request_id": request_id_var.get(),
            "msg": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in _RESERVED and not key.startswith("_"):
                entry[key] = value
        if record.exc_info:
            entry["traceback"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


def setup_logging(component: str, level: str = "info", log_file: Path | None = None) -> None:
    """Send all logs of this process as JSON lines to ``log_file`` (or stderr)."""
    handler: logging.Handler
    if log_file is not None:
        log_file.parent.mkdir(parents=True, exist_ok=True)
        handler = logging.FileHandler(log_file)
    else:
        handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter(component))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for noisy in ("uvicorn.access", "httpx", "httpcore"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
