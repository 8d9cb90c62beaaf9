"""Identifiers and timestamps for events.

Event ids are ULIDs: 26 characters of Crockford base32 holding a 48-bit Unix time in
milliseconds followed by 80 random bits. They sort by creation time (to the millisecond),
are unique without coordination, and are valid ``event_id`` and ``session_id`` values of
schema v1. Timestamps are timezone-aware UTC datetimes truncated to the millisecond.
"""

from __future__ import annotations

import os
import time
from datetime import UTC, datetime, timedelta

__all__ = [
    "new_id",
    "new_span_id",
    "new_trace_id",
    "now_ms",
    "ulid_at",
    "ulid_time_ms",
    "utc_from_ms",
]

_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
_FROM_CROCKFORD = {c: i for i, c in enumerate(_CROCKFORD)}
# Two base32 characters per 10 bits: the 80 random bits are 8 lookups.
_PAIRS = tuple(_CROCKFORD[i >> 5] + _CROCKFORD[i & 31] for i in range(1024))
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MAX_MS = 2**48 - 1
# (ms, its 10-character time prefix): replaced as one tuple, so threads never see a mix.
_last_prefix: tuple[int, str] = (-1, "")


def now_ms() -> int:
    """Milliseconds since the Unix epoch, from the wall clock."""
    return time.time_ns() // 1_000_000


def utc_from_ms(ms: int) -> datetime:
    """The UTC datetime of a Unix time in milliseconds.

    Parameters
    ----------
    ms : int
        Milliseconds since the Unix epoch.

    Returns
    -------
    datetime
        A timezone-aware datetime in UTC with millisecond precision.
    """
    return _EPOCH + timedelta(milliseconds=ms)


def ulid_at(ms: int) -> str:
    """A ULID for the given Unix time in milliseconds (80 fresh random bits).

    Parameters
    ----------
    ms : int
        Milliseconds since the Unix epoch, ``0 <= ms < 2**48``.

    Returns
    -------
    str
        26 characters of Crockford base32.
    """
    global _last_prefix
    cached_ms, prefix = _last_prefix
    if ms != cached_ms:
        if not 0 <= ms <= _MAX_MS:
            raise ValueError(f"ULID time out of range: {ms}")
        prefix = "".join(_CROCKFORD[(ms >> shift) & 31] for shift in range(45, -1, -5))
        _last_prefix = (ms, prefix)
    r = int.from_bytes(os.urandom(10), "big")
    pairs = _PAIRS
    return (
        prefix
        + pairs[r >> 70]
        + pairs[(r >> 60) & 1023]
        + pairs[(r >> 50) & 1023]
        + pairs[(r >> 40) & 1023]
        + pairs[(r >> 30) & 1023]
        + pairs[(r >> 20) & 1023]
        + pairs[(r >> 10) & 1023]
        + pairs[r & 1023]
    )


def new_id() -> str:
    """A new time-ordered unique id (a ULID for the current time)."""
    return ulid_at(now_ms())


def ulid_time_ms(ulid: str) -> int:
    """The Unix time in milliseconds encoded in the first 10 characters of a ULID.

    Parameters
    ----------
    ulid : str
        A ULID as returned by :func:`new_id` or :func:`ulid_at`.

    Returns
    -------
    int
        Milliseconds since the Unix epoch.
    """
    value = 0
    for char in ulid[:10].upper():
        value = value * 32 + _FROM_CROCKFORD[char]
    return value


def new_trace_id() -> str:
    """A random W3C trace id (32 lowercase hex digits)."""
    return os.urandom(16).hex()


def new_span_id() -> str:
    """A random W3C span id (16 lowercase hex digits)."""
    return os.urandom(8).hex()
