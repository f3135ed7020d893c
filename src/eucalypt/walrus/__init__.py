"""Walrus: the S3-compatible object store (the paper's storage controller).

``app.create_app(config)`` builds the ASGI application (``serve(config)``
runs it under uvicorn). The request path, top to bottom:

- ``app.py``       request id, health check, auth, dispatch, S3 error envelope, access log
- ``http.py``      the parsed request (bucket/key from path or Host) and response types
- ``security.py``  ``eucalypt.auth`` → :class:`~security.Principal`; S3 ACLs (canned, grants)
- ``api/``         handlers, one module per resource family, and the dispatch table
- ``body.py``      request-body framing and verification; ``upload.py`` streams objects in
- ``services/``    metadata logic (buckets, objects, listing, multipart) and the janitor
- ``models.py``    SQLAlchemy models (``migrations/`` for Alembic)
- ``storage.py``   the byte store behind a small protocol (:class:`~storage.FilesystemStore`)
- ``errors.py``, ``xml.py``  the S3 error hierarchy; XML rendering and defusedxml parsing

Durability: bytes are written to a temp file, fsynced and renamed before the
metadata that points at them commits; replaced blobs are deleted after the
commit; a crash leaves only garbage that startup sweeps away.
"""
