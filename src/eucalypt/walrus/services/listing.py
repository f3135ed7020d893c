"""Listing keys: indexed range scans in UTF-8 byte order, delimiter-aware.

Every query is a range on the ``(bucket_id, key)`` unique index: a prefix
becomes ``prefix <= key < successor(prefix)``. With a delimiter, once a
common prefix is found the scan jumps to ``successor(common prefix)`` instead
of reading every key under it (at most one batch of rows is wasted per
prefix). Code-point order of Python strings equals UTF-8 byte order, which
is what SQLite's BINARY and PostgreSQL's "C" collation compare.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import Connection, select

from eucalypt.walrus.models import Object
from eucalypt.walrus.services import Context

MAX_CHAR = 0x10FFFF


def successor(prefix: str) -> str | None:
    """The least string greater than every string that starts with ``prefix``.

    ``None`` when there is none (the prefix is empty or all U+10FFFF).
    """
    chars = list(prefix)
    while chars:
        last = ord(chars.pop())
        if last < MAX_CHAR:
            nxt = last + 1
            if 0xD800 <= nxt <= 0xDFFF:  # surrogates are not encodable: skip them
                nxt = 0xE000
            return "".join(chars) + chr(nxt)
    return None


@dataclass(frozen=True)
class Entry:
    key: str
    etag: str
    size: int
    last_modified: datetime
    owner_id: str
    owner_name: str
    storage_class: str


@dataclass
class Page:
    contents: list[Entry] = field(default_factory=list)
    prefixes: list[str] = field(default_factory=list)
    truncated: bool = False
    # The last key or common prefix returned: where the next page starts (exclusive).
    last: str | None = None


@dataclass(frozen=True)
class ListQuery:
    prefix: str = ""
    delimiter: str = ""
    after: str | None = None  # exclusive start (marker / start-after / token)
    max_keys: int = 1000


def list_sync(conn: Connection, bucket_id: int, q: ListQuery) -> Page:
    page = Page()
    if q.max_keys <= 0:
        return page
    lower, inclusive = q.prefix, True
    if q.after is not None and q.after >= q.prefix:
        lower, inclusive = q.after, False
        if q.delimiter and q.after.startswith(q.prefix):
            # A marker that *is* a common prefix resumes after everything under it.
            cut = q.after.find(q.delimiter, len(q.prefix))
            if cut >= 0 and cut + len(q.delimiter) == len(q.after):
                nxt = successor(q.after)
                if nxt is None:
                    return page
                lower, inclusive = nxt, True
    upper = successor(q.prefix) if q.prefix else None
    batch = 200 if q.delimiter else min(1000, q.max_keys + 1)
    count = 0
    cols = (Object.key, Object.etag, Object.size, Object.last_modified, Object.owner_id,
            Object.owner_name, Object.storage_class)
    current_cp: str | None = None
    while True:
        stmt = select(*cols).where(Object.bucket_id == bucket_id)
        stmt = stmt.where(Object.key >= lower if inclusive else Object.key > lower)
        if upper is not None:
            stmt = stmt.where(Object.key < upper)
        rows = conn.execute(stmt.order_by(Object.key).limit(batch)).all()
        for row in rows:
            key: str = row[0]
            if current_cp is not None and key.startswith(current_cp):
                continue
            current_cp = None
            if q.delimiter:
                cut = key.find(q.delimiter, len(q.prefix))
                if cut >= 0:
                    cp = key[: cut + len(q.delimiter)]
                    if count == q.max_keys:
                        page.truncated = True
                        return page
                    page.prefixes.append(cp)
                    page.last, current_cp = cp, cp
                    count += 1
                    continue
            if count == q.max_keys:
                page.truncated = True
                return page
            page.contents.append(Entry(*row))
            page.last = key
            count += 1
        if len(rows) < batch:
            return page
        last_key: str = rows[-1][0]
        if current_cp is not None and last_key.startswith(current_cp):
            nxt = successor(current_cp)
            if nxt is None:
                return page
            lower, inclusive = nxt, True
        else:
            lower, inclusive = last_key, False


async def list_objects(ctx: Context, bucket_id: int, q: ListQuery) -> Page:
    return await ctx.read(lambda s: list_sync(s, bucket_id, q))
