"""The cryptography of EC2 bundles.

- The image is encrypted with AES-128-CBC (PKCS#7 padding, as ``openssl enc``)
  under a random key and IV.
- Key and IV travel in the manifest as *hex strings* (32 characters each),
  each encrypted with RSA PKCS#1 v1.5 twice: to the cloud's certificate (so
  Walrus can decrypt) and to the user's (so the user can unbundle); the
  ciphertexts are hex-encoded.
- The manifest is signed RSA-SHA1 (PKCS#1 v1.5) with the user's private key;
  the signature is hex-encoded.

RSA PKCS#1 v1.5 decryption under the wrong key does not reliably fail (OpenSSL
3.2+ uses implicit rejection and returns random bytes), so a decrypted key is
accepted only if it is exactly 32 hex digits.
"""

from __future__ import annotations

import re
import secrets
from datetime import UTC, datetime

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, padding, serialization
from cryptography.hazmat.primitives.asymmetric import padding as asym_padding
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.x509.oid import NameOID

from eucalypt.bundle.errors import BundleKeyError, CorruptBundle, SignatureError

ALGORITHM = "AES-128-CBC"
_HEX32 = re.compile(r"^[0-9a-fA-F]{32}$")


def new_key_iv() -> tuple[str, str]:
    """A fresh AES-128 key and IV, as the 32-hex-digit strings the manifest carries."""
    return secrets.token_hex(16), secrets.token_hex(16)


def load_certificate(pem: bytes | str) -> x509.Certificate:
    data = pem.encode() if isinstance(pem, str) else pem
    try:
        return x509.load_pem_x509_certificate(data)
    except ValueError as exc:
        raise SignatureError(f"not a PEM X.509 certificate: {exc}") from exc


def load_private_key(pem: bytes | str) -> rsa.RSAPrivateKey:
    data = pem.encode() if isinstance(pem, str) else pem
    try:
        key = serialization.load_pem_private_key(data, None)
    except (ValueError, TypeError) as exc:
        raise BundleKeyError(f"not an unencrypted PEM private key: {exc}") from exc
    if not isinstance(key, rsa.RSAPrivateKey):
        raise BundleKeyError("bundles need an RSA private key")
    return key


def _public_key(cert: x509.Certificate) -> rsa.RSAPublicKey:
    key = cert.public_key()
    if not isinstance(key, rsa.RSAPublicKey):
        raise SignatureError("bundles need an RSA certificate")
    return key


def encrypt_hex(cert: x509.Certificate, secret_hex: str) -> str:
    """RSA PKCS#1 v1.5-encrypt the hex string ``secret_hex`` to ``cert``; hex result."""
    return _public_key(cert).encrypt(secret_hex.encode("ascii"), asym_padding.PKCS1v15()).hex()


def decrypt_hex(key: rsa.RSAPrivateKey, ciphertext_hex: str, what: str = "key") -> str:
    """Undo :func:`encrypt_hex`; :class:`BundleKeyError` if ``key`` is not the one it was for."""
    try:
        raw = bytes.fromhex(ciphertext_hex.strip())
    except ValueError as exc:
        raise BundleKeyError(f"the encrypted {what} is not hex") from exc
    try:
        plain = key.decrypt(raw, asym_padding.PKCS1v15())
    except ValueError as exc:
        raise BundleKeyError(
            f"the bundle's {what} cannot be decrypted with this private key "
            "(bundled for another cloud or user?)"
        ) from exc
    text = plain.decode("ascii", errors="replace")
    if not _HEX32.match(text):
        raise BundleKeyError(
            f"the bundle's {what} cannot be decrypted with this private key "
            "(bundled for another cloud or user?)"
        )
    return text.lower()


def sign_hex(key: rsa.RSAPrivateKey, data: bytes) -> str:
    """RSA-SHA1 PKCS#1 v1.5 signature of ``data``, hex-encoded (the manifest's <signature>)."""
    return key.sign(data, asym_padding.PKCS1v15(), hashes.SHA1()).hex()


def verify_hex(cert: x509.Certificate, data: bytes, signature_hex: str) -> bool:
    try:
        sig = bytes.fromhex(signature_hex.strip())
    except ValueError:
        return False
    try:
        _public_key(cert).verify(sig, data, asym_padding.PKCS1v15(), hashes.SHA1())
    except (InvalidSignature, SignatureError):
        return False
    return True


def check_issued_by(cert: x509.Certificate, ca: x509.Certificate, now: datetime | None = None
                    ) -> None:
    """Raise :class:`SignatureError` unless ``ca`` signed ``cert`` and it is valid ``now``."""
    now = now or datetime.now(UTC)
    if cert.issuer != ca.subject:
        raise SignatureError(
            f"certificate {cert.serial_number:x} was not issued by this cloud "
            f"(issuer {cert.issuer.rfc4514_string()})"
        )
    try:
        cert.verify_directly_issued_by(ca)
    except (ValueError, TypeError, InvalidSignature) as exc:
        raise SignatureError(
            f"certificate {cert.serial_number:x} does not carry this cloud's signature"
        ) from exc
    if not (cert.not_valid_before_utc <= now <= cert.not_valid_after_utc):
        raise SignatureError(f"certificate {cert.serial_number:x} is expired or not yet valid")


def account_of(cert: x509.Certificate) -> str | None:
    """The account id in a certificate the cloud issued (``O=account <id>``), else None."""
    for attr in cert.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME):
        value = str(attr.value)
        if value.startswith("account "):
            return value.removeprefix("account ").strip()
    return None


def fingerprint(cert: x509.Certificate) -> str:
    return cert.fingerprint(hashes.SHA256()).hex()


class AesCbcEncryptor:
    """Streaming AES-128-CBC encryption with PKCS#7 padding (``openssl enc -aes-128-cbc``)."""

    def __init__(self, key_hex: str, iv_hex: str) -> None:
        self._cipher = Cipher(algorithms.AES(bytes.fromhex(key_hex)),
                              modes.CBC(bytes.fromhex(iv_hex))).encryptor()
        self._pad = padding.PKCS7(128).padder()

    def update(self, data: bytes | memoryview) -> bytes:
        return self._cipher.update(self._pad.update(bytes(data)))

    def finalize(self) -> bytes:
        return self._cipher.update(self._pad.finalize()) + self._cipher.finalize()


class AesCbcDecryptor:
    """Streaming AES-128-CBC decryption; :meth:`finalize` checks and strips the padding."""

    def __init__(self, key_hex: str, iv_hex: str) -> None:
        self._cipher = Cipher(algorithms.AES(bytes.fromhex(key_hex)),
                              modes.CBC(bytes.fromhex(iv_hex))).decryptor()
        self._unpad = padding.PKCS7(128).unpadder()

    def update(self, data: bytes | memoryview) -> bytes:
        return self._unpad.update(self._cipher.update(data))

    def finalize(self) -> bytes:
        try:
            tail = self._cipher.update(b"") + self._cipher.finalize()
            return self._unpad.update(tail) + self._unpad.finalize()
        except ValueError as exc:
            raise CorruptBundle(
                "the encrypted image does not decrypt to a padded stream "
                "(wrong key, or the parts are truncated)"
            ) from exc
