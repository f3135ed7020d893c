"""The EC2 bundle format: manifest, encrypt/decrypt, split/join (a shared package).

A *bundle* is how an image travels to the cloud (the paper's Walrus section):
the image is tarred, gzipped, encrypted with a random AES-128-CBC key and cut
into parts; an XML manifest lists the parts with their SHA-1 digests, carries
the AES key and IV encrypted to the cloud's certificate and to the user's,
and is signed with the user's private key. The format is the one
``ec2-bundle-image`` and ``euca-bundle-image`` write.

- ``manifest.py``  the manifest: render (signed), parse (fields from the signed bytes only)
- ``crypto.py``    RSA (PKCS#1 v1.5) key wrapping and signatures, AES-CBC streams, cert checks
- ``bundle.py``    image -> parts + manifest, streaming
- ``unbundle.py``  parts -> image, streaming, with every digest checked
- ``errors.py``    why a bundle was refused (each with a wire ``code``)

Components use it on both sides: the CLI bundles and unbundles, Walrus
verifies and decrypts (``eucalypt.walrus.images``), the CLC reads manifests.
"""

from __future__ import annotations

#: Walrus serves decrypted images at ``/<IMAGE_ENDPOINT>/<bucket>/<manifest key>``
#: (component credentials only). ``_`` cannot start a bucket name, so the path
#: never collides with a user's bucket.
IMAGE_ENDPOINT = "_image"
#: The response header carrying the decrypted image's SHA-256.
SHA256_HEADER = "x-eucalypt-image-sha256"
