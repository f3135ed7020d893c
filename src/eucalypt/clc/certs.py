"""The cloud's X.509 material: its CA key pair and the certificates it issues.

The cloud certificate is what image bundles encrypt their key to (the
paper's Walrus decrypts with the cloud's private key); users get
certificates signed by it to sign their bundle manifests.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

CLOUD_CERT = "cloud-cert.pem"
CLOUD_KEY = "cloud-pk.pem"


@dataclass(frozen=True)
class IssuedCertificate:
    serial_hex: str
    certificate_pem: str
    private_key_pem: str


def _write_private(path: Path, data: bytes) -> None:
    fd = os.open(path.with_suffix(".tmp"), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
    path.with_suffix(".tmp").replace(path)


class CloudCA:
    """The cloud certificate authority, stored as two PEM files in the keys dir."""

    def __init__(self, key: rsa.RSAPrivateKey, cert: x509.Certificate) -> None:
        self.key = key
        self.cert = cert

    @classmethod
    def ensure(cls, keys_dir: Path, region: str) -> CloudCA:
        """Load the CA from ``keys_dir``, creating it on first use."""
        cert_path, key_path = keys_dir / CLOUD_CERT, keys_dir / CLOUD_KEY
        if cert_path.exists() and key_path.exists():
            return cls.load(keys_dir)
        keys_dir.mkdir(parents=True, exist_ok=True)
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        name = x509.Name(
            [
                x509.NameAttribute(NameOID.ORGANIZATION_NAME, "eucalypt"),
                x509.NameAttribute(NameOID.COMMON_NAME, f"eucalypt cloud {region}"),
            ]
        )
        now = datetime.now(UTC)
        cert = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(minutes=5))
            .not_valid_after(now + timedelta(days=3650))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .sign(key, hashes.SHA256())
        )
        _write_private(
            key_path,
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.TraditionalOpenSSL,
                serialization.NoEncryption(),
            ),
        )
        cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        return cls(key, cert)

    @classmethod
    def load(cls, keys_dir: Path) -> CloudCA:
        key = serialization.load_pem_private_key((keys_dir / CLOUD_KEY).read_bytes(), None)
        if not isinstance(key, rsa.RSAPrivateKey):
            raise ValueError("the cloud key must be an RSA key")
        cert = x509.load_pem_x509_certificate((keys_dir / CLOUD_CERT).read_bytes())
        return cls(key, cert)

    @property
    def certificate_pem(self) -> str:
        return self.cert.public_bytes(serialization.Encoding.PEM).decode()

    def issue(self, account_id: str, user_name: str, days: int = 3650) -> IssuedCertificate:
        """A new RSA key pair for a user and its certificate signed by the cloud."""
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        now = datetime.now(UTC)
        serial = x509.random_serial_number()
        cert = (
            x509.CertificateBuilder()
            .subject_name(
                x509.Name(
                    [
                        x509.NameAttribute(NameOID.ORGANIZATION_NAME, f"account {account_id}"),
                        x509.NameAttribute(NameOID.COMMON_NAME, user_name),
                    ]
                )
            )
            .issuer_name(self.cert.subject)
            .public_key(key.public_key())
            .serial_number(serial)
            .not_valid_before(now - timedelta(minutes=5))
            .not_valid_after(now + timedelta(days=days))
            .sign(self.key, hashes.SHA256())
        )
        return IssuedCertificate(
            serial_hex=f"{serial:x}",
            certificate_pem=cert.public_bytes(serialization.Encoding.PEM).decode(),
            private_key_pem=key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.TraditionalOpenSSL,
                serialization.NoEncryption(),
            ).decode(),
        )
