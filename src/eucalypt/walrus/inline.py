"""Small objects' bytes, kept in the metadata database beside their metadata.

A PutObject or CopyObject body of at most ``INLINE_MAX`` bytes does not
become a file: its bytes go into ``walrus_inline_blobs`` in the same
transaction as the object's row. Bytes and metadata thus reach the disk
together, in the one WAL fsync of that (group) commit, instead of a file
fdatasync plus a directory fsync before the metadata commit's own. A GET
opens no file either. The price is that the bytes are written twice (WAL,
then database file at checkpoint) by the one committing thread, which for
large bodies costs more than a file: 128 KiB keeps small objects cheap and
1 MiB ones on files.

An inline blob's id (``inline:<hex>``) stands in the object's segments like
a file blob's id. It is written, replaced and deleted only by the
transactions that change the object's row, so an inline blob never dangles
and is never orphaned. Multipart parts are always files.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from typing import cast

from sqlalchemy import BindParameter, Connection, Table, bindparam, delete, insert, select

from eucalypt.walrus.models import InlineBlob

INLINE_MAX = 128 << 10
PREFIX = "inline:"

_TABLE = cast(Table, InlineBlob.__table__)
_INSERT = insert(_TABLE)
_IDS: BindParameter[str] = bindparam("ids", expanding=True)
_FETCH = select(_TABLE.c.blob_id, _TABLE.c.data).where(_TABLE.c.blob_id.in_(_IDS))
# An inline object has exactly one segment: no expanding IN to render per call.
_FETCH_ONE = select(_TABLE.c.data).where(_TABLE.c.blob_id == bindparam("id"))
_DELETE = delete(_TABLE).where(_TABLE.c.blob_id.in_(_IDS))


def new_id() -> str:
    return PREFIX + uuid.uuid4().hex


def is_inline(blob_id: str) -> bool:
    return blob_id.startswith(PREFIX)


def file_ids(blob_ids: Iterable[str]) -> list[str]:
    """The ids among ``blob_ids`` that name files in the blob store."""
    return [b for b in blob_ids if not is_inline(b)]


class BytesReader:
    """An inline blob as a :class:`~eucalypt.walrus.storage.BlobReader`."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.size = len(data)

    def read_at(self, offset: int, size: int) -> bytes:
        return self.data[offset:offset + size]

    def close(self) -> None:
        pass


class _NotFetched:
    """Stands for an inline blob that was not read (HEAD); reading it is a bug."""

    size = 0

    def read_at(self, offset: int, size: int) -> bytes:
        raise RuntimeError("this inline blob was not fetched")

    def close(self) -> None:
        pass


NOT_FETCHED = _NotFetched()


def store(conn: Connection, blob_id: str, data: bytes) -> None:
    conn.execute(_INSERT, {"blob_id": blob_id, "data": data})


def fetch(conn: Connection, blob_ids: list[str]) -> dict[str, bytes]:
    """The bytes of the inline blobs among ``blob_ids`` that still exist."""
    wanted = [b for b in blob_ids if is_inline(b)]
    if not wanted:
        return {}
    if len(wanted) == 1:
        data = conn.execute(_FETCH_ONE, {"id": wanted[0]}).scalar_one_or_none()
        return {} if data is None else {wanted[0]: data}
    return {row.blob_id: row.data for row in conn.execute(_FETCH, {"ids": wanted})}


def release(conn: Connection, blob_ids: list[str]) -> list[str]:
    """Delete the inline blobs among ``blob_ids`` (in the caller's transaction).

    Returns the others: file blobs, for the caller to delete once it committed.
    """
    wanted = [b for b in blob_ids if is_inline(b)]
    if wanted:
        conn.execute(_DELETE, {"ids": wanted})
    return file_ids(blob_ids)
