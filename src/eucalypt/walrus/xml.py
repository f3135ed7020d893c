"""S3 XML: rendering responses and (safely) parsing request bodies.

Responses are built from nested ``(tag, value)`` tuples, where a value is
text, a number, a boolean, a datetime, ``None`` (element omitted) or a list
of child nodes. Request XML is parsed with defusedxml only; anything that is
not well-formed (or is an entity bomb) becomes ``MalformedXML``.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any
from xml.etree.ElementTree import Element
from xml.sax.saxutils import escape

import defusedxml.ElementTree as SafeET
from defusedxml import DefusedXmlException

from eucalypt.walrus import errors

S3_NS = "http://s3.amazonaws.com/doc/2006-03-01/"
XSI_NS = "http://www.w3.org/2001/XMLSchema-instance"

Node = tuple[str, Any]


def iso8601(ts: datetime) -> str:
    """S3's timestamp form in XML bodies: ``2006-02-03T16:45:09.000Z``."""
    ts = ts.astimezone(UTC)
    return ts.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ts.microsecond // 1000:03d}Z"


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, datetime):
        return iso8601(value)
    return escape(str(value))


def _render(node: Node, out: list[str]) -> None:
    tag, value = node
    if value is None:
        return
    # A tag may carry attributes after a space: 'Grantee xmlns:xsi="..."'.
    close = tag.split(" ", 1)[0]
    if isinstance(value, list):
        out.append(f"<{tag}>")
        for child in value:
            _render(child, out)
        out.append(f"</{close}>")
    else:
        out.append(f"<{tag}>{_text(value)}</{close}>")


def render(root: str, children: Iterable[Node], *, namespace: bool = True) -> bytes:
    """An XML document with ``root`` in the S3 namespace."""
    out: list[str] = ['<?xml version="1.0" encoding="UTF-8"?>\n']
    attrs = f' xmlns="{S3_NS}"' if namespace else ""
    out.append(f"<{root}{attrs}>")
    for child in children:
        _render(child, out)
    out.append(f"</{root}>")
    return "".join(out).encode("utf-8")


def render_text(root: str, text: str) -> bytes:
    """``<Root xmlns="...">text</Root>`` (GetBucketLocation)."""
    return (f'<?xml version="1.0" encoding="UTF-8"?>\n<{root} xmlns="{S3_NS}">'
            f"{escape(text)}</{root}>").encode()


def render_error(code: str, message: str, resource: str, request_id: str,
                 extra: dict[str, str] | None = None) -> bytes:
    nodes: list[Node] = [("Code", code), ("Message", message)]
    nodes += [(k, v) for k, v in (extra or {}).items()]
    nodes += [("Resource", resource), ("RequestId", request_id)]
    return render("Error", nodes, namespace=False)


# -- parsing -----------------------------------------------------------------


def _strip_ns(elem: Element) -> Element:
    for el in elem.iter():
        if isinstance(el.tag, str) and el.tag.startswith("{"):
            el.tag = el.tag.split("}", 1)[1]
    return elem


def parse(body: bytes, root: str, *, error: type[errors.S3Error] = errors.MalformedXML) -> Element:
    """Parse ``body`` (defusedxml) and check that its root element is ``root``."""
    if not body.strip():
        raise error()
    try:
        elem = SafeET.fromstring(body, forbid_dtd=True)
    except (SafeET.ParseError, DefusedXmlException, ValueError) as exc:
        raise error() from exc
    elem = _strip_ns(elem)
    if elem.tag != root:
        raise error()
    return elem


def child_text(elem: Element, tag: str, default: str | None = None) -> str | None:
    found = elem.find(tag)
    if found is None:
        return default
    return found.text or ""
