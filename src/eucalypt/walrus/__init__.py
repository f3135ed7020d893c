"""Walrus: the S3-compatible object store (the paper's storage controller).

``create_app(config)`` builds the ASGI application; ``serve(config)`` runs it
under uvicorn. See ``app.py``.
"""
