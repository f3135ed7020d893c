"""Walrus as the image service: verify, decrypt and cache bundled images.

The paper: "Walrus is entrusted with the task of verifying and decrypting
images that have been uploaded by users. When a node controller (NC)
requests an image ... it sends an image download request that is
authenticated using an internal set of credentials. Then, images are
verified and decrypted, and finally transferred. ... Walrus maintains a
cache of images that have already been decrypted. Cache invalidation is
done when an image manifest is overwritten, or periodically using a simple
least recently used scheme."

- ``api.py``      the internal endpoint ``/_image/<bucket>/<manifest key>`` (GET/HEAD/POST)
- ``service.py``  manifest -> signature -> parts -> cache hit, or decrypt under the lock
- ``cache.py``    decrypted images on disk: version tokens, flock, LRU under a size cap
- ``signers.py``  the owner's certificates on record per manifest (given by the CLC)
- ``errors.py``   bundle refusals as S3 error envelopes

It is wired into the S3 dispatch by one line in ``walrus/api/__init__.py``
(``route``): requests whose "bucket" is ``_image`` (never a valid bucket
name) go to :func:`api.handle`. The bundle format itself is ``eucalypt.bundle``.
"""
