"""Time formats used by the signature schemes, and the skew rule.

All functions return timezone-aware UTC datetimes, or ``None`` when the text
does not parse; naive datetimes given to :func:`utc` are taken to be UTC.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime

AMZ_DATE_FORMAT = "%Y%m%dT%H%M%SZ"
ISO8601_FORMAT = "%Y-%m-%dT%H:%M:%SZ"


def utc(moment: datetime | None) -> datetime:
    """``moment`` as an aware UTC datetime; the current time when ``None``."""
    if moment is None:
        return datetime.now(UTC)
    if moment.tzinfo is None:
        return moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)


def format_amz_date(moment: datetime) -> str:
    """``YYYYMMDDTHHMMSSZ`` (SigV4's ``x-amz-date``)."""
    return utc(moment).strftime(AMZ_DATE_FORMAT)


def format_iso8601(moment: datetime) -> str:
    """``YYYY-MM-DDTHH:MM:SSZ`` (SigV2's ``Timestamp``)."""
    return utc(moment).strftime(ISO8601_FORMAT)


def parse_amz_date(text: str) -> datetime | None:
    """Parse ``YYYYMMDDTHHMMSSZ`` exactly.

    On every signed request, so the usual spelling skips ``strptime``; any
    other (which ``strptime`` may still accept, e.g. a lower-case ``z``) goes
    through it.
    """
    if len(text) != 16:
        return None
    digits = text[:8] + text[9:15]
    try:
        if text[8] == "T" and text[15] == "Z" and digits.isascii() and digits.isdigit():
            return datetime(
                int(digits[0:4]),
                int(digits[4:6]),
                int(digits[6:8]),
                int(digits[8:10]),
                int(digits[10:12]),
                int(digits[12:14]),
                tzinfo=UTC,
            )
        return datetime.strptime(text, AMZ_DATE_FORMAT).replace(tzinfo=UTC)
    except ValueError:
        return None


def parse_http_date(text: str) -> datetime | None:
    """Parse an HTTP ``Date`` (RFC 1123, RFC 850, asctime) or, leniently, an amz or ISO date."""
    text = text.strip()
    found = parse_amz_date(text)
    if found is not None:
        return found
    try:
        parsed = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return parse_iso8601(text)
    return utc(parsed)


def parse_iso8601(text: str) -> datetime | None:
    """Parse an ISO 8601 timestamp (``Z`` or offset, optional fraction); naive means UTC."""
    text = text.strip()
    if not text:
        return None
    try:
        return utc(datetime.fromisoformat(text))
    except ValueError:
        return None


def skewed(moment: datetime, now: datetime, max_skew: timedelta) -> bool:
    """True when ``moment`` is more than ``max_skew`` away from ``now`` in either direction."""
    return abs(moment - now) > max_skew
