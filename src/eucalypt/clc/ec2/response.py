"""Rendering operation results as EC2 response XML, driven by botocore shapes.

The EC2 response encoding (what ``botocore.parsers.EC2QueryParser`` reads):

* a structure member is the element named by the member's ``locationName``, else by the
  member name; members absent from (or ``None`` in) the result are omitted; members are
  written in the order of the result mapping;
* a list is its member element wrapping one ``<item>`` per entry (``<groupSet/>``-style
  empty wrapper for an empty list);
* a map is ``<entry><key>..</key><value>..</value></entry>`` per pair inside its element
  (names from the key/value shapes' ``locationName`` if any; the EC2 model has no maps);
* scalars: strings escaped, integers in decimal, booleans ``true``/``false``, floats as
  ``repr`` (``Infinity``/``-Infinity``/``NaN`` for the specials), timestamps ISO 8601 UTC
  with milliseconds (``2026-11-30T01:02:03.000Z``; naive datetimes are taken as UTC),
  blobs base64 (``bytes``-like, or ``str`` encoded as UTF-8).

Performance: each shape is compiled once (per :class:`ResponseSerializer`) into a small
writer closure that appends ``str`` chunks to a list; a document is produced in a single
pass over the result and one ``"".join``, with no intermediate tree. Rendering
DescribeInstances with 1,000 fully populated instances is one such pass.

A result that does not fit its shape (an unknown key, a value of the wrong Python type, a
``None`` list item) is a programming error: :class:`ValueError` naming the offending path,
e.g. ``Reservations[0].Instances[2].Bogus: not a member of Instance``.
"""

from __future__ import annotations

import base64
import math
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

from botocore.model import ListShape, MapShape, Shape, StructureShape

from eucalypt.clc.ec2.xmlout import escape_text

__all__ = ["ResponseSerializer", "ResultShapeError"]

Writer = Callable[[list[str], Any], None]


class ResultShapeError(ValueError):
    """A result value does not match its output shape; ``path`` locates it."""

    def __init__(self, problem: str) -> None:
        super().__init__(problem)
        self.problem = problem
        self._reversed_path: list[str] = []

    def add_parent(self, component: str) -> None:
        """Prefix the path with ``component`` (a member name or ``[index]``)."""
        self._reversed_path.append(component)

    @property
    def path(self) -> str:
        """Dotted path from the result's root, e.g. ``Reservations[0].Instances``."""
        text = ""
        for component in reversed(self._reversed_path):
            text += component if component.startswith("[") or not text else "." + component
        return text

    def __str__(self) -> str:
        return f"{self.path}: {self.problem}" if self._reversed_path else self.problem


def _type_error(expected: str, value: Any) -> ResultShapeError:
    return ResultShapeError(f"expected {expected}, got {type(value).__name__} {value!r:.80}")


# --- scalar writers ------------------------------------------------------------------------


def _write_string(out: list[str], value: Any) -> None:
    if not isinstance(value, str):
        raise _type_error("str", value)
    out.append(escape_text(value))


def _write_integer(out: list[str], value: Any) -> None:
    if not isinstance(value, int) or isinstance(value, bool):
        raise _type_error("int", value)
    out.append(int.__repr__(value))


def _write_boolean(out: list[str], value: Any) -> None:
    if value is True:
        out.append("true")
    elif value is False:
        out.append("false")
    else:
        raise _type_error("bool", value)


def _write_float(out: list[str], value: Any) -> None:
    if not isinstance(value, int | float) or isinstance(value, bool):
        raise _type_error("float", value)
    number = float(value)
    if math.isnan(number):
        out.append("NaN")
    elif math.isinf(number):
        out.append("Infinity" if number > 0 else "-Infinity")
    else:
        out.append(repr(number))


def _write_timestamp(out: list[str], value: Any) -> None:
    if not isinstance(value, datetime):
        raise _type_error("datetime", value)
    if value.tzinfo is not None:
        value = value.astimezone(UTC)
    out.append(
        f"{value.year:04d}-{value.month:02d}-{value.day:02d}T"
        f"{value.hour:02d}:{value.minute:02d}:{value.second:02d}."
        f"{value.microsecond // 1000:03d}Z"
    )


def _write_blob(out: list[str], value: Any) -> None:
    if isinstance(value, str):
        value = value.encode()
    elif not isinstance(value, bytes | bytearray | memoryview):
        raise _type_error("bytes", value)
    out.append(base64.b64encode(value).decode("ascii"))


_SCALAR_WRITERS: dict[str, Writer] = {
    "string": _write_string,
    "character": _write_string,
    "integer": _write_integer,
    "long": _write_integer,
    "boolean": _write_boolean,
    "float": _write_float,
    "double": _write_float,
    "timestamp": _write_timestamp,
    "blob": _write_blob,
}


# --- the compiler --------------------------------------------------------------------------


class ResponseSerializer:
    """Writes result values as EC2 XML fragments; compiled writers are cached per shape.

    Stateless apart from that cache, keyed by shape name (so use one serializer per
    service model); safe to share between requests.
    """

    def __init__(self) -> None:
        self._writers: dict[str, Writer] = {}

    def write(self, out: list[str], shape: Shape, value: Any) -> None:
        """Append the XML *content* for ``value`` under ``shape`` to ``out``.

        For a structure that is its member elements (the caller writes the enclosing
        element, e.g. ``<DescribeRegionsResponse>``). Raises :class:`ResultShapeError`.
        """
        self.writer(shape)(out, value)

    def writer(self, shape: Shape) -> Writer:
        """The compiled writer of ``shape`` (compiled on first use)."""
        writer = self._writers.get(shape.name)
        if writer is None:
            writer = self._compile(shape)
        return writer

    def _compile(self, shape: Shape) -> Writer:
        type_name = shape.type_name
        if type_name == "structure":
            assert isinstance(shape, StructureShape)
            return self._compile_structure(shape)
        if shape.serialization.get("flattened"):
            raise NotImplementedError(f"{shape.name}: flattened {type_name}s are not supported")
        if type_name == "list":
            assert isinstance(shape, ListShape)
            writer = self._compile_list(shape)
        elif type_name == "map":
            assert isinstance(shape, MapShape)
            writer = self._compile_map(shape)
        else:
            try:
                writer = _SCALAR_WRITERS[type_name]
            except KeyError:
                raise NotImplementedError(f"{shape.name}: type {type_name}") from None
        self._writers[shape.name] = writer
        return writer

    def _compile_structure(self, shape: StructureShape) -> Writer:
        # (open tag, close tag, writer) by member name; filled after registering the writer
        # so that recursive shapes find it in the cache.
        members: dict[str, tuple[str, str, Writer]] = {}
        shape_name = shape.name

        def write_structure(out: list[str], value: Any) -> None:
            # ``type(...) is dict`` first: the ABC check costs more, once per structure.
            if type(value) is not dict and not isinstance(value, Mapping):
                raise _type_error(f"a mapping for {shape_name}", value)
            key = ""
            try:
                for key, item in value.items():
                    if item is None:
                        continue
                    member = members.get(key)
                    if member is None:
                        raise ResultShapeError(f"not a member of {shape_name}")
                    out.append(member[0])
                    member[2](out, item)
                    out.append(member[1])
            except ResultShapeError as exc:
                exc.add_parent(str(key))
                raise

        self._writers[shape_name] = write_structure
        for member_name, member_shape in shape.members.items():
            tag = member_shape.serialization.get("name") or member_name
            members[member_name] = (f"<{tag}>", f"</{tag}>", self.writer(member_shape))
        return write_structure

    def _compile_list(self, shape: ListShape) -> Writer:
        item_writer = self.writer(shape.member)

        def write_list(out: list[str], value: Any) -> None:
            if type(value) is not list and (
                isinstance(value, str | bytes | Mapping) or not isinstance(value, Iterable)
            ):
                raise _type_error("a list", value)
            for index, item in enumerate(value):
                out.append("<item>")
                try:
                    if item is None:
                        raise ResultShapeError("list items must not be None")
                    item_writer(out, item)
                except ResultShapeError as exc:
                    exc.add_parent(f"[{index}]")
                    raise
                out.append("</item>")

        return write_list

    def _compile_map(self, shape: MapShape) -> Writer:
        key_writer = self.writer(shape.key)
        value_writer = self.writer(shape.value)
        key_tag = shape.key.serialization.get("name") or "key"
        value_tag = shape.value.serialization.get("name") or "value"
        key_open, key_close = f"<entry><{key_tag}>", f"</{key_tag}>"
        value_open, value_close = f"<{value_tag}>", f"</{value_tag}></entry>"

        def write_map(out: list[str], value: Any) -> None:
            if not isinstance(value, Mapping):
                raise _type_error("a mapping", value)
            key: Any = ""
            try:
                for key, item in value.items():
                    if item is None:
                        raise ResultShapeError("map values must not be None")
                    out.append(key_open)
                    key_writer(out, key)
                    out.append(key_close)
                    out.append(value_open)
                    value_writer(out, item)
                    out.append(value_close)
            except ResultShapeError as exc:
                exc.add_parent(f"[{key!r}]")
                raise

        return write_map
