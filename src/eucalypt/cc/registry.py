"""Nodes added at run time (RegisterNode), kept across CC restarts.

The CC learns its NCs from ``cc.nodes`` in the configuration and from
``RegisterNode`` calls. Everything else the CC holds is soft state rebuilt
by polling, but a registered node cannot be rediscovered, so the URLs of
registered nodes (only those: configured nodes stay in the configuration)
are written to ``<data_dir>/cc/nodes.json``, atomically (temp file, fsync,
rename)::

    {"version": 1, "nodes": ["http://10.0.0.7:8775", ...]}
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from urllib.parse import urlsplit

FILE_NAME = "nodes.json"
VERSION = 1


def normalize_node_url(url: str) -> str:
    """``url`` without surrounding blanks and trailing slashes; ValueError when it is not an
    ``http(s)://host[:port][/path]`` URL (no query, fragment or credentials)."""
    url = url.strip().rstrip("/")
    try:
        parts = urlsplit(url)
        port = parts.port  # ValueError on a bad port
    except ValueError as exc:
        raise ValueError(f"{url!r} is not a valid URL: {exc}") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"{url!r} is not an http(s)://host:port URL of an NC")
    if parts.query or parts.fragment or parts.username or parts.password:
        raise ValueError(f"{url!r}: an NC URL has no query, fragment or user")
    if port == 0:
        raise ValueError(f"{url!r}: port 0")
    return url


class NodeRegistry:
    """The registered nodes' file."""

    def __init__(self, path: Path) -> None:
        self.path = path

    @classmethod
    def in_data_dir(cls, data_dir: Path) -> NodeRegistry:
        return cls(data_dir / "cc" / FILE_NAME)

    def load(self) -> list[str]:
        """The registered URLs in registration order; [] when there is no file.

        A file that cannot be read is an error (starting without its nodes would
        forget them for good at the next registration)."""
        try:
            doc = json.loads(self.path.read_text())
        except FileNotFoundError:
            return []
        except (OSError, ValueError) as exc:
            raise ValueError(f"{self.path} cannot be read ({exc}); fix or remove it") from None
        nodes = doc.get("nodes") if isinstance(doc, dict) else None
        if not isinstance(nodes, list) or not all(isinstance(u, str) for u in nodes):
            raise ValueError(f"{self.path} has no list of node URLs under 'nodes'")
        return list(dict.fromkeys(normalize_node_url(u) for u in nodes))

    def save(self, urls: list[str]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(f".{self.path.name}.tmp")
        data = json.dumps({"version": VERSION, "nodes": urls}, indent=1).encode() + b"\n"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            os.write(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, self.path)
        dir_fd = os.open(self.path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
