"""Large images stream: bundling and unbundling 4 GiB keeps memory bounded.

Each direction runs in a fresh Python process that reports its peak RSS;
the image is a sparse 4 GiB file with some data in it (zeros read fast, so
the test is about memory, not disk).
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from eucalypt.clc.certs import CloudCA
from tests.bundle.helpers import User

pytestmark = pytest.mark.slow

SIZE = 4 << 30
#: Python, cryptography and the imports take ~30 MB; the buffers a few MB more.
MAX_RSS_MB = 100

SCRIPT = textwrap.dedent("""
    import json, sys, time
    from pathlib import Path
    from eucalypt.bundle import crypto
    from eucalypt.bundle.bundle import BundleKeys, BundleSpec, bundle_image
    from eucalypt.bundle.manifest import parse
    from eucalypt.bundle.unbundle import decrypt_key_iv, directory_source, unbundle

    mode, image, out, keys = sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3]), Path(sys.argv[4])
    started = time.monotonic()
    if mode == "bundle":
        k = BundleKeys.from_files(keys / "pk.pem", keys / "cert.pem", keys / "cloud-cert.pem")
        b = bundle_image(BundleSpec(image=image, destination=out, user="123456789012",
                                    compress_level=1), k)
        result = {"parts": len(b.part_paths), "bundled": b.manifest.bundled_size}
    else:
        signed = parse((out / (image.name + ".manifest.xml")).read_bytes())
        key = crypto.load_private_key((keys / "pk.pem").read_bytes())
        aes, iv = decrypt_key_iv(signed.manifest, key, user=True)
        with open("/dev/null", "wb") as sink:
            r = unbundle(signed.manifest, aes, iv, directory_source(out), sink)
        result = {"size": r.size, "sha256": r.sha256}
    result["seconds"] = time.monotonic() - started
    # VmHWM, not ru_maxrss: after fork+exec, ru_maxrss still counts the parent's pages
    # (pytest's, hundreds of MB late in a run); VmHWM is this process image's own peak.
    hwm = [line for line in open("/proc/self/status") if line.startswith("VmHWM:")]
    result["max_rss_mb"] = int(hwm[0].split()[1]) / 1024
    print(json.dumps(result))
""")


def run(mode: str, image: Path, out: Path, keys: Path) -> dict[str, float]:
    proc = subprocess.run([sys.executable, "-c", SCRIPT, mode, str(image), str(out), str(keys)],
                          capture_output=True, text=True, timeout=900, check=False)
    assert proc.returncode == 0, proc.stderr
    result: dict[str, float] = json.loads(proc.stdout.strip().splitlines()[-1])
    return result


def test_four_gib_image_streams_in_bounded_memory(tmp_path: Path, ca: CloudCA,
                                                  alice: User) -> None:
    image = tmp_path / "big.img"
    with image.open("wb") as fh:
        fh.truncate(SIZE)
        for offset in (0, SIZE // 3, SIZE - 4096):  # some data among the zeros
            fh.seek(offset)
            fh.write(b"eucalypt" * 512)
    keys = alice.write(tmp_path / "keys", ca)
    out = tmp_path / "bundle"
    bundled = run("bundle", image, out, keys)
    print("bundle", bundled)
    assert bundled["max_rss_mb"] < MAX_RSS_MB
    assert bundled["parts"] >= 1
    unbundled = run("unbundle", image, out, keys)
    print("unbundle", unbundled)
    assert unbundled["size"] == SIZE
    assert unbundled["max_rss_mb"] < MAX_RSS_MB
