"""s3cmd against Walrus (SigV4, path style): buckets, put/get, 64 MiB multipart, sync, ls,
info, setacl, del."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import httpx

from tests.walrus.clients import S3cmd
from tests.walrus.conftest import ALICE, WalrusServer
from tests.walrus.helpers import MiB


def test_s3cmd_workflow(walrus_sqlite: WalrusServer, tmp_path: Path) -> None:
    s3cmd = S3cmd(walrus_sqlite.url, ALICE, tmp_path / "home")
    bucket = "s3cmd-" + os.urandom(4).hex()
    s3cmd("mb", f"s3://{bucket}")
    assert f"s3://{bucket}" in s3cmd("ls").stdout

    big = tmp_path / "big.bin"
    data = os.urandom(64 * MiB)
    big.write_bytes(data)
    s3cmd("put", str(big), f"s3://{bucket}/big.bin")
    # s3cmd sends 15 MiB chunks: a 5-part multipart upload.
    assert walrus_sqlite.client().head_object(Bucket=bucket, Key="big.bin")["ETag"].endswith(
        '-5"')
    back = tmp_path / "back.bin"
    s3cmd("get", f"s3://{bucket}/big.bin", str(back))
    assert hashlib.md5(back.read_bytes()).hexdigest() == hashlib.md5(data).hexdigest()
    info = s3cmd("info", f"s3://{bucket}/big.bin").stdout
    # s3cmd keeps the file's MD5 in x-amz-meta-s3cmd-attrs: metadata round-trips.
    assert f"File size: {64 * MiB}" in info and hashlib.md5(data).hexdigest() in info

    small = tmp_path / "small.txt"
    small.write_text("small file\n")
    s3cmd("put", "--mime-type=text/plain", "--add-header=Cache-Control:max-age=5", str(small),
          f"s3://{bucket}/dir/small.txt")
    head = walrus_sqlite.client().head_object(Bucket=bucket, Key="dir/small.txt")
    assert head["ContentType"] == "text/plain" and head["CacheControl"] == "max-age=5"

    tree = tmp_path / "tree"
    for rel in ["x.txt", "y/z.txt"]:
        (tree / rel).parent.mkdir(parents=True, exist_ok=True)
        (tree / rel).write_text(rel)
    s3cmd("sync", str(tree) + "/", f"s3://{bucket}/tree/")
    listing = s3cmd("ls", "--recursive", f"s3://{bucket}/tree/").stdout
    assert "tree/x.txt" in listing and "tree/y/z.txt" in listing
    assert "DIR" in s3cmd("ls", f"s3://{bucket}/").stdout

    # public access via ACL
    assert httpx.get(f"{walrus_sqlite.url}/{bucket}/dir/small.txt").status_code == 403
    s3cmd("setacl", "--acl-public", f"s3://{bucket}/dir/small.txt")
    assert httpx.get(f"{walrus_sqlite.url}/{bucket}/dir/small.txt").text == "small file\n"
    s3cmd("setacl", "--acl-private", f"s3://{bucket}/dir/small.txt")
    assert httpx.get(f"{walrus_sqlite.url}/{bucket}/dir/small.txt").status_code == 403

    s3cmd("cp", f"s3://{bucket}/dir/small.txt", f"s3://{bucket}/copy.txt")
    s3cmd("get", f"s3://{bucket}/copy.txt", str(tmp_path / "copy.txt"))
    assert (tmp_path / "copy.txt").read_text() == "small file\n"

    s3cmd("del", "--recursive", "--force", f"s3://{bucket}")
    s3cmd("rb", f"s3://{bucket}")
    assert f"s3://{bucket}" not in s3cmd("ls").stdout
