"""Resource identifiers in EC2's form: a prefix and 17 hex digits."""

from __future__ import annotations

import re
import secrets
from collections.abc import Iterable

from eucalypt.clc.ec2.errors import InvalidParameterValue

#: Image ids: Eucalyptus's emi/eki/eri and EC2's ami/aki/ari.
IMAGE_PREFIXES = ("emi", "eki", "eri", "ami", "aki", "ari")

_HEX_TAIL = re.compile(r"(?:[0-9a-f]{8}|[0-9a-f]{17})", re.IGNORECASE)


def new_id(prefix: str) -> str:
    """``i-0123456789abcdef0`` style: ``prefix-`` + 17 lowercase hex digits."""
    return f"{prefix}-{secrets.token_hex(9)[:17]}"


def well_formed(resource_id: str, prefixes: Iterable[str]) -> bool:
    """Whether ``resource_id`` is ``<prefix>-`` + 8 or 17 hex digits for one of ``prefixes``.

    EC2 answers ``*.Malformed`` for ids that are not of this shape and ``*.NotFound`` for
    well-formed ids that name nothing (the 8-digit form is the pre-2016 one).
    """
    prefix, sep, tail = resource_id.partition("-")
    return bool(sep) and prefix in prefixes and _HEX_TAIL.fullmatch(tail) is not None


def check_ids(ids: Iterable[str], prefixes: Iterable[str], code: str) -> None:
    """Raise EC2's ``code`` (an ``*.Malformed``) for the first id not :func:`well_formed`."""
    allowed = tuple(prefixes)
    for resource_id in ids:
        if not well_formed(resource_id, allowed):
            raise InvalidParameterValue(
                f'Invalid id: "{resource_id}" (expecting "{allowed[0]}-...")', code=code
            )
