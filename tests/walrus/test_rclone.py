"""rclone (Debian package) against Walrus: mkdir, copy with a 64 MiB multipart file, ls,
lsjson, check, sync, cat, moveto, delete, purge."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from tests.walrus.clients import Rclone
from tests.walrus.conftest import ALICE, WalrusServer
from tests.walrus.helpers import MiB

pytestmark = pytest.mark.skipif(not Rclone.available(), reason="rclone is not installed "
                                "(scripts/install-deps.sh --test)")


def test_rclone_workflow(walrus_sqlite: WalrusServer, tmp_path: Path) -> None:
    rclone = Rclone(walrus_sqlite.url, ALICE, tmp_path / "home")
    bucket = "rclone-" + os.urandom(4).hex()
    rclone("mkdir", f"walrus:{bucket}")
    assert bucket in rclone("lsd", "walrus:").stdout

    src = tmp_path / "src"
    (src / "nested/deep").mkdir(parents=True)
    big = os.urandom(64 * MiB)
    (src / "big.bin").write_bytes(big)
    (src / "nested/a.txt").write_text("alpha\n")
    (src / "nested/deep/b.txt").write_text("beta\n")
    (src / "space name.txt").write_text("spaces\n")
    rclone("copy", str(src), f"walrus:{bucket}/data")
    # 64 MiB above the 16 MiB cutoff: multipart in 8 MiB chunks.
    head = walrus_sqlite.client().head_object(Bucket=bucket, Key="data/big.bin")
    assert head["ContentLength"] == 64 * MiB and head["ETag"].endswith('-8"')

    listed = json.loads(rclone("lsjson", "-R", f"walrus:{bucket}/data").stdout)
    files = {e["Path"]: e["Size"] for e in listed if not e["IsDir"]}
    assert files == {"big.bin": 64 * MiB, "nested/a.txt": 6, "nested/deep/b.txt": 5,
                     "space name.txt": 7}
    # check compares sizes and hashes (MD5 kept by rclone in metadata for multipart).
    rclone("check", str(src), f"walrus:{bucket}/data")
    assert rclone("cat", f"walrus:{bucket}/data/nested/a.txt").stdout == "alpha\n"

    dst = tmp_path / "dst"
    rclone("sync", f"walrus:{bucket}/data", str(dst))
    assert (dst / "big.bin").read_bytes() == big
    assert (dst / "nested/deep/b.txt").read_text() == "beta\n"

    # sync removes what is gone from the source
    (src / "space name.txt").unlink()
    rclone("sync", str(src), f"walrus:{bucket}/data")
    assert "space name.txt" not in rclone("ls", f"walrus:{bucket}/data").stdout

    rclone("moveto", f"walrus:{bucket}/data/nested/a.txt", f"walrus:{bucket}/moved.txt")
    assert rclone("cat", f"walrus:{bucket}/moved.txt").stdout == "alpha\n"
    rclone("deletefile", f"walrus:{bucket}/moved.txt")
    rclone("purge", f"walrus:{bucket}")
    assert bucket not in rclone("lsd", "walrus:").stdout
