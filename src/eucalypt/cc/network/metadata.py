"""The CC's metadata proxy: :mod:`eucalypt.net.metadata` (shared with the NC)."""

from eucalypt.net.metadata import (
    INSTANCE_ID_HEADER,
    INSTANCE_IP_HEADER,
    Lookup,
    MetadataProxy,
)

__all__ = ["INSTANCE_ID_HEADER", "INSTANCE_IP_HEADER", "Lookup", "MetadataProxy"]
