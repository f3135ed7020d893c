"""The bundle is the EC2 format: the standard tools (openssl, gzip, tar) read ours, we read theirs.

ec2-bundle-image and euca-bundle-image are pipelines of exactly these tools
(tar | sha1 | gzip | openssl enc -aes-128-cbc | split, keys wrapped with
``openssl rsautl -encrypt``, the manifest signed with ``openssl dgst -sha1``),
so agreeing with them byte for byte is agreeing with the format.
"""

from __future__ import annotations

import hashlib
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from eucalypt.bundle import crypto
from eucalypt.bundle.manifest import Manifest, ManifestPart, parse, render
from eucalypt.bundle.unbundle import decrypt_key_iv, directory_source, unbundle
from eucalypt.clc.certs import CloudCA
from tests.bundle.helpers import ACCOUNT, User, bundle

pytestmark = pytest.mark.skipif(shutil.which("openssl") is None, reason="needs openssl")


def sh(cmd: str, cwd: Path) -> bytes:
    return subprocess.run(["bash", "-o", "pipefail", "-c", cmd], cwd=cwd, check=True,
                          capture_output=True).stdout


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_manifest_layout(tmp_path: Path, ca: CloudCA, alice: User, image: Path) -> None:
    b = bundle(image, tmp_path / "out", alice.keys(ca), part_size=1 << 20, kernel_id="eki-1",
               ramdisk_id="eri-2")
    text = b.manifest_path.read_text()
    order = re.findall(r"<(\w+)[ >]", text)
    assert order[:14] == ["manifest", "version", "bundler", "name", "version", "release",
                          "machine_configuration", "architecture", "kernel_id", "ramdisk_id",
                          "image", "name", "user", "type"]
    image_children = order[order.index("image") + 1:]
    assert image_children[:11] == ["name", "user", "type", "digest", "size", "bundled_size",
                                   "ec2_encrypted_key", "user_encrypted_key",
                                   "ec2_encrypted_iv", "user_encrypted_iv", "parts"]
    assert "<version>2007-10-10</version>" in text
    assert f"<user>{ACCOUNT}</user>" in text
    assert '<ec2_encrypted_key algorithm="AES-128-CBC">' in text
    assert '<digest algorithm="SHA1">' in text
    # 3 MiB of image, compressible to a bit over 2 MiB: three 1 MiB parts, two digits each.
    names = re.findall(r"<filename>([^<]+)</filename>", text)
    assert names == [f"disk.img.part.{i:02d}" for i in range(len(names))]
    assert len(names) == len(b.part_paths) >= 2
    assert f'<parts count="{len(names)}">' in text
    assert text.rstrip().endswith("</signature></manifest>")
    parsed = parse(b.manifest_path.read_bytes()).manifest
    assert parsed == b.manifest


def test_standard_tools_read_our_bundle(tmp_path: Path, ca: CloudCA, alice: User,
                                        image: Path) -> None:
    """openssl/gunzip/tar unbundle it; sha1sum agrees with every digest; openssl verifies."""
    out = tmp_path / "out"
    b = bundle(image, out, alice.keys(ca), part_size=1 << 20)
    m = b.manifest
    keys = tmp_path / "keys"
    alice.write(keys, ca)
    (keys / "cloud-pk.pem").write_bytes(ca_key_pem(ca))
    # The AES key and IV: hex strings RSA-encrypted (PKCS#1 v1.5), hex-encoded.
    for hex_ct, pem in ((m.ec2_encrypted_key, "cloud-pk.pem"), (m.user_encrypted_key, "pk.pem")):
        (tmp_path / "ct").write_bytes(bytes.fromhex(hex_ct))
        key_hex = sh(f"openssl pkeyutl -decrypt -inkey {keys / pem} -in ct", tmp_path).decode()
        assert re.fullmatch(r"[0-9a-f]{32}", key_hex)
    key_hex = sh(f"openssl pkeyutl -decrypt -inkey {keys / 'pk.pem'} -in ct", tmp_path).decode()
    (tmp_path / "ct").write_bytes(bytes.fromhex(m.user_encrypted_iv))
    iv_hex = sh(f"openssl pkeyutl -decrypt -inkey {keys / 'pk.pem'} -in ct", tmp_path).decode()
    # Each part's SHA-1 as sha1sum computes it.
    for part, path in zip(m.parts, b.part_paths, strict=True):
        assert sh(f"sha1sum {path}", tmp_path).split()[0].decode() == part.digest
    cat = "cat " + " ".join(str(p) for p in b.part_paths)
    dec = f"{cat} | openssl enc -d -aes-128-cbc -K {key_hex} -iv {iv_hex}"
    assert sh(f"{dec} | wc -c", tmp_path).strip() != b"0"
    assert sh(f"{cat} | wc -c", tmp_path).strip() == str(m.bundled_size).encode()
    # The image digest is the SHA-1 of the (uncompressed) tar stream.
    assert sh(f"{dec} | gunzip | sha1sum", tmp_path).split()[0].decode() == m.digest
    sh(f"mkdir -p x && {dec} | gunzip | tar -x -C x", tmp_path)
    assert sha256(tmp_path / "x" / "disk.img") == sha256(image)
    # The signature: RSA-SHA1 over <machine_configuration>...</image> as written.
    text = b.manifest_path.read_bytes()
    signed = re.search(rb"<machine_configuration>.*</image>", text, re.DOTALL)
    assert signed is not None
    (tmp_path / "signed").write_bytes(signed.group(0))
    sig = re.search(rb"<signature>([0-9a-f]+)</signature>", text)
    assert sig is not None
    (tmp_path / "sig").write_bytes(bytes.fromhex(sig.group(1).decode()))
    sh(f"openssl x509 -in {keys / 'cert.pem'} -pubkey -noout > pub.pem", tmp_path)
    assert b"Verified OK" in sh(
        "openssl dgst -sha1 -verify pub.pem -signature sig signed", tmp_path)


def ca_key_pem(ca: CloudCA) -> bytes:
    from cryptography.hazmat.primitives import serialization

    return ca.key.private_bytes(serialization.Encoding.PEM,
                                serialization.PrivateFormat.TraditionalOpenSSL,
                                serialization.NoEncryption())


@pytest.mark.parametrize("tar_flags", ["", "-S", "--format=pax", "--format=ustar"])
def test_we_read_a_bundle_made_by_the_standard_tools(tmp_path: Path, ca: CloudCA, alice: User,
                                                     image: Path, tar_flags: str) -> None:
    """The ec2-bundle-image pipeline (GNU tar, gzip, openssl enc, split) unbundled by us."""
    key_hex, iv_hex = crypto.new_key_iv()
    work = tmp_path / "w"
    work.mkdir()
    shutil.copy(image, work / "disk.img")
    sh(f"tar -c {tar_flags} --owner 0 --group 0 disk.img > tarball", work)
    sh(f"gzip -c tarball | openssl enc -e -aes-128-cbc -K {key_hex} -iv {iv_hex} > enc", work)
    sh("split -b 1000000 -d -a 2 enc disk.img.part.", work)
    parts = sorted(work.glob("disk.img.part.*"))
    user_cert = crypto.load_certificate(alice.cert_pem)
    manifest = Manifest(
        name="disk.img", user=ACCOUNT, image_type="machine", architecture="x86_64",
        digest=hashlib.sha1((work / "tarball").read_bytes()).hexdigest(),
        size=image.stat().st_size, bundled_size=(work / "enc").stat().st_size,
        ec2_encrypted_key=crypto.encrypt_hex(ca.cert, key_hex),
        user_encrypted_key=crypto.encrypt_hex(user_cert, key_hex),
        ec2_encrypted_iv=crypto.encrypt_hex(ca.cert, iv_hex),
        user_encrypted_iv=crypto.encrypt_hex(user_cert, iv_hex),
        parts=tuple(ManifestPart(i, p.name, hashlib.sha1(p.read_bytes()).hexdigest())
                    for i, p in enumerate(parts)),
        bundler=("ec2-ami-tools", "1.5", "0"),
    )
    signed = parse(render(manifest, crypto.load_private_key(alice.key_pem)))
    signed.signer([user_cert])
    key, iv = decrypt_key_iv(signed.manifest, ca.key)
    with (tmp_path / "img").open("wb") as out:
        result = unbundle(signed.manifest, key, iv, directory_source(work), out)
    assert result.name == "disk.img"
    assert result.sha256 == sha256(image) == sha256(tmp_path / "img")


def test_pretty_printed_and_foreign_manifests_verify(tmp_path: Path, ca: CloudCA, alice: User,
                                                     image: Path) -> None:
    """Whitespace outside the signed elements does not matter; inside, it is what was signed."""
    b = bundle(image, tmp_path / "out", alice.keys(ca))
    text = b.manifest_path.read_bytes()
    loose = text.replace(b"<manifest>", b"<manifest>\n  ").replace(
        b"</bundler>", b"</bundler>\n  ").replace(b"</image>", b"</image>\n  ")
    signed = parse(loose)
    assert signed.signer([crypto.load_certificate(alice.cert_pem)])
    assert signed.manifest == b.manifest
