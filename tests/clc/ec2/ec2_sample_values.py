"""Generate a value for every member of a botocore shape (for whole-model round trips).

Values are deterministic and deliberately awkward: strings carry XML/URL metacharacters,
non-ASCII text and CR/LF; integers are negative and 64-bit; both booleans appear; lists
have two items. Recursion is cut at ``max_depth``; empty containers are never produced
(the EC2 request encoding cannot carry an empty list, so a round trip would drop it).
"""

from __future__ import annotations

import itertools
from datetime import UTC, datetime
from typing import Any

from botocore.model import ListShape, MapShape, Shape, StructureShape

AWKWARD_STRING = "v <&> \"q\" 'a' é ✓ \r\n\ttab ]]> %20+"


class SampleValues:
    """Builds sample values; ``for_output`` picks millisecond timestamps (EC2 precision)."""

    def __init__(self, *, for_output: bool, max_depth: int = 5) -> None:
        self.for_output = for_output
        self.max_depth = max_depth
        self._counter = itertools.count()

    def value(self, shape: Shape, depth: int = 0) -> Any:
        """A value for ``shape``, or ``None`` when the depth limit leaves nothing to put."""
        n = next(self._counter)
        type_name = shape.type_name
        if type_name == "structure":
            assert isinstance(shape, StructureShape)
            if depth >= self.max_depth:
                return None
            members = {}
            for name, member in shape.members.items():
                value = self.value(member, depth + 1)
                if value is not None:
                    members[name] = value
            return members or None
        if type_name == "list":
            assert isinstance(shape, ListShape)
            if depth >= self.max_depth:
                return None
            items = [self.value(shape.member, depth + 1) for _ in range(2)]
            return items if all(item is not None for item in items) else None
        if type_name == "map":
            assert isinstance(shape, MapShape)
            value = self.value(shape.value, depth + 1)
            return None if value is None else {f"k{n}": value}
        if type_name == "string":
            if "enum" in shape.metadata:
                enum = shape.metadata["enum"]
                return enum[n % len(enum)]
            return f"{shape.name}-{n} {AWKWARD_STRING}" if n % 3 == 0 else f"{shape.name}-{n}"
        if type_name == "integer":
            return -n if n % 2 else n
        if type_name == "long":
            return 2**40 + n
        if type_name == "boolean":
            return n % 2 == 0
        if type_name in ("float", "double"):
            return n + 0.25
        if type_name == "timestamp":
            micro = 123_000 if self.for_output else 123_456 * (n % 2)
            return datetime(2026, 11, 30, 1, 2, n % 60, micro, tzinfo=UTC)
        if type_name == "blob":
            return bytes([0, 255, n % 256]) + b"blob"
        raise AssertionError(f"unexpected shape type {type_name}")
