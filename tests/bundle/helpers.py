"""Shared helpers for the bundle tests: a cloud CA, users with certificates, images."""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path

from eucalypt.bundle import crypto
from eucalypt.bundle.bundle import Bundle, BundleKeys, BundleSpec, bundle_image
from eucalypt.clc.certs import CloudCA

ACCOUNT = "123456789012"


@dataclass(frozen=True)
class User:
    account: str
    cert_pem: str
    key_pem: str

    def keys(self, ca: CloudCA) -> BundleKeys:
        return BundleKeys(
            private_key=crypto.load_private_key(self.key_pem),
            user_cert=crypto.load_certificate(self.cert_pem),
            cloud_cert=ca.cert,
        )

    def write(self, directory: Path, ca: CloudCA) -> Path:
        """cert.pem, pk.pem and cloud-cert.pem, as `eucalypt admin cert --out` writes them."""
        directory.mkdir(parents=True, exist_ok=True)
        (directory / "cert.pem").write_text(self.cert_pem)
        (directory / "pk.pem").write_text(self.key_pem)
        (directory / "cloud-cert.pem").write_text(ca.certificate_pem)
        return directory


def new_user(ca: CloudCA, account: str = ACCOUNT, name: str = "alice") -> User:
    issued = ca.issue(account, name)
    return User(account, issued.certificate_pem, issued.private_key_pem)


def make_image(path: Path, size: int, *, seed: int = 1) -> Path:
    """A file of ``size`` bytes: random 4 KiB blocks between zero blocks (like a disk)."""
    rng = random.Random(seed)
    with path.open("wb") as fh:
        written, i = 0, 0
        while written < size:
            piece = rng.randbytes(4096) if i % 3 else bytes(4096)
            piece = piece[: size - written]
            fh.write(piece)
            written += len(piece)
            i += 1
    return path


def bundle(image: Path, dest: Path, keys: BundleKeys, **kw: object) -> Bundle:
    spec = BundleSpec(image=image, destination=dest, user=kw.pop("user", ACCOUNT),  # type: ignore[arg-type]
                      compress_level=kw.pop("compress_level", 1), **kw)  # type: ignore[arg-type]
    return bundle_image(spec, keys)
