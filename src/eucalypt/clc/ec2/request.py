"""Decoding EC2 Query parameters into operation input dicts, driven by botocore shapes.

The EC2 Query encoding (the inverse of ``botocore.serialize.EC2Serializer``):

* a structure member is addressed by its *wire name*: the member's ``queryName`` if the
  model gives one, else its ``locationName`` with the first letter upper-cased, else the
  member name. Nested structures join wire names with dots (``Placement.AvailabilityZone``);
* a list is always flattened with 1-based indexes straight after the member's wire name,
  whatever the list's own member ``locationName`` (``InstanceId.1``, ``Filter.1.Value.2``).
  Indexes may have gaps; items are ordered by index. A blank value for the list itself
  (``InstanceId=``) is the empty list, as the generic Query serializer sends it;
* maps (the EC2 model has none today) use ``Name.N.key``/``Name.N.value`` (or the names the
  key/value shapes give) under ``Name.entry.N`` unless flattened;
* scalars: integer/long as decimal integers (range-checked to 32/64 bits), booleans as
  ``true``/``false`` (any case), timestamps as ISO 8601 (a missing zone means UTC) or epoch
  seconds, blobs as base64 (decoded to ``bytes``; embedded whitespace tolerated),
  float/double as decimal or ``Infinity``/``-Infinity``/``NaN``, strings verbatim.

Errors are :class:`Ec2Error` subclasses naming the parameter by its wire name:
``UnknownParameter`` (name not in the model), ``InvalidParameterValue`` (value fails its
type, a parameter given twice, a list or structure given a plain value),
``MissingParameter`` (a required member absent, at any depth).
"""

from __future__ import annotations

import base64
import binascii
import itertools
import math
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from botocore.model import ListShape, MapShape, Shape, StructureShape

from eucalypt.clc.ec2.errors import InvalidParameterValue, MissingParameter, UnknownParameter

__all__ = ["RequestParser", "wire_name"]

_INT_RE = re.compile(r"[+-]?[0-9]+")
_FLOAT_RE = re.compile(r"[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")
_FLOAT_SPECIAL = {"infinity": math.inf, "-infinity": -math.inf, "nan": math.nan}
_EPOCH_RE = re.compile(r"[0-9]+(?:\.[0-9]+)?")
_INDEX_RE = re.compile(r"[0-9]+")
_INT_LIMITS = {"integer": 2**31, "long": 2**63}


def wire_name(member_shape: Shape, member_name: str) -> str:
    """The EC2-protocol request name of a structure member (see the module docstring)."""
    serialization = member_shape.serialization
    query_name = serialization.get("queryName")
    if query_name:
        return str(query_name)
    location_name = serialization.get("name")
    if location_name:
        return str(location_name[0].upper() + location_name[1:])
    return member_name


@dataclass(slots=True)
class _Node:
    """One dotted path segment of the request: its own value and its sub-parameters."""

    value: str | None = None
    children: dict[str, _Node] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class _StructPlan:
    """A structure's members by wire name, and its required members."""

    by_wire: dict[str, tuple[str, Shape]]
    required: tuple[tuple[str, str], ...]  # (member name, wire name)


def _build_tree(params: Iterable[tuple[str, str]]) -> _Node:
    root = _Node()
    for name, value in params:
        node = root
        for part in name.split("."):
            if not part:
                raise UnknownParameter(f"The parameter {name} is not recognized")
            child = node.children.get(part)
            if child is None:
                child = node.children[part] = _Node()
            node = child
        if node.value is not None:
            raise InvalidParameterValue(f"The parameter {name} was given more than once")
        node.value = value
    return root


def _join(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name


def _first_param(node: _Node, path: str) -> str:
    """The wire name of some parameter at or below ``node`` (for error messages)."""
    while node.value is None and node.children:
        key, node = next(iter(node.children.items()))
        path = _join(path, key)
    return path


class RequestParser:
    """Decodes EC2 Query parameters for operations of one service model.

    Stateless apart from a cache of wire-name tables keyed by shape name (so use one
    parser per service model); safe to share between requests.
    """

    def __init__(self) -> None:
        self._plans: dict[str, _StructPlan] = {}

    def parse(
        self, shape: StructureShape | None, params: Iterable[tuple[str, str]]
    ) -> dict[str, Any]:
        """The input dict for ``params`` under the operation input ``shape``.

        ``params`` are the operation's own parameters (no Action/Version/auth params).
        An operation without an input shape accepts no parameters.
        """
        root = _build_tree(params)
        if shape is None:
            if root.children:
                raise UnknownParameter(f"The parameter {_first_param(root, '')} is not recognized")
            return {}
        return self._structure(root, shape, "")

    # --- shapes ---------------------------------------------------------------------------

    def _plan(self, shape: StructureShape) -> _StructPlan:
        plan = self._plans.get(shape.name)
        if plan is None:
            by_wire: dict[str, tuple[str, Shape]] = {}
            for member_name, member_shape in shape.members.items():
                name = wire_name(member_shape, member_name)
                if name in by_wire:
                    raise ValueError(f"{shape.name}: two members are sent as {name!r}")
                by_wire[name] = (member_name, member_shape)
            wire_of = {member: name for name, (member, _) in by_wire.items()}
            required = tuple((m, wire_of[m]) for m in shape.required_members)
            plan = self._plans[shape.name] = _StructPlan(by_wire, required)
        return plan

    def _value(self, node: _Node, shape: Shape, path: str) -> Any:
        type_name = shape.type_name
        if type_name == "structure":
            assert isinstance(shape, StructureShape)
            return self._structure(node, shape, path)
        if type_name == "list":
            assert isinstance(shape, ListShape)
            return self._list(node, shape, path)
        if type_name == "map":
            assert isinstance(shape, MapShape)
            return self._map(node, shape, path)
        if node.children:
            key, child = next(iter(node.children.items()))
            unknown = _first_param(child, _join(path, key))
            raise UnknownParameter(f"The parameter {unknown} is not recognized")
        assert node.value is not None
        return _scalar(node.value, type_name, path)

    def _structure(self, node: _Node, shape: StructureShape, path: str) -> dict[str, Any]:
        if node.value is not None:
            raise InvalidParameterValue(
                f"The parameter {path} is a structure; give its members as {path}.<Name>"
            )
        plan = self._plan(shape)
        result: dict[str, Any] = {}
        for key, child in node.children.items():
            entry = plan.by_wire.get(key)
            child_path = _join(path, key)
            if entry is None:
                unknown = _first_param(child, child_path)
                raise UnknownParameter(f"The parameter {unknown} is not recognized")
            member_name, member_shape = entry
            result[member_name] = self._value(child, member_shape, child_path)
        for member_name, name in plan.required:
            if member_name not in result:
                missing = MissingParameter(
                    f"The request must contain the parameter {_join(path, name)}"
                )
                missing.parameter = _join(path, name)
                raise missing
        return result

    def _indexed(self, node: _Node, path: str) -> list[tuple[int, str, _Node]]:
        if node.value is not None:
            if node.value == "" and not node.children:
                return []
            raise InvalidParameterValue(
                f"The parameter {path} is a list; give its items as {path}.1, {path}.2, ..."
            )
        items: list[tuple[int, str, _Node]] = []
        for key, child in node.children.items():
            if _INDEX_RE.fullmatch(key) is None:
                unknown = _first_param(child, _join(path, key))
                raise UnknownParameter(f"The parameter {unknown} is not recognized")
            items.append((int(key), key, child))
        items.sort(key=lambda item: item[0])
        for (first, _, _), (second, key, _) in itertools.pairwise(items):
            if first == second:
                raise InvalidParameterValue(
                    f"The parameter {_join(path, key)} was given more than once"
                )
        return items

    def _list(self, node: _Node, shape: ListShape, path: str) -> list[Any]:
        member = shape.member
        return [
            self._value(child, member, _join(path, key))
            for _, key, child in self._indexed(node, path)
        ]

    def _map(self, node: _Node, shape: MapShape, path: str) -> dict[Any, Any]:
        flattened = bool(shape.serialization.get("flattened"))
        entries = node
        entries_path = path
        if not flattened:
            if node.value is not None:
                if node.value == "" and not node.children:
                    return {}
                raise InvalidParameterValue(f"The parameter {path} is a map")
            extra = [k for k in node.children if k != "entry"]
            if extra:
                raise UnknownParameter(f"The parameter {_join(path, extra[0])} is not recognized")
            entries = node.children.get("entry", _Node(value=""))
            entries_path = _join(path, "entry")
        key_name = wire_name(shape.key, "key")
        value_name = wire_name(shape.value, "value")
        result: dict[Any, Any] = {}
        for _, index, entry in self._indexed(entries, entries_path):
            entry_path = _join(entries_path, index)
            extra = [k for k in entry.children if k not in (key_name, value_name)]
            if extra or entry.value is not None:
                bad = _join(entry_path, extra[0]) if extra else entry_path
                raise UnknownParameter(f"The parameter {bad} is not recognized")
            key_node = entry.children.get(key_name)
            if key_node is None:
                raise MissingParameter(
                    f"The request must contain the parameter {_join(entry_path, key_name)}"
                )
            value_node = entry.children.get(value_name)
            key = self._value(key_node, shape.key, _join(entry_path, key_name))
            result[key] = (
                None
                if value_node is None
                else self._value(value_node, shape.value, _join(entry_path, value_name))
            )
        return result


def _invalid(value: str, path: str, expected: str) -> InvalidParameterValue:
    shown = value if len(value) <= 64 else value[:61] + "..."
    return InvalidParameterValue(
        f"Value ({shown}) for parameter {path} is invalid. Expected: {expected}."
    )


def _scalar(value: str, type_name: str, path: str) -> Any:
    if type_name in ("string", "character"):
        return value
    if type_name in ("integer", "long"):
        if _INT_RE.fullmatch(value) is None:
            raise _invalid(value, path, "an integer")
        number = int(value)
        limit = _INT_LIMITS[type_name]
        if not -limit <= number < limit:
            raise _invalid(value, path, f"a {type_name} in range")
        return number
    if type_name == "boolean":
        lowered = value.lower()
        if lowered == "true":
            return True
        if lowered == "false":
            return False
        raise _invalid(value, path, "'true' or 'false'")
    if type_name in ("float", "double"):
        special = _FLOAT_SPECIAL.get(value.lower())
        if special is not None:
            return special
        if _FLOAT_RE.fullmatch(value) is None:
            raise _invalid(value, path, "a number")
        return float(value)
    if type_name == "timestamp":
        return _timestamp(value, path)
    if type_name == "blob":
        try:
            return base64.b64decode("".join(value.split()), validate=True)
        except (binascii.Error, ValueError) as exc:
            raise _invalid(value, path, "base64-encoded data") from exc
    raise _invalid(value, path, f"a value of unsupported type {type_name}")


def _timestamp(value: str, path: str) -> datetime:
    try:
        if _EPOCH_RE.fullmatch(value):
            return datetime.fromtimestamp(float(value), UTC)
        parsed = datetime.fromisoformat(value)
    except (ValueError, OverflowError, OSError) as exc:
        raise _invalid(value, path, "an ISO 8601 timestamp") from exc
    if parsed.tzinfo is None:
        return parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC)
