"""A framework-neutral view of an HTTP request, as the signature checks need it.

The verifier must see the request exactly as it travelled: the path and query
still percent-encoded, header names lower-cased, repeated headers joined with
``,`` (the SigV4 rule for repeated headers). :meth:`HttpRequest.create` builds
one from whatever a server framework hands over; it accepts ``str`` or
``bytes`` for the path, query and headers (ASGI gives bytes).

Text that a framework decoded as Latin-1 although the client sent UTF-8 (the
usual treatment of raw header bytes) is restored to the UTF-8 text, so that a
signature over ``x-amz-meta-name: café`` verifies whichever way it arrived.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from urllib.parse import unquote_plus

Text = str | bytes


def as_text(value: Text) -> str:
    """Decode wire bytes (UTF-8, undecodable bytes kept as surrogates) or repair Latin-1 text.

    A ``str`` whose characters are all Latin-1 and whose Latin-1 bytes form
    valid UTF-8 with at least one multi-byte sequence is taken to be UTF-8
    that was decoded as Latin-1, and is decoded again. Anything else is
    returned unchanged.
    """
    if isinstance(value, bytes):
        return value.decode("utf-8", "surrogateescape")
    if value.isascii():
        return value
    try:
        raw = value.encode("latin-1")
    except UnicodeEncodeError:
        return value
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return value


def wire_bytes(value: str) -> bytes:
    """The bytes of text built by :func:`as_text` (inverse of its bytes branch)."""
    return value.encode("utf-8", "surrogateescape")


def split_query(raw_query: str) -> list[tuple[str, str, bool]]:
    """Split a raw query into ``(raw_key, raw_value, has_equals)``, in order, skipping empties."""
    parts: list[tuple[str, str, bool]] = []
    for piece in raw_query.split("&"):
        if not piece:
            continue
        key, eq, value = piece.partition("=")
        parts.append((key, value, bool(eq)))
    return parts


def decode_component(raw: str) -> str:
    """Form-decode one query component (``+`` is a space); invalid UTF-8 survives as surrogates."""
    return unquote_plus(raw, encoding="utf-8", errors="surrogateescape")


def decode_pairs(raw_query: str) -> list[tuple[str, str]]:
    """Decoded ``(key, value)`` pairs of a query or form body, in order, blank values kept."""
    return [(decode_component(k), decode_component(v)) for k, v, _ in split_query(raw_query)]


@dataclass
class HttpRequest:
    """One HTTP request as received.

    ``path`` is the raw path as sent on the wire (still percent-encoded, no
    query); ``raw_query`` the raw query string without ``?``; ``headers`` has
    lower-cased names; ``body`` is the whole body when the caller has it (EC2
    Query POST form bodies) and ``None`` for streamed bodies.
    """

    method: str
    path: str
    raw_query: str
    headers: Mapping[str, str]
    body: bytes | None = None

    @classmethod
    def create(
        cls,
        method: Text,
        path: Text,
        raw_query: Text,
        headers: Iterable[tuple[Text, Text]] | Mapping[str, str],
        body: bytes | None = None,
    ) -> HttpRequest:
        """Build a request: upper-cases the method, lower-cases header names, joins repeats.

        Repeated headers are joined with ``,`` in the order received, each
        value stripped of surrounding whitespace. A ``?`` in ``path`` splits
        off the query when ``raw_query`` is empty.
        """
        items: Iterable[tuple[Text, Text]]
        items = headers.items() if isinstance(headers, Mapping) else headers
        merged: dict[str, str] = {}
        for name, value in items:
            key = as_text(name).strip().lower()
            text = as_text(value).strip()
            merged[key] = f"{merged[key]},{text}" if key in merged else text
        path_text = as_text(path)
        query_text = as_text(raw_query)
        if "?" in path_text:
            path_text, _, in_path = path_text.partition("?")
            query_text = query_text or in_path
        if query_text.startswith("?"):
            query_text = query_text[1:]
        return cls(
            method=as_text(method).strip().upper(),
            path=path_text,
            raw_query=query_text,
            headers=merged,
            body=body,
        )

    def header(self, name: str) -> str | None:
        """The value of a header (name in any case), or ``None``."""
        return self.headers.get(name.lower())

    def query_pairs(self) -> list[tuple[str, str]]:
        """The query parameters, decoded, in order, blank values kept."""
        return [(_printable(k), _printable(v)) for k, v in decode_pairs(self.raw_query)]

    def form_pairs(self) -> list[tuple[str, str]]:
        """The parameters of an ``application/x-www-form-urlencoded`` body; ``[]`` otherwise.

        Undecodable bytes are kept as surrogate escapes (this is what the SigV2
        check signs over); use :meth:`query_pairs`-style cleaning for display.
        """
        if not self.body or not is_form(self.headers.get("content-type")):
            return []
        return decode_pairs(self.body.decode("utf-8", "surrogateescape"))


def is_form(content_type: str | None) -> bool:
    """True for an ``application/x-www-form-urlencoded`` content type (any parameters)."""
    if not content_type:
        return False
    return content_type.split(";", 1)[0].strip().lower() == "application/x-www-form-urlencoded"


def _printable(text: str) -> str:
    """Replace surrogate-escaped invalid bytes with U+FFFD for application use."""
    return text.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
