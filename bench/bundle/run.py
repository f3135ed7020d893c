#!/usr/bin/env python3
"""Bundled images: fetch times (first vs cached launch) and decrypt throughput vs openssl.

In one run, on the same files:

1. bundle an image (``eucalypt.bundle``), then on its encrypted stream time
   AES-128-CBC decryption alone: ``openssl enc -d -aes-128-cbc`` vs our
   streaming decryptor (MB/s of ciphertext);
2. the whole unbundle -- part SHA-1s, decrypt, gunzip, untar, image SHA-1
   and SHA-256, write -- vs the shell pipeline ``cat parts | openssl enc -d |
   gunzip | tar -xO > file`` (no digests) (MB/s of image);
3. Walrus (a subprocess) as the image service, the NC's fetch path (the NC's
   ``ImageCache``, signed with a component key, SHA-256 checked), time to a
   verified node-local copy when:
   - *first launch*: the manifest was just (re)uploaded, Walrus decrypts in
     the request path;
   - *cached launch*: Walrus's decrypted-image cache has it (another node);
   - *node-cached launch*: the node's own cache has it (no network at all);
   and the CLC's registration call (POST: verify + decrypt into the cache).

Usage: .venv/bin/python bench/bundle/run.py [--quick] [--size-mib N] [--repeat N] [--out FILE]
Writes bench/bundle/RESULTS.md unless --out says otherwise. The machine's
load average is recorded at the start and end: on a shared machine the
figures move with it, so the two sides of each comparison are interleaved.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[1] / "src"))

import httpx  # noqa: E402

from eucalypt.auth import Credential, HttpxSigV4Auth  # noqa: E402
from eucalypt.bundle import crypto  # noqa: E402
from eucalypt.bundle.bundle import Bundle, BundleKeys, BundleSpec, bundle_image  # noqa: E402
from eucalypt.bundle.manifest import parse  # noqa: E402
from eucalypt.bundle.unbundle import (  # noqa: E402
    decrypt_key_iv,
    directory_source,
    unbundle,
)

MiB = 1 << 20
REGION = "eucalypt-1"
ACCOUNT = "000000000001"
USER: dict[str, Any] = {
    "access_key": "AKIABENCHBUNDLE00001", "secret_key": "bench-user-secret-0123456789abcdefgh",
    "account_id": ACCOUNT, "user_name": "bench"}
NC: dict[str, Any] = {
    "access_key": "EUCNCBENCHBUNDLE0002", "secret_key": "bench-nc-secret-0123456789abcdefghij",
    "user_name": "nc", "principal": "component:nc", "is_admin": True}
CLC: dict[str, Any] = {
    "access_key": "EUCCLCBENCHBUNDLE003", "secret_key": "bench-clc-secret-0123456789abcdefghi",
    "user_name": "clc", "principal": "component:clc", "is_admin": True}


def median(xs: list[float]) -> float:
    return statistics.median(xs) if xs else float("nan")


def loadavg() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


# -- the Walrus subprocess ------------------------------------------------------------------


def serve(spec_path: str) -> None:
    from eucalypt.auth import StaticCredentialStore
    from eucalypt.config import Config, WalrusConfig
    from eucalypt.walrus.app import create_app, run_app

    spec = json.loads(Path(spec_path).read_text())
    config = Config(data_dir=Path(spec["data_dir"]), walrus=WalrusConfig(port=spec["port"]))
    creds = StaticCredentialStore(Credential(**c) for c in (USER, NC, CLC))
    run_app(create_app(config, credentials=creds), "127.0.0.1", spec["port"])


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def walrus(data_dir: Path) -> Iterator[str]:
    port = free_port()
    spec = data_dir / "spec.json"
    spec.write_text(json.dumps({"data_dir": str(data_dir), "port": port}))
    proc = subprocess.Popen([sys.executable, __file__, "--serve", str(spec)])
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline or proc.poll() is not None:
                raise RuntimeError("Walrus did not start")
            time.sleep(0.1)
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=20)


# -- images -------------------------------------------------------------------------------------


def synthetic_image(path: Path, size: int) -> Path:
    """Like a disk: a third random data, the rest zeros, in 1 MiB runs."""
    with path.open("wb") as fh:
        left, i = size, 0
        while left:
            n = min(MiB, left)
            fh.write(os.urandom(n) if i % 3 == 0 else bytes(n))
            left -= n
            i += 1
    return path


def images(args: argparse.Namespace, tmp: Path) -> list[tuple[str, Path]]:
    found = [("synthetic", synthetic_image(tmp / "synthetic.img", args.size_mib * MiB))]
    try:
        from eucalypt.nc.guestimage.build import build_test_image

        found.insert(0, ("guest rootfs", build_test_image().rootfs))
    except Exception as exc:  # the guest image needs Debian packages; optional here
        print(f"(no guest image: {exc})", file=sys.stderr)
    return found


# -- measurements -------------------------------------------------------------------------------


@dataclass
class Row:
    image: str
    what: str
    ours: float
    theirs: float | None = None
    unit: str = "MB/s"


def timed(fn: Callable[[], Any]) -> float:
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


def decrypt_alone(b: Bundle, key: str, iv: str, work: Path, repeat: int) -> tuple[float, float]:
    """(openssl MB/s, ours MB/s) decrypting the concatenated encrypted stream to nowhere."""
    enc = work / "stream.enc"
    with enc.open("wb") as out:
        for p in b.part_paths:
            out.write(p.read_bytes())
    size = enc.stat().st_size

    def ours() -> None:
        aes = crypto.AesCbcDecryptor(key, iv)
        with enc.open("rb") as fh:
            while chunk := fh.read(MiB):
                aes.update(chunk)
        aes.finalize()

    def openssl() -> None:
        subprocess.run(["openssl", "enc", "-d", "-aes-128-cbc", "-K", key, "-iv", iv,
                        "-in", str(enc), "-out", "/dev/null"], check=True)

    o, t = [], []
    for _ in range(repeat):  # interleaved, so both see the same machine
        t.append(timed(openssl))
        o.append(timed(ours))
    enc.unlink()
    return size / median(t) / 1e6, size / median(o) / 1e6


def unbundle_whole(b: Bundle, key: str, iv: str, work: Path, repeat: int) -> tuple[float, float]:
    """(shell pipeline MB/s, ours MB/s) of image bytes, written to a file."""
    m = b.manifest
    out = work / "unbundled.img"

    def ours() -> None:
        with out.open("wb") as fh:
            unbundle(m, key, iv, directory_source(b.manifest_path.parent), fh)

    parts = " ".join(str(p) for p in b.part_paths)
    pipeline = (f"cat {parts} | openssl enc -d -aes-128-cbc -K {key} -iv {iv} | gunzip | "
                f"tar -xO > {out}")

    def shell() -> None:
        subprocess.run(["bash", "-o", "pipefail", "-c", pipeline], check=True)

    o, t = [], []
    for _ in range(repeat):
        t.append(timed(shell))
        o.append(timed(ours))
    out.unlink()
    return m.size / median(t) / 1e6, m.size / median(o) / 1e6


def nc_fetch(url: str, sha256: str, size: int, root: Path) -> float:
    from eucalypt.nc.api import ImageRef
    from eucalypt.nc.cache import FetchSettings, ImageCache

    async def go() -> float:
        cache = ImageCache(root, 1 << 40, FetchSettings(credential=Credential(**NC)))
        try:
            started = time.perf_counter()
            entry = await cache.get(ImageRef(image_id="emi-bench", url=url, sha256=sha256,
                                             size=size))
            took = time.perf_counter() - started
            assert entry.sha256 == sha256
            return took
        finally:
            await cache.aclose()

    return asyncio.run(go())


def walrus_fetches(name: str, b: Bundle, image: Path, keys_dir: Path, work: Path,
                   repeat: int) -> list[Row]:
    import boto3
    from botocore.config import Config as BotoConfig

    data = work / "walrus"
    data.mkdir()
    (data / "keys").mkdir()
    for f in ("cloud-cert.pem", "cloud-pk.pem"):
        shutil.copy(keys_dir / f, data / "keys" / f)
    rows: list[Row] = []
    with walrus(data) as url:
        s3 = boto3.client("s3", endpoint_url=url, region_name=REGION,
                          aws_access_key_id=USER["access_key"],
                          aws_secret_access_key=USER["secret_key"],
                          config=BotoConfig(s3={"addressing_style": "path"}))
        s3.create_bucket(Bucket="bench")
        for p in b.files:
            s3.upload_file(str(p), "bench", p.name)
        key = b.manifest_path.name
        endpoint = f"{url}/_image/bench/{key}"
        clc = httpx.Client(auth=HttpxSigV4Auth(Credential(**CLC), region=REGION, service="s3"),
                           timeout=3600)
        cert = (keys_dir / "cert.pem").read_text()
        posts, cold, warm, node = [], [], [], []
        sha = size = None
        for i in range(repeat):
            s3.upload_file(str(b.manifest_path), "bench", key)  # a new version: cache invalid
            started = time.perf_counter()
            reply = clc.post(endpoint, json={"certificates": [cert]})
            posts.append(time.perf_counter() - started)
            assert reply.status_code == 200 and reply.json()["cache"] == "miss", reply.text
            sha, size = reply.json()["sha256"], reply.json()["size"]
            s3.upload_file(str(b.manifest_path), "bench", key)  # invalid again: NC goes first
            cold.append(nc_fetch(endpoint, sha, size, work / f"nc-cold-{i}"))
            warm.append(nc_fetch(endpoint, sha, size, work / f"nc-warm-{i}"))
            node.append(nc_fetch(endpoint, sha, size, work / f"nc-warm-{i}"))
            for d in (work / f"nc-cold-{i}", work / f"nc-warm-{i}"):
                shutil.rmtree(d)
        clc.close()
        # For scale: the same bytes as a plain object, and both read raw (no hashing, no disk).
        s3.upload_file(str(image), "bench", "plain.img")
        nc_http = httpx.Client(auth=HttpxSigV4Auth(Credential(**NC), region=REGION,
                                                   service="s3"), timeout=3600)
        raw_image, raw_plain = [], []
        for _ in range(repeat):
            raw_image.append(timed(lambda: drain(nc_http, endpoint)))
            raw_plain.append(timed(lambda: drain(nc_http, f"{url}/bench/plain.img")))
        nc_http.close()
    mb = image.stat().st_size / 1e6
    rows.append(Row(name, "register: Walrus verifies + decrypts into its cache (CLC POST)",
                    median(posts), unit="s"))
    rows.append(Row(name, "NC fetch, first launch (Walrus decrypts in the request)",
                    median(cold), unit="s"))
    rows.append(Row(name, "NC fetch, cached launch (Walrus cache hit)", median(warm), unit="s"))
    rows.append(Row(name, "NC fetch, node-cached launch (node cache hit)", median(node),
                    unit="s"))
    rows.append(Row(name, "first-launch fetch throughput", mb / median(cold)))
    rows.append(Row(name, "cached-launch fetch throughput", mb / median(warm)))
    rows.append(Row(name, "raw GET of the cached decrypted image; theirs: the same bytes as "
                          "a plain object", mb / median(raw_image), mb / median(raw_plain)))
    return rows


def drain(client: httpx.Client, url: str) -> None:
    with client.stream("GET", url) as reply:
        assert reply.status_code == 200, reply.status_code
        for _ in reply.iter_bytes(MiB):
            pass


def bench_image(name: str, image: Path, keys: BundleKeys, keys_dir: Path, work: Path,
                repeat: int) -> list[Row]:
    work.mkdir(parents=True)
    out = work / "bundle"
    started = time.perf_counter()
    b = bundle_image(BundleSpec(image=image, destination=out, user=ACCOUNT, prefix="img"), keys)
    took = time.perf_counter() - started
    size = image.stat().st_size
    rows = [Row(name, f"bundle (tar+gzip -6+AES+parts, {size / MiB:.0f} MiB image, "
                      f"{b.manifest.bundled_size / MiB:.0f} MiB encrypted)", size / took / 1e6)]
    signed = parse(b.manifest_path.read_bytes())
    key, iv = decrypt_key_iv(signed.manifest, keys.private_key, user=True)
    theirs, ours = decrypt_alone(b, key, iv, work, repeat)
    rows.append(Row(name, "AES-128-CBC decrypt alone (MB/s of ciphertext)", ours, theirs))
    theirs, ours = unbundle_whole(b, key, iv, work, repeat)
    rows.append(Row(name, "whole unbundle (MB/s of image); theirs: the shell pipeline "
                          "(no digests)", ours, theirs))
    rows += walrus_fetches(name, b, image, keys_dir, work, repeat)
    return rows


NOTES = """
What each row measures:

- *bundle*: `eucalypt.bundle` image -> parts + signed manifest at the default gzip level 6
  (single-threaded; gzip dominates: `--compress-level 1` is about 3x faster).
- *AES-128-CBC decrypt alone*: the bundle's encrypted stream (the parts, concatenated)
  decrypted to nowhere: `openssl enc -d -aes-128-cbc -K -iv -in f -out /dev/null` vs our
  streaming decryptor (`cryptography`, i.e. OpenSSL's AES-NI code, 1 MiB reads). On the
  guest image the stream is only ~3 MiB, so both figures are mostly start-up cost.
- *whole unbundle*: ours checks every part's SHA-1, decrypts, gunzips, untars, computes the
  image's SHA-1 (the manifest digest) and SHA-256 (what NCs check) and writes the file;
  the shell pipeline `cat parts | openssl enc -d | gunzip | tar -xO > file` runs four
  processes in parallel and checks nothing.
- *register*: the CLC's call to Walrus (`POST /_image/...`): signature check, every part
  verified, decrypted into Walrus's cache (fsynced).
- *NC fetch*: the NC's own image cache (`eucalypt.nc.cache`) getting a verified node-local
  copy from `GET /_image/...`: *first launch* right after the manifest was overwritten
  (Walrus decrypts inside the request), *cached launch* from Walrus's cache (a second
  node), *node-cached* a second instance on the same node (a hard link; no network).
  The NC side (SHA-256 + MD5 of every byte, a thread hop per 1 MiB chunk, fsync) bounds
  the fetch at roughly 100 MB/s here, for plain objects as much as for decrypted images:
  the raw GET row shows what the endpoint itself serves.
"""


def render(rows: list[Row], meta: dict[str, str]) -> str:
    lines = ["# Bundled images: fetch times and decrypt throughput", "",
             "Generated by `bench/bundle/run.py`. " + meta["note"], ""]
    lines += [f"- {k}: {v}" for k, v in meta.items() if k != "note"]
    lines += ["", NOTES.strip()]
    lines += ["", "| image | measurement | eucalypt | openssl / shell | ratio |",
              "|---|---|---:|---:|---:|"]
    for r in rows:
        fmt = (lambda x: f"{x:.2f} s") if r.unit == "s" else (lambda x: f"{x:.0f} MB/s")
        theirs = fmt(r.theirs) if r.theirs is not None else ""
        ratio = f"{r.ours / r.theirs:.2f}" if r.theirs else ""
        lines.append(f"| {r.image} | {r.what} | {fmt(r.ours)} | {theirs} | {ratio} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--serve", help=argparse.SUPPRESS)
    parser.add_argument("--quick", action="store_true", help="128 MiB, 1 repetition")
    parser.add_argument("--size-mib", type=int, default=1024, help="synthetic image size")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--out", type=Path, default=HERE / "RESULTS.md")
    args = parser.parse_args()
    if args.serve:
        serve(args.serve)
        return
    if args.quick:
        args.size_mib, args.repeat = 128, 1
    from eucalypt.clc.certs import CloudCA

    with tempfile.TemporaryDirectory(prefix="bench-bundle-", dir="/var/tmp") as tmp_name:
        tmp = Path(tmp_name)
        ca = CloudCA.ensure(tmp / "keys", REGION)
        issued = ca.issue(ACCOUNT, "bench")
        (tmp / "keys" / "cert.pem").write_text(issued.certificate_pem)
        keys = BundleKeys(crypto.load_private_key(issued.private_key_pem),
                          crypto.load_certificate(issued.certificate_pem), ca.cert)
        meta = {
            "note": "Medians of interleaved repetitions; all on one host, 127.0.0.1.",
            "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
            "host": f"{platform.machine()}, {os.cpu_count()} CPUs, Python "
                    f"{platform.python_version()}, "
                    + subprocess.run(["openssl", "version"], capture_output=True,
                                     text=True).stdout.strip(),
            "repetitions": str(args.repeat),
            "load average at start": loadavg(),
        }
        rows: list[Row] = []
        for i, (name, image) in enumerate(images(args, tmp)):
            print(f"== {name} ({image.stat().st_size / MiB:.0f} MiB)", file=sys.stderr)
            got = bench_image(name, image, keys, tmp / "keys", tmp / f"w{i}", args.repeat)
            for r in got:
                print(f"  {r.what}: {r.ours:.2f} {r.unit}"
                      + (f" (theirs {r.theirs:.2f})" if r.theirs else ""), file=sys.stderr)
            rows += got
        meta["load average at end"] = loadavg()
        text = render(rows, meta)
        args.out.write_text(text)
        print(text)


if __name__ == "__main__":
    main()
