"""Unbundling: round trips, and every way a bundle can be refused, with a clear reason."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from eucalypt.bundle import crypto
from eucalypt.bundle.errors import (
    BundleKeyError,
    DigestError,
    ManifestError,
    PartMissing,
    SignatureError,
)
from eucalypt.bundle.manifest import parse, render
from eucalypt.bundle.unbundle import decrypt_key_iv, directory_source, unbundle
from eucalypt.clc.certs import CloudCA
from tests.bundle.helpers import User, bundle, make_image


def run(manifest_bytes: bytes, parts: Path, key: object, *, user: bool = False
        ) -> tuple[str, bytes]:
    signed = parse(manifest_bytes)
    aes, iv = decrypt_key_iv(signed.manifest, key, user=user)  # type: ignore[arg-type]
    out = parts / "out.img"
    with out.open("wb") as fh:
        result = unbundle(signed.manifest, aes, iv, directory_source(parts), fh)
    return result.sha256, out.read_bytes()


@pytest.mark.parametrize("kind", ["machine", "kernel", "ramdisk"])
def test_round_trip_with_either_key(tmp_path: Path, ca: CloudCA, alice: User, image: Path,
                                    kind: str) -> None:
    b = bundle(image, tmp_path / "out", alice.keys(ca), part_size=700_000, image_type=kind,
               kernel_id="true" if kind == "kernel" else None)
    assert len(b.part_paths) > 1
    want = hashlib.sha256(image.read_bytes()).hexdigest()
    data = b.manifest_path.read_bytes()
    assert run(data, tmp_path / "out", ca.key)[0] == want
    assert run(data, tmp_path / "out", crypto.load_private_key(alice.key_pem), user=True)[0] == want
    m = parse(data).manifest
    assert m.image_type == kind and m.size == image.stat().st_size


def test_empty_and_tiny_images(tmp_path: Path, ca: CloudCA, alice: User) -> None:
    for size in (0, 1, 511, 512, 4096):
        img = make_image(tmp_path / f"i{size}", size)
        b = bundle(img, tmp_path / f"o{size}", alice.keys(ca))
        _, data = run(b.manifest_path.read_bytes(), tmp_path / f"o{size}", ca.key)
        assert data == img.read_bytes()


def test_rebundling_removes_stale_parts(tmp_path: Path, ca: CloudCA, alice: User,
                                        image: Path) -> None:
    out = tmp_path / "out"
    first = bundle(image, out, alice.keys(ca), part_size=200_000)
    second = bundle(make_image(tmp_path / "disk.img", 1000), out, alice.keys(ca))
    assert len(first.part_paths) > 1 and len(second.part_paths) == 1
    assert sorted(p.name for p in out.glob("disk.img.part.*")) == ["disk.img.part.00"]


def test_tampered_part_is_named(tmp_path: Path, ca: CloudCA, alice: User, image: Path) -> None:
    b = bundle(image, tmp_path / "out", alice.keys(ca), part_size=500_000)
    victim = b.part_paths[1]
    raw = bytearray(victim.read_bytes())
    raw[1000] ^= 0xFF
    victim.write_bytes(bytes(raw))
    with pytest.raises(DigestError, match=r"part 1 \(disk\.img\.part\.01\).*altered"):
        run(b.manifest_path.read_bytes(), tmp_path / "out", ca.key)


def test_truncated_last_part(tmp_path: Path, ca: CloudCA, alice: User, image: Path) -> None:
    b = bundle(image, tmp_path / "out", alice.keys(ca), part_size=500_000)
    last = b.part_paths[-1]
    last.write_bytes(last.read_bytes()[:-16])
    with pytest.raises(DigestError, match=rf"part {len(b.part_paths) - 1} "):
        run(b.manifest_path.read_bytes(), tmp_path / "out", ca.key)


def test_missing_part(tmp_path: Path, ca: CloudCA, alice: User, image: Path) -> None:
    b = bundle(image, tmp_path / "out", alice.keys(ca), part_size=500_000)
    b.part_paths[2].unlink()
    with pytest.raises(PartMissing, match="part 2"):
        run(b.manifest_path.read_bytes(), tmp_path / "out", ca.key)


def test_altered_manifest_fails_the_signature(tmp_path: Path, ca: CloudCA, alice: User,
                                              mallory: User, image: Path) -> None:
    b = bundle(image, tmp_path / "out", alice.keys(ca))
    data = b.manifest_path.read_bytes()
    cert = crypto.load_certificate(alice.cert_pem)
    assert parse(data).signer([cert]) is cert
    for before, after in ((b"<type>machine</type>", b"<type>kernel</type>"),
                          (b"<architecture>x86_64", b"<architecture>i386"),
                          (b"<name>disk.img</name>", b"<name>evil.img</name>")):
        altered = parse(data.replace(before, after))
        with pytest.raises(SignatureError, match="does not verify"):
            altered.signer([cert])
    # Someone else's (valid, cloud-issued) certificate is not the signer's.
    with pytest.raises(SignatureError):
        parse(data).signer([crypto.load_certificate(mallory.cert_pem)])
    # Re-signed by someone else: verifies with their certificate only.
    resigned = parse(render(parse(data).manifest, crypto.load_private_key(mallory.key_pem)))
    with pytest.raises(SignatureError):
        resigned.signer([cert])


def test_nothing_outside_the_signature_is_used(tmp_path: Path, ca: CloudCA, alice: User,
                                               image: Path) -> None:
    """Fields come from the signed bytes: unsigned extras or a second <image> change nothing."""
    b = bundle(image, tmp_path / "out", alice.keys(ca))
    data = b.manifest_path.read_bytes()
    with pytest.raises(ManifestError, match="exactly one <image>"):
        parse(data.replace(b"<signature>", b"<image><name>x</name></image><signature>"))
    with pytest.raises(ManifestError, match="comments"):
        parse(data.replace(b"<bundler>", b"<!-- <image></image> --><bundler>"))
    with pytest.raises(ManifestError):
        parse(data.replace(b"<manifest>", b"<!DOCTYPE m [<!ENTITY x 'y'>]><manifest>"))


def test_unsafe_part_names_are_refused(tmp_path: Path, ca: CloudCA, alice: User,
                                       image: Path) -> None:
    from dataclasses import replace

    from eucalypt.bundle.manifest import ManifestPart

    b = bundle(image, tmp_path / "out", alice.keys(ca))
    m = b.manifest
    key = crypto.load_private_key(alice.key_pem)
    for name in ("../other/secret", "a/b", "..", ""):
        evil = replace(m, parts=(ManifestPart(0, name, m.parts[0].digest),))
        with pytest.raises(ManifestError, match="unsafe file name"):
            parse(render(evil, key))


def test_another_clouds_bundle(tmp_path: Path, ca: CloudCA, other_ca: CloudCA, alice: User,
                               image: Path) -> None:
    """Keys wrapped for another cloud's certificate do not decrypt with ours."""
    keys = alice.keys(ca)
    from dataclasses import replace

    b = bundle(image, tmp_path / "out", replace(keys, cloud_cert=other_ca.cert))
    signed = parse(b.manifest_path.read_bytes())
    with pytest.raises(BundleKeyError, match="another cloud"):
        decrypt_key_iv(signed.manifest, ca.key)
    assert decrypt_key_iv(signed.manifest, other_ca.key)  # that cloud can


def test_certificates_must_come_from_this_cloud(ca: CloudCA, other_ca: CloudCA,
                                                alice: User) -> None:
    crypto.check_issued_by(crypto.load_certificate(alice.cert_pem), ca.cert)
    foreign = other_ca.issue("123456789012", "alice")
    with pytest.raises(SignatureError, match="not issued by this cloud"):
        crypto.check_issued_by(crypto.load_certificate(foreign.certificate_pem), ca.cert)
    assert crypto.account_of(crypto.load_certificate(alice.cert_pem)) == alice.account


def test_malformed_manifests(tmp_path: Path, ca: CloudCA, alice: User, image: Path) -> None:
    b = bundle(image, tmp_path / "out", alice.keys(ca))
    data = b.manifest_path.read_bytes()
    for broken, why in (
        (b"not xml", "well-formed"),
        (b"<other/>", "not <manifest>"),
        (data.replace(b"<signature>", b"<signature>").split(b"<signature>")[0]
         + b"<signature></signature></manifest>", "not signed"),
        (data.replace(b'algorithm="SHA1">', b'algorithm="MD5">', 1), "SHA1"),
        (data.replace(b"<size>", b"<size>x"), "not a number"),
    ):
        with pytest.raises(ManifestError, match=why):
            parse(broken)


def test_long_file_names_round_trip(tmp_path: Path, ca: CloudCA, alice: User) -> None:
    """A name past ustar's 100 characters takes a GNU long-name header (the tarfile path)."""
    name = "a-root-filesystem-with-a-rather-long-descriptive-name-" + "x" * 70 + ".img"
    img = make_image(tmp_path / name, 300_000)
    b = bundle(img, tmp_path / "out", alice.keys(ca), prefix="long")
    signed = parse(b.manifest_path.read_bytes())
    aes, iv = decrypt_key_iv(signed.manifest, ca.key)
    with (tmp_path / "back").open("wb") as out:
        result = unbundle(signed.manifest, aes, iv, directory_source(tmp_path / "out"), out)
    assert result.name == name
    assert (tmp_path / "back").read_bytes() == img.read_bytes()
