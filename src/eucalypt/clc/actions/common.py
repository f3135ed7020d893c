"""Helpers shared by the EC2 actions: tags, ownership, pagination."""

from __future__ import annotations

import base64
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, TypeVar

from sqlalchemy import Select, select
from sqlalchemy.orm import Session

from eucalypt.clc.actions.filters import Getter
from eucalypt.clc.ec2.errors import InvalidParameterValue, not_found
from eucalypt.clc.models import Tag

T = TypeVar("T")


#: Resource ids per tag query: well under SQLite's and PostgreSQL's bound-parameter limits.
TAG_QUERY_CHUNK = 900


def tags_for(
    session: Session, resource_ids: Iterable[str] | Select[Any]
) -> dict[str, list[dict[str, str]]]:
    """Tags of many resources: id -> [{"Key", "Value"}], keys in order.

    ``resource_ids`` is the ids, or a one-column SELECT of them: then it is one query
    however many resources there are (no bound parameter per id). Reads plain
    (resource_id, key, value) rows, not ORM objects: Describe calls this for every
    resource it lists, thousands at a time.
    """
    out: dict[str, list[dict[str, str]]] = defaultdict(list)
    columns = select(Tag.resource_id, Tag.key, Tag.value).order_by(Tag.key)
    if isinstance(resource_ids, Select):
        queries = [columns.where(Tag.resource_id.in_(resource_ids))]
    else:
        ids = list(dict.fromkeys(resource_ids))
        queries = [
            columns.where(Tag.resource_id.in_(ids[start : start + TAG_QUERY_CHUNK]))
            for start in range(0, len(ids), TAG_QUERY_CHUNK)
        ]
    for query in queries:
        for resource_id, key, value in session.execute(query):
            out[resource_id].append({"Key": key, "Value": value})
    return out


class TagGetters(Mapping[str, Getter]):
    """Filter getters that add ``tag:<key>``, ``tag-key`` and ``tag-value`` to fixed ones.

    Items must carry their tags under ``"Tags"`` (a list of Key/Value dicts).
    """

    def __init__(self, fixed: Mapping[str, Getter]) -> None:
        self.fixed = dict(fixed)
        self.fixed["tag-key"] = lambda item: [t["Key"] for t in item.get("Tags", [])]
        self.fixed["tag-value"] = lambda item: [t["Value"] for t in item.get("Tags", [])]

    def __getitem__(self, name: str) -> Getter:
        if name.startswith("tag:"):
            key = name[4:]
            return lambda item: [t["Value"] for t in item.get("Tags", []) if t["Key"] == key]
        return self.fixed[name]

    def get(self, name: str, default: Any = None) -> Any:
        try:
            return self[name]
        except KeyError:
            return default

    def __iter__(self):  # type: ignore[no-untyped-def]
        return iter([*self.fixed, "tag:<key>"])

    def __len__(self) -> int:
        return len(self.fixed) + 1


def only_requested(
    items: list[dict[str, Any]],
    wanted: Sequence[str] | None,
    field: str,
    code: str,
    message: str,
) -> list[dict[str, Any]]:
    """The items whose ``field`` is in ``wanted`` (all when none are named).

    Naming one that does not exist (or is not the caller's) is EC2's
    ``<code>`` error; ``message`` is formatted with ``{0}``, the first missing one.
    """
    if not wanted:
        return items
    have = {i[field] for i in items}
    missing = [w for w in wanted if w not in have]
    if missing:
        raise not_found(code, message.format(missing[0]))
    return [i for i in items if i[field] in wanted]


def paginate(
    items: Sequence[T], max_results: int | None, token: str | None, *, lo: int = 5, hi: int = 1000
) -> tuple[list[T], str | None]:
    """EC2 MaxResults/NextToken over an already ordered list."""
    start = 0
    if token:
        try:
            start = int(base64.urlsafe_b64decode(token.encode()).decode())
        except (ValueError, UnicodeDecodeError):
            raise InvalidParameterValue(f"Invalid NextToken: {token}") from None
    if max_results is None:
        return list(items[start:]), None
    if not lo <= max_results <= hi:
        raise InvalidParameterValue(f"MaxResults must be between {lo} and {hi}.")
    end = start + max_results
    page = list(items[start:end])
    next_token = base64.urlsafe_b64encode(str(end).encode()).decode() if end < len(items) else None
    return page, next_token
