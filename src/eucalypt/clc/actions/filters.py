"""EC2 ``Filter.N.Name`` / ``Filter.N.Value.M`` matching.

Each Describe action declares which filter names it supports and how to
read them from a result item; values match with EC2's ``*`` and ``?``
wildcards, any value of a filter may match, and every filter must match.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, TypeVar

from eucalypt.clc.ec2.errors import InvalidParameterValue

T = TypeVar("T")
Getter = Callable[[Any], Iterable[str]]


def _pattern(value: str) -> re.Pattern[str]:
    """EC2 wildcards: ``*`` any run, ``?`` one character, everything else literal.

    A backslash makes the next character literal (``\\*`` is a star, ``\\\\`` a backslash).
    """
    out: list[str] = []
    chars = iter(value)
    for ch in chars:
        if ch == "\\":
            out.append(re.escape(next(chars, "\\")))
        elif ch == "*":
            out.append(".*")
        elif ch == "?":
            out.append(".")
        else:
            out.append(re.escape(ch))
    return re.compile("".join(out), re.DOTALL)


def apply_filters(
    items: Iterable[T], filters: Sequence[Mapping[str, Any]] | None, getters: Mapping[str, Getter]
) -> list[T]:
    """The items that match every filter; unknown filter names are an error."""
    if not filters:
        return list(items)
    compiled = []
    for f in filters:
        name = f.get("Name", "")
        getter = getters.get(name)
        if getter is None:
            raise InvalidParameterValue(
                f"The filter '{name}' is invalid; supported: {', '.join(sorted(getters))}"
            )
        compiled.append((getter, [_pattern(v) for v in f.get("Values", [])]))

    def matches(item: T) -> bool:
        for getter, patterns in compiled:
            values = list(getter(item))
            if not any(p.fullmatch(v) for p in patterns for v in values):
                return False
        return True

    return [item for item in items if matches(item)]
