"""SSH key material for key pairs, with EC2's fingerprints."""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa


@dataclass(frozen=True)
class KeyMaterial:
    key_type: str  # rsa | ed25519
    public_openssh: str
    fingerprint: str
    private_pem: str = ""


def _md5_colons(data: bytes) -> str:
    digest = hashlib.md5(data).hexdigest()
    return ":".join(digest[i : i + 2] for i in range(0, len(digest), 2))


def _sha1_colons(data: bytes) -> str:
    digest = hashlib.sha1(data).hexdigest()
    return ":".join(digest[i : i + 2] for i in range(0, len(digest), 2))


def _ed25519_fingerprint(public_openssh: str) -> str:
    blob = base64.b64decode(public_openssh.split()[1])
    return base64.b64encode(hashlib.sha256(blob).digest()).decode().rstrip("=") + "="


def generate(key_type: str) -> KeyMaterial:
    """A new key pair. RSA: PEM private key, fingerprint = SHA-1 of the PKCS#8 DER (as EC2)."""
    if key_type == "ed25519":
        key25519 = ed25519.Ed25519PrivateKey.generate()
        public = (
            key25519.public_key()
            .public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
            .decode()
        )
        private = key25519.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.OpenSSH,
            serialization.NoEncryption(),
        ).decode()
        return KeyMaterial("ed25519", public, _ed25519_fingerprint(public), private)
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pkcs8 = key.private_bytes(
        serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    private = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    ).decode()
    public = (
        key.public_key()
        .public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
        .decode()
    )
    return KeyMaterial("rsa", public, _sha1_colons(pkcs8), private)


def import_public(material: bytes) -> KeyMaterial:
    """Parse an OpenSSH public key. RSA fingerprint: MD5 of the DER public key (as EC2).

    Raises ValueError for anything that is not an RSA or Ed25519 OpenSSH public key.
    """
    text = material.decode("utf-8", errors="strict").strip()
    public = serialization.load_ssh_public_key(text.encode())
    if isinstance(public, rsa.RSAPublicKey):
        if public.key_size < 1024:
            raise ValueError("RSA keys must be at least 1024 bits")
        der = public.public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        openssh = public.public_bytes(
            serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH
        ).decode()
        return KeyMaterial("rsa", openssh, _md5_colons(der))
    if isinstance(public, ed25519.Ed25519PublicKey):
        openssh = public.public_bytes(
            serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH
        ).decode()
        return KeyMaterial("ed25519", openssh, _ed25519_fingerprint(openssh))
    raise ValueError("only RSA and ED25519 keys are supported")
