"""The AWS CLI (v1) against Walrus: a typical workflow with `aws s3` and `aws s3api`."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import httpx

from tests.walrus.clients import AwsCli
from tests.walrus.conftest import ALICE, BOB, WalrusServer
from tests.walrus.helpers import MiB


def file_md5(path: Path) -> str:
    h = hashlib.md5()
    with path.open("rb") as f:
        while chunk := f.read(MiB):
            h.update(chunk)
    return h.hexdigest()


def test_aws_s3_workflow(walrus_sqlite: WalrusServer, tmp_path: Path) -> None:
    aws = AwsCli(walrus_sqlite.url, ALICE, tmp_path / "home")
    bucket = "awscli-" + os.urandom(4).hex()
    aws("s3", "mb", f"s3://{bucket}")
    assert bucket in aws("s3", "ls").stdout

    # A 64 MiB upload: multipart in 8 MiB parts, 4 at a time.
    big = tmp_path / "big.bin"
    big.write_bytes(os.urandom(64 * MiB))
    aws("s3", "cp", str(big), f"s3://{bucket}/data/big.bin")
    head = json.loads(aws("s3api", "head-object", "--bucket", bucket,
                          "--key", "data/big.bin").stdout)
    assert head["ContentLength"] == 64 * MiB and head["ETag"].endswith('-8"')
    back = tmp_path / "back.bin"
    aws("s3", "cp", f"s3://{bucket}/data/big.bin", str(back))
    assert file_md5(back) == file_md5(big)

    # sync up, change one file, sync again: only the change travels; sync back down.
    src = tmp_path / "tree"
    for rel in ["a.txt", "sub/b.txt", "sub/deeper/c.txt", "unicode ü.txt"]:
        (src / rel).parent.mkdir(parents=True, exist_ok=True)
        (src / rel).write_text(f"content of {rel}\n")
    out = aws("s3", "sync", str(src), f"s3://{bucket}/tree").stdout
    assert out.count("upload:") == 4
    (src / "sub/b.txt").write_text("changed, and longer than before\n")
    out = aws("s3", "sync", str(src), f"s3://{bucket}/tree").stdout
    assert out.count("upload:") == 1 and "sub/b.txt" in out
    assert aws("s3", "sync", str(src), f"s3://{bucket}/tree").stdout.count("upload:") == 0
    down = tmp_path / "down"
    aws("s3", "sync", f"s3://{bucket}/tree", str(down))
    for rel in ["a.txt", "sub/b.txt", "sub/deeper/c.txt", "unicode ü.txt"]:
        assert (down / rel).read_text() == (src / rel).read_text()

    listing = aws("s3", "ls", f"s3://{bucket}/tree/").stdout
    assert "PRE sub/" in listing and "a.txt" in listing
    recursive = aws("s3", "ls", "--recursive", f"s3://{bucket}").stdout
    assert recursive.count("\n") == 5

    # presign: a plain HTTP GET with the URL works.
    url = aws("s3", "presign", f"s3://{bucket}/tree/a.txt", "--expires-in", "120").stdout.strip()
    assert httpx.get(url).text == "content of a.txt\n"

    # server-side copy, move, and removal
    aws("s3", "cp", f"s3://{bucket}/tree/a.txt", f"s3://{bucket}/copied.txt")
    aws("s3", "mv", f"s3://{bucket}/copied.txt", f"s3://{bucket}/moved.txt")
    names = aws("s3", "ls", f"s3://{bucket}/").stdout
    assert "moved.txt" in names and "copied.txt" not in names
    aws("s3", "rm", "--recursive", f"s3://{bucket}/tree")
    assert "tree" not in aws("s3", "ls", f"s3://{bucket}/").stdout
    aws("s3", "rb", "--force", f"s3://{bucket}")
    assert bucket not in aws("s3", "ls").stdout


def test_aws_s3api_workflow(walrus_sqlite: WalrusServer, tmp_path: Path) -> None:
    aws = AwsCli(walrus_sqlite.url, ALICE, tmp_path / "home")
    bucket = "s3api-" + os.urandom(4).hex()
    aws("s3api", "create-bucket", "--bucket", bucket, "--create-bucket-configuration",
        "LocationConstraint=eucalypt-1")
    loc = json.loads(aws("s3api", "get-bucket-location", "--bucket", bucket).stdout)
    assert loc["LocationConstraint"] == "eucalypt-1"
    body = tmp_path / "body.txt"
    body.write_text("hello s3api\n")
    put = json.loads(aws("s3api", "put-object", "--bucket", bucket, "--key", "k.txt", "--body",
                         str(body), "--content-type", "text/plain", "--metadata",
                         "owner=alice").stdout)
    assert put["ETag"] == '"' + hashlib.md5(b"hello s3api\n").hexdigest() + '"'
    out = tmp_path / "out.txt"
    got = json.loads(aws("s3api", "get-object", "--bucket", bucket, "--key", "k.txt",
                         "--range", "bytes=0-4", str(out)).stdout)
    assert out.read_text() == "hello" and got["ContentRange"] == "bytes 0-4/12"
    assert got["Metadata"] == {"owner": "alice"}
    listed = json.loads(aws("s3api", "list-objects-v2", "--bucket", bucket).stdout)
    assert [o["Key"] for o in listed["Contents"]] == ["k.txt"]

    # multipart by hand
    up = json.loads(aws("s3api", "create-multipart-upload", "--bucket", bucket, "--key",
                        "mp.bin").stdout)["UploadId"]
    parts = []
    for n, size in ((1, 5 * MiB), (2, 1000)):
        part = tmp_path / f"part{n}"
        part.write_bytes(os.urandom(size))
        etag = json.loads(aws("s3api", "upload-part", "--bucket", bucket, "--key", "mp.bin",
                              "--upload-id", up, "--part-number", str(n), "--body",
                              str(part)).stdout)["ETag"]
        parts.append({"PartNumber": n, "ETag": etag})
    listed = json.loads(aws("s3api", "list-parts", "--bucket", bucket, "--key", "mp.bin",
                            "--upload-id", up).stdout)
    assert [p["Size"] for p in listed["Parts"]] == [5 * MiB, 1000]
    done = json.loads(aws("s3api", "complete-multipart-upload", "--bucket", bucket, "--key",
                          "mp.bin", "--upload-id", up, "--multipart-upload",
                          json.dumps({"Parts": parts})).stdout)
    assert done["ETag"].endswith('-2"')

    # ACLs: Bob is denied until Alice grants read.
    bob = AwsCli(walrus_sqlite.url, BOB, tmp_path / "bob")
    denied = bob("s3api", "get-object", "--bucket", bucket, "--key", "k.txt",
                 str(tmp_path / "x"), check=False)
    assert denied.returncode != 0 and "AccessDenied" in denied.stderr
    aws("s3api", "put-object-acl", "--bucket", bucket, "--key", "k.txt", "--acl",
        "authenticated-read")
    bob("s3api", "get-object", "--bucket", bucket, "--key", "k.txt", str(tmp_path / "x"))
    assert (tmp_path / "x").read_text() == "hello s3api\n"
    acl = json.loads(aws("s3api", "get-object-acl", "--bucket", bucket, "--key",
                         "k.txt").stdout)
    assert len(acl["Grants"]) == 2

    err = aws("s3api", "get-object", "--bucket", bucket, "--key", "nope", str(tmp_path / "n"),
              check=False)
    assert err.returncode != 0 and "NoSuchKey" in err.stderr
    aws("s3api", "delete-objects", "--bucket", bucket, "--delete",
        json.dumps({"Objects": [{"Key": "k.txt"}, {"Key": "mp.bin"}]}))
    aws("s3api", "delete-bucket", "--bucket", bucket)
