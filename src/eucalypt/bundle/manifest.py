"""The EC2 bundle manifest (``<prefix>.manifest.xml``, version 2007-10-10).

Layout, as ec2-bundle-image and euca-bundle-image write it::

    <manifest>
      <version>2007-10-10</version>
      <bundler><name/><version/><release/></bundler>
      <machine_configuration>
        <architecture/> [<kernel_id/>] [<ramdisk_id/>]
      </machine_configuration>
      <image>
        <name/> <user/> <type/>  (machine | kernel | ramdisk)
        <digest algorithm="SHA1"/>          SHA-1 of the tar stream
        <size/> <bundled_size/>             image bytes; encrypted bytes
        <ec2_encrypted_key algorithm="AES-128-CBC"/> <user_encrypted_key algorithm=.../>
        <ec2_encrypted_iv/> <user_encrypted_iv/>
        <parts count="N"><part index="0"><filename/><digest algorithm="SHA1"/></part>...</parts>
      </image>
      <signature/>                          RSA-SHA1 over the two elements above, as written
    </manifest>

The signature covers the bytes of ``<machine_configuration>…</machine_configuration>``
followed by ``<image>…</image>`` exactly as they appear in the file. So a
verifier never re-serialises: :func:`parse` cuts those two byte ranges out of
the document, verifies the signature over them, and takes every field it
uses *from those signed bytes* (parsed again on their own), so nothing
outside the signature can change what is decrypted or where parts are read.
We write compact XML (no whitespace between elements), as euca2ools does.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from xml.etree.ElementTree import Element
from xml.sax.saxutils import escape, quoteattr

import defusedxml.ElementTree as DET
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import rsa

from eucalypt.bundle import crypto
from eucalypt.bundle.errors import ManifestError, SignatureError

VERSION = "2007-10-10"
MANIFEST_SUFFIX = ".manifest.xml"
IMAGE_TYPES = ("machine", "kernel", "ramdisk")
ARCHITECTURES = ("x86_64", "i386")
#: A manifest of 10,000 parts is ~1.5 MB; anything much larger is not a manifest.
MAX_MANIFEST_BYTES = 8 << 20
MAX_PARTS = 100_000
_HEX40 = re.compile(r"^[0-9a-f]{40}$")
_SIGNED = re.compile(
    rb"(<machine_configuration\s*/>|<machine_configuration>.*?</machine_configuration>)\s*"
    rb"(<image>.*?</image>)",
    re.DOTALL,
)


@dataclass(frozen=True)
class ManifestPart:
    index: int
    filename: str
    digest: str  # SHA-1 of the encrypted part, hex


@dataclass(frozen=True)
class Manifest:
    """The fields of a manifest (what is signed, plus the bundler's name)."""

    name: str
    user: str
    image_type: str
    architecture: str
    digest: str  # SHA-1 of the tar stream, hex
    size: int
    bundled_size: int
    ec2_encrypted_key: str
    user_encrypted_key: str
    ec2_encrypted_iv: str
    user_encrypted_iv: str
    parts: tuple[ManifestPart, ...]
    kernel_id: str | None = None
    ramdisk_id: str | None = None
    bundler: tuple[str, str, str] = ("eucalypt", "1.0", "0")

    def signed_bytes(self) -> bytes:
        """The bytes the signature covers, as :func:`render` writes them."""
        return _machine_configuration(self) + _image(self)

    def part_keys(self, manifest_key: str) -> list[str]:
        """Object keys of the parts: they sit beside the manifest (same prefix "directory")."""
        folder = manifest_key.rsplit("/", 1)[0] + "/" if "/" in manifest_key else ""
        return [folder + p.filename for p in self.parts]


def _el(tag: str, text: str | int, **attrs: str) -> bytes:
    attr = "".join(f" {k}={quoteattr(v)}" for k, v in attrs.items())
    return f"<{tag}{attr}>{escape(str(text))}</{tag}>".encode()


def _machine_configuration(m: Manifest) -> bytes:
    body = _el("architecture", m.architecture)
    if m.kernel_id:
        body += _el("kernel_id", m.kernel_id)
    if m.ramdisk_id:
        body += _el("ramdisk_id", m.ramdisk_id)
    return b"<machine_configuration>" + body + b"</machine_configuration>"


def _image(m: Manifest) -> bytes:
    parts = b"".join(
        f'<part index="{p.index}">'.encode()
        + _el("filename", p.filename)
        + _el("digest", p.digest, algorithm="SHA1")
        + b"</part>"
        for p in m.parts
    )
    return (
        b"<image>"
        + _el("name", m.name)
        + _el("user", m.user)
        + _el("type", m.image_type)
        + _el("digest", m.digest, algorithm="SHA1")
        + _el("size", m.size)
        + _el("bundled_size", m.bundled_size)
        + _el("ec2_encrypted_key", m.ec2_encrypted_key, algorithm=crypto.ALGORITHM)
        + _el("user_encrypted_key", m.user_encrypted_key, algorithm=crypto.ALGORITHM)
        + _el("ec2_encrypted_iv", m.ec2_encrypted_iv)
        + _el("user_encrypted_iv", m.user_encrypted_iv)
        + f'<parts count="{len(m.parts)}">'.encode()
        + parts
        + b"</parts></image>"
    )


def render(m: Manifest, signer: rsa.RSAPrivateKey) -> bytes:
    """The manifest document, signed with ``signer`` (the user's private key)."""
    signed = m.signed_bytes()
    name, version, release = m.bundler
    return (
        b"<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<manifest>"
        + _el("version", VERSION)
        + b"<bundler>" + _el("name", name) + _el("version", version) + _el("release", release)
        + b"</bundler>"
        + signed
        + _el("signature", crypto.sign_hex(signer, signed))
        + b"</manifest>\n"
    )


@dataclass(frozen=True)
class SignedManifest:
    """A parsed manifest: its fields (from the signed bytes), those bytes and the signature."""

    manifest: Manifest
    signed: bytes
    signature: str

    def verify(self, cert: x509.Certificate) -> bool:
        return crypto.verify_hex(cert, self.signed, self.signature)

    def signer(self, certs: Iterable[x509.Certificate]) -> x509.Certificate:
        """The first of ``certs`` whose key made the signature, else :class:`SignatureError`."""
        tried = 0
        for cert in certs:
            tried += 1
            if self.verify(cert):
                return cert
        if not tried:
            raise SignatureError("no certificate to verify the manifest signature with")
        raise SignatureError(
            f"the manifest signature does not verify with the owner's certificate(s) ({tried} "
            "tried): it was altered, or signed by someone else"
        )


def _text(parent: Element, tag: str, *, required: bool = True) -> str | None:
    found = parent.findall(tag)
    if len(found) > 1:
        raise ManifestError(f"<{tag}> appears {len(found)} times")
    if not found:
        if required:
            raise ManifestError(f"<{tag}> is missing")
        return None
    return (found[0].text or "").strip()


def _int(parent: Element, tag: str) -> int:
    raw = _text(parent, tag) or ""
    if not raw.isdigit():
        raise ManifestError(f"<{tag}> is not a number: {raw[:40]!r}")
    return int(raw)


def _sha1(value: str | None, what: str) -> str:
    v = (value or "").lower()
    if not _HEX40.match(v):
        raise ManifestError(f"{what} is not a SHA-1 hex digest")
    return v


def _fromstring(data: bytes) -> Element:
    try:
        root: Element = DET.fromstring(data, forbid_dtd=True)
    except Exception as exc:  # ParseError and defusedxml's refusals alike
        raise ManifestError(f"not well-formed XML: {exc}") from exc
    return root


def _parts(image: Element) -> tuple[ManifestPart, ...]:
    holders = image.findall("parts")
    if len(holders) != 1:
        raise ManifestError("<parts> is missing")
    holder = holders[0]
    elements = holder.findall("part")
    count = holder.get("count")
    if count is not None and (not count.isdigit() or int(count) != len(elements)):
        raise ManifestError(f"<parts count={count!r}> but {len(elements)} <part> elements")
    if not elements or len(elements) > MAX_PARTS:
        raise ManifestError(f"a bundle has 1 to {MAX_PARTS} parts, not {len(elements)}")
    by_index: dict[int, ManifestPart] = {}
    for el in elements:
        raw = el.get("index", "")
        if not raw.isdigit():
            raise ManifestError(f"part index {raw!r} is not a number")
        index = int(raw)
        name = _text(el, "filename") or ""
        if not name or "/" in name or "\\" in name or name in (".", "..") or "\x00" in name:
            raise ManifestError(f"part {index} has an unsafe file name {name!r}")
        digest_el = el.find("digest")
        if digest_el is not None and digest_el.get("algorithm", "SHA1").upper() != "SHA1":
            raise ManifestError("only SHA1 part digests are supported")
        if index in by_index:
            raise ManifestError(f"part index {index} appears twice")
        by_index[index] = ManifestPart(index, name, _sha1(_text(el, "digest"), f"part {index}"))
    if sorted(by_index) != list(range(len(by_index))):
        raise ManifestError("part indexes are not 0..N-1")
    return tuple(by_index[i] for i in range(len(by_index)))


def _fields(mc: Element, image: Element, bundler: tuple[str, str, str]) -> Manifest:
    arch = _text(mc, "architecture", required=False) or "x86_64"
    if arch not in ARCHITECTURES:
        raise ManifestError(f"unsupported architecture {arch!r}")
    image_type = _text(image, "type", required=False) or "machine"
    if image_type not in IMAGE_TYPES:
        raise ManifestError(f"unknown image type {image_type!r}")
    digest_el = image.find("digest")
    if digest_el is not None and digest_el.get("algorithm", "SHA1").upper() != "SHA1":
        raise ManifestError("only a SHA1 image digest is supported")
    for tag in ("ec2_encrypted_key", "user_encrypted_key"):
        el = image.find(tag)
        if el is not None and el.get("algorithm", crypto.ALGORITHM).upper() != crypto.ALGORITHM:
            raise ManifestError(f"only {crypto.ALGORITHM} bundles are supported")
    return Manifest(
        name=_text(image, "name") or "",
        user=_text(image, "user", required=False) or "",
        image_type=image_type,
        architecture=arch,
        digest=_sha1(_text(image, "digest"), "the image digest"),
        size=_int(image, "size"),
        bundled_size=_int(image, "bundled_size"),
        ec2_encrypted_key=_text(image, "ec2_encrypted_key") or "",
        user_encrypted_key=_text(image, "user_encrypted_key", required=False) or "",
        ec2_encrypted_iv=_text(image, "ec2_encrypted_iv") or "",
        user_encrypted_iv=_text(image, "user_encrypted_iv", required=False) or "",
        parts=_parts(image),
        kernel_id=_text(mc, "kernel_id", required=False) or None,
        ramdisk_id=_text(mc, "ramdisk_id", required=False) or None,
        bundler=bundler,
    )


def parse(data: bytes) -> SignedManifest:
    """Parse a manifest document; :class:`ManifestError` when it is not one.

    Does not verify the signature (call :meth:`SignedManifest.signer`), but
    every field returned comes from the bytes that signature covers.
    """
    if len(data) > MAX_MANIFEST_BYTES:
        raise ManifestError(f"a manifest of {len(data)} bytes is too large")
    root = _fromstring(data)
    if root.tag != "manifest":
        raise ManifestError(f"the root element is <{root.tag}>, not <manifest>")
    for tag in ("machine_configuration", "image", "signature"):
        if len(root.findall(tag)) != 1:
            raise ManifestError(f"a manifest has exactly one <{tag}>")
    if b"<!--" in data or b"<![CDATA[" in data:
        # Comments or CDATA could make the signed byte ranges ambiguous.
        raise ManifestError("comments and CDATA sections are not allowed in a manifest")
    match = _SIGNED.search(data)
    if match is None:
        raise ManifestError(
            "<machine_configuration> must be followed by <image> (the signed elements)"
        )
    signed = match.group(1) + match.group(2)
    inner = _fromstring(b"<signed>" + signed + b"</signed>")
    mc, image = inner.find("machine_configuration"), inner.find("image")
    if mc is None or image is None:  # pragma: no cover - the pattern guarantees both
        raise ManifestError("the signed elements are missing")
    bundler_el = root.find("bundler")
    bundler = ("", "", "")
    if bundler_el is not None:
        bundler = tuple(  # type: ignore[assignment]
            (bundler_el.findtext(t) or "").strip() for t in ("name", "version", "release")
        )
    signature = (root.findtext("signature") or "").strip()
    if not signature:
        raise ManifestError("the manifest is not signed (empty <signature>)")
    return SignedManifest(_fields(mc, image, bundler), signed, signature)


def manifest_name(prefix: str) -> str:
    return prefix + MANIFEST_SUFFIX


def part_name(prefix: str, index: int) -> str:
    """``<prefix>.part.NN`` (two digits at least, as the EC2 tools name them)."""
    return f"{prefix}.part.{index:02d}"
