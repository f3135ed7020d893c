"""The instance's copy-on-write root disk: a qcow2 overlay on the cached base image.

The base (raw or qcow2, hard-linked from the cache into the instance's
directory) is never written; the guest's writes go to the overlay, which is
deleted with the instance (the paper: the root file system is not preserved).
The overlay's virtual size is the VM type's disk when that is larger than the
base; the guest's filesystem is not grown (that is the guest's business).
"""

from __future__ import annotations

import json
from pathlib import Path

from eucalypt.nc.errors import DiskError
from eucalypt.net.runner import CommandError, Runner

GIB = 2**30


async def virtual_size(runner: Runner, image: Path, fmt: str) -> int:
    """The image's virtual size in bytes (``qemu-img info``)."""
    try:
        result = (
            await runner.run(
                ["qemu-img", "info", "--output=json", "-f", fmt, str(image)], check=False
            )
        ).check()
        return int(json.loads(result.stdout)["virtual-size"])
    except (CommandError, ValueError, KeyError) as exc:
        raise DiskError(f"cannot read {image.name} as {fmt}: {exc}") from exc


async def create_overlay(
    runner: Runner, base: Path, base_format: str, overlay: Path, disk_gib: int
) -> int:
    """``qemu-img create -f qcow2 -F <fmt> -b <base> <overlay> [size]``; return its size.

    The size is ``disk_gib`` GiB when that exceeds the base's virtual size,
    else the base's own size. On failure the overlay is removed.
    """
    base_size = await virtual_size(runner, base, base_format)
    size = max(base_size, disk_gib * GIB)
    argv = ["qemu-img", "create", "-q", "-f", "qcow2", "-F", base_format, "-b", str(base)]
    argv += [str(overlay)]
    if size > base_size:
        argv.append(str(size))
    try:
        (await runner.run(argv, check=False)).check()
    except CommandError as exc:
        overlay.unlink(missing_ok=True)
        raise DiskError(f"cannot create the root disk: {exc}") from exc
    return size
