"""Resource identifiers in EC2's form: a prefix and 17 hex digits."""

from __future__ import annotations

import secrets


def new_id(prefix: str) -> str:
    """``i-0123456789abcdef0`` style: ``prefix-`` + 17 lowercase hex digits."""
    return f"{prefix}-{secrets.token_hex(9)[:17]}"
