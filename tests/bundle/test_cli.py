"""``eucalypt bundle`` commands that need no cloud: help, image, unbundle from a directory."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from click.testing import CliRunner

from eucalypt.bundle.manifest import parse
from eucalypt.clc.certs import CloudCA
from eucalypt.cli.bundle import bundle_group
from tests.bundle.helpers import User


@pytest.fixture
def runner(monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    for name in ("EC2_CERT", "EC2_PRIVATE_KEY", "EUCALYPTUS_CERT", "EC2_USER_ID"):
        monkeypatch.delenv(name, raising=False)
    return CliRunner()


@pytest.mark.parametrize("command", [[], ["image"], ["upload"], ["register"], ["unbundle"]])
def test_help(runner: CliRunner, command: list[str]) -> None:
    result = runner.invoke(bundle_group, [*command, "--help"])
    assert result.exit_code == 0, result.output
    assert "Usage:" in result.output


def test_bundle_and_unbundle_with_a_keys_dir(runner: CliRunner, tmp_path: Path, ca: CloudCA,
                                             alice: User, image: Path) -> None:
    keys = alice.write(tmp_path / "keys", ca)
    out = tmp_path / "out"
    result = runner.invoke(bundle_group, [
        "image", "-i", str(image), "--keys-dir", str(keys), "-d", str(out), "-B", "1",
        "--kernel", "eki-0123456789abcdef0", "--ramdisk", "eri-0123456789abcdef0",
        "--compress-level", "1"])
    assert result.exit_code == 0, result.output
    manifest_path = Path(result.output.strip().splitlines()[-1])
    assert manifest_path == out / "disk.img.manifest.xml"
    m = parse(manifest_path.read_bytes()).manifest
    assert (m.user, m.image_type) == (alice.account, "machine")  # account from the cert
    assert (m.kernel_id, m.ramdisk_id) == ("eki-0123456789abcdef0", "eri-0123456789abcdef0")
    assert len(m.parts) >= 2

    dest = tmp_path / "back"
    result = runner.invoke(bundle_group, [
        "unbundle", "-m", str(manifest_path), "--keys-dir", str(keys), "-d", str(dest)])
    assert result.exit_code == 0, result.output
    restored = dest / "disk.img"
    assert hashlib.sha256(restored.read_bytes()).digest() == \
        hashlib.sha256(image.read_bytes()).digest()
    assert list(dest.iterdir()) == [restored]  # no temp files left


def test_kernel_bundle_and_env_keys(runner: CliRunner, tmp_path: Path, ca: CloudCA,
                                    alice: User, image: Path) -> None:
    keys = alice.write(tmp_path / "keys", ca)
    env = {"EC2_CERT": str(keys / "cert.pem"), "EC2_PRIVATE_KEY": str(keys / "pk.pem"),
           "EUCALYPTUS_CERT": str(keys / "cloud-cert.pem")}
    result = runner.invoke(bundle_group, [
        "image", "-i", str(image), "--kernel", "true", "-d", str(tmp_path / "k"), "-p", "vmlinuz",
        "--compress-level", "1"], env=env)
    assert result.exit_code == 0, result.output
    m = parse((tmp_path / "k" / "vmlinuz.manifest.xml").read_bytes()).manifest
    assert (m.image_type, m.kernel_id, m.name) == ("kernel", "true", "vmlinuz")


def test_errors_are_clear(runner: CliRunner, tmp_path: Path, ca: CloudCA, alice: User,
                          mallory: User, image: Path) -> None:
    result = runner.invoke(bundle_group, ["image", "-i", str(image), "-d", str(tmp_path / "o")])
    assert result.exit_code == 2 and "your private key is needed" in result.output

    keys = alice.write(tmp_path / "keys", ca)
    out = tmp_path / "out"
    assert runner.invoke(bundle_group, [
        "image", "-i", str(image), "--keys-dir", str(keys), "-d", str(out), "-B", "1",
        "--compress-level", "1"]).exit_code == 0
    part = out / "disk.img.part.01"
    raw = bytearray(part.read_bytes())
    raw[7] ^= 0x80
    part.write_bytes(bytes(raw))
    dest = tmp_path / "back"
    result = runner.invoke(bundle_group, [
        "unbundle", "-m", str(out / "disk.img.manifest.xml"), "--keys-dir", str(keys),
        "-d", str(dest)])
    assert result.exit_code == 1
    assert "BundleDigestMismatch" in result.output and "part 1" in result.output
    assert list(dest.iterdir()) == []  # nothing half-written is left

    other = mallory.write(tmp_path / "mallory", ca)
    result = runner.invoke(bundle_group, [
        "unbundle", "-m", str(out / "disk.img.manifest.xml"), "--keys-dir", str(other),
        "-d", str(dest)])
    assert result.exit_code == 1 and "InvalidManifestSignature" in result.output
    result = runner.invoke(bundle_group, [
        "unbundle", "-m", str(out / "disk.img.manifest.xml"), "--keys-dir", str(other),
        "-d", str(dest), "--no-verify"])
    assert result.exit_code == 1 and "BundleKeyMismatch" in result.output
