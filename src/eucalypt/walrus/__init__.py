"""Walrus: the S3-compatible object store (the paper's storage controller).

``app.create_app(config)`` builds the ASGI application (``serve(config)``
runs it on Walrus's own HTTP server). The request path, top to bottom:

- ``server.py``    HTTP/1.1: request heads (httptools), bodies read straight into buffers
- ``app.py``       request id, health check, auth, dispatch, S3 error envelope, access log
- ``http.py``      the parsed request (bucket/key from path or Host) and response types
- ``security.py``  ``eucalypt.auth`` → :class:`~security.Principal`; S3 ACLs (canned, grants)
- ``api/``         handlers, one module per resource family, and the dispatch table
- ``body.py``      request-body framing and verification; ``upload.py`` streams objects in
- ``services/``    metadata logic (buckets, objects, listing, multipart) and the janitor;
                   ``commit.py`` groups SQLite writes (one durable commit per group)
- ``models.py``    SQLAlchemy models (``migrations/`` for Alembic)
- ``storage.py``   the byte store behind a small protocol (:class:`~storage.FilesystemStore`)
- ``inline.py``    small objects' bytes, kept in the database with their metadata
- ``errors.py``, ``xml.py``  the S3 error hierarchy; XML rendering and defusedxml parsing

Durability. An object's bytes are a blob file, or for a body of at most
``inline.INLINE_MAX`` bytes an inline blob in the metadata database. A write
(PUT, COPY, CompleteMultipartUpload, DELETE, ...) is answered only once its
metadata transaction committed durably, by which time:

- a new blob *file* was written in ``tmp/``, renamed into place, and its
  bytes (``fdatasync``) and name (directory ``fsync``) are on disk; an inline
  blob was written in the same transaction as the metadata;
- the metadata commit is on disk: SQLite in WAL mode with
  ``synchronous=FULL`` (the WAL is fsynced at each commit; concurrent writes
  share one transaction and one fsync, ``services/commit.py``), or
  PostgreSQL (``synchronous_commit=on``).

Blob files that a change released (overwrite, delete) are deleted only after
that durable commit. Hence, after a kill -9 or a power loss, every answered
write survives, and nothing torn, partial or unreferenced becomes visible: an
object's row commits only after its bytes are complete and in place,
transactions are atomic, and readers open every blob of a version (or fetch
its inline bytes with the row) before sending a byte. Leftovers (temp files,
blobs whose metadata never committed) are removed at startup. Concurrent
writers never lock each other: the last complete write wins, each gets the
MD5 of what it stored, and a reader sees one whole version, never a mixture.
"""
