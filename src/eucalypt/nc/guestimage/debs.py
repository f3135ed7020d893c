"""Fetch and unpack Debian packages without installing them.

Uses the host's own apt configuration (``apt-cache``/``apt-get download``) and
``dpkg-deb -x``: no root needed, nothing installed on the host. Downloads are kept
in a directory so a rebuild does not download again.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

APT_LISTS_DIR = Path("/var/lib/apt/lists")


class DebError(RuntimeError):
    pass


@dataclass(frozen=True)
class DebPackage:
    name: str
    version: str
    architecture: str
    sha256: str

    @property
    def filename(self) -> str:
        # apt-get download URL-encodes the epoch colon.
        return f"{self.name}_{self.version.replace(':', '%3a')}_{self.architecture}.deb"


def _run(cmd: list[str], *, cwd: Path | None = None) -> str:
    if shutil.which(cmd[0]) is None:
        raise DebError(f"{cmd[0]} not found: a Debian host with apt and dpkg is needed")
    env = dict(os.environ, LC_ALL="C")
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise DebError(f"{' '.join(cmd)} failed ({proc.returncode}): {proc.stderr.strip()}")
    return proc.stdout


def host_architecture() -> str:
    return _run(["dpkg", "--print-architecture"]).strip()


def apt_lists_fingerprint(lists_dir: Path = APT_LISTS_DIR) -> str:
    """A cheap fingerprint of the apt package lists (names, sizes, mtimes).

    It changes whenever ``apt-get update`` fetches new lists, which is when a
    package's candidate version may change.
    """
    h = hashlib.sha256()
    try:
        entries = sorted(lists_dir.iterdir())
    except OSError:
        return "no-apt-lists"
    for p in entries:
        try:
            st = p.stat()
        except OSError:
            continue
        if p.is_file() and p.name != "lock":
            h.update(f"{p.name}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return h.hexdigest()


def resolve_metapackage(name: str) -> str:
    """Return the versioned package a metapackage depends on (first matching Depends).

    ``linux-image-cloud-amd64`` -> ``linux-image-6.1.0-NN-cloud-amd64``.
    """
    out = _run(["apt-cache", "depends", "--no-recommends", "--no-suggests", name])
    prefix = name.rsplit("-", 2)[0]  # linux-image-cloud-amd64 -> linux-image
    for line in out.splitlines():
        m = re.match(r"\s*\|?Depends:\s*(\S+)", line)
        if m and m.group(1).startswith(prefix) and m.group(1) != name:
            return m.group(1)
    raise DebError(f"cannot resolve metapackage {name}: apt-cache depends said:\n{out}")


def candidates(names: list[str]) -> dict[str, DebPackage]:
    """Candidate versions of ``names`` from the local apt lists (no network)."""
    out = _run(["apt-cache", "show", "--no-all-versions", *names])
    found: dict[str, DebPackage] = {}
    for stanza in out.split("\n\n"):
        fields: dict[str, str] = {}
        for line in stanza.splitlines():
            if line and not line[0].isspace() and ":" in line:
                key, _, value = line.partition(":")
                fields[key] = value.strip()
        if "Package" in fields and fields["Package"] not in found:
            found[fields["Package"]] = DebPackage(
                fields["Package"],
                fields.get("Version", ""),
                fields.get("Architecture", ""),
                fields.get("SHA256", ""),
            )
    missing = [n for n in names if n not in found]
    if missing:
        raise DebError(f"apt-cache knows no candidate for {missing}; run apt-get update")
    return found


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def download(pkgs: list[DebPackage], dest: Path) -> dict[str, Path]:
    """Download the exact versions into ``dest`` (skipping ones already there, verified)."""
    dest.mkdir(parents=True, exist_ok=True)
    paths: dict[str, Path] = {}
    todo: list[DebPackage] = []
    for pkg in pkgs:
        path = dest / pkg.filename
        if path.exists() and (not pkg.sha256 or _sha256(path) == pkg.sha256):
            paths[pkg.name] = path
        else:
            path.unlink(missing_ok=True)
            todo.append(pkg)
    if todo:
        # apt drops privileges to _apt for downloads when it can; a root-owned private
        # directory only produces a harmless warning, which we discard.
        _run(["apt-get", "download", "-q", *[f"{p.name}={p.version}" for p in todo]], cwd=dest)
        for pkg in todo:
            path = dest / pkg.filename
            if not path.exists():
                raise DebError(f"apt-get download did not produce {path.name}")
            if pkg.sha256 and _sha256(path) != pkg.sha256:
                path.unlink()
                raise DebError(f"{path.name}: SHA256 mismatch")
            paths[pkg.name] = path
    return paths


def prune(pkgs: list[DebPackage], dest: Path) -> list[Path]:
    """Delete other versions of ``pkgs`` from ``dest``; return what was deleted."""
    keep = {p.filename for p in pkgs}
    removed = []
    for pkg in pkgs:
        for old in dest.glob(f"{pkg.name}_*_{pkg.architecture}.deb"):
            if old.name not in keep:
                old.unlink(missing_ok=True)
                removed.append(old)
    return removed


def extract(deb: Path, dest: Path) -> Path:
    dest.mkdir(parents=True, exist_ok=True)
    _run(["dpkg-deb", "-x", str(deb), str(dest)])
    return dest
