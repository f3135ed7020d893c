"""Startup cleanup: temp files of interrupted writes and blobs no row points to.

A crash (``kill -9``, power loss) can leave a temp file (bytes not yet
renamed) or a committed blob whose metadata never committed, or whose
replacement committed before the old blob was deleted. Neither is ever
visible through the API; this module reclaims their space.

The orphan sweep only considers blobs older than the process start, so it
never races a write of this process. It reads part references before object
references: completing an upload moves a blob from a part row to an object
row, so reading in that order sees every such blob at least once.
"""

from __future__ import annotations

import logging

from sqlalchemy import select

from eucalypt.db import Database
from eucalypt.walrus.inline import file_ids
from eucalypt.walrus.models import Object, Part
from eucalypt.walrus.storage import BlobStore

log = logging.getLogger("eucalypt.walrus.janitor")


def referenced_blobs(db: Database) -> set[str]:
    """The blob files that parts and objects refer to (inline blobs are not files)."""
    refs: set[str] = set()
    with db.sessions() as session:
        refs.update(session.scalars(select(Part.blob_id)).all())
        for segments in session.scalars(select(Object.segments).execution_options(
                yield_per=2000)):
            refs.update(file_ids(seg[0] for seg in segments))
    return refs


def sweep_orphans(db: Database, store: BlobStore, started_at: float) -> int:
    """Delete committed blobs older than ``started_at`` that nothing references."""
    refs = referenced_blobs(db)
    removed = 0
    for blob_id in store.list_blobs(started_at):
        if blob_id not in refs:
            store.delete(blob_id)
            removed += 1
    if removed:
        log.info("removed %d orphaned blob(s)", removed)
    return removed
