"""The signing-key cache and the X-Amz-Date fast path."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from eucalypt.auth import SigningKeyCache
from eucalypt.auth import canonical as c
from eucalypt.auth.clock import parse_amz_date


def test_cached_key_is_the_derived_key_for_each_scope() -> None:
    cache = SigningKeyCache(maxsize=2)
    scopes = [("s1", "20240131", "us-east-1", "s3"), ("s1", "20240201", "us-east-1", "s3"),
              ("s2", "20240131", "us-east-1", "s3"), ("s1", "20240131", "eu-west-1", "s3"),
              ("s1", "20240131", "us-east-1", "ec2")]
    for _ in range(2):  # second pass: evicted and recomputed entries alike
        for scope in scopes:
            assert cache.key(*scope) == c.signing_key(*scope)
    assert len({cache.key(*s) for s in scopes}) == len(scopes)


@pytest.mark.parametrize("text, want", [
    ("20240131T235959Z", datetime(2024, 1, 31, 23, 59, 59, tzinfo=UTC)),
    ("20240229T000000Z", datetime(2024, 2, 29, tzinfo=UTC)),
    ("20230229T000000Z", None),  # no such day
    ("20240131T246000Z", None),
    ("20240131 235959Z", None),
    ("2024013lT235959Z", None),
    ("20240131T235959", None),
    ("", None),
])
def test_parse_amz_date(text: str, want: datetime | None) -> None:
    assert parse_amz_date(text) == want
