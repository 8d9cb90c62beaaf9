"""HMAC-SHA256 signatures of generic webhook bodies, timestamped against replay.

The header (``X-Agentwatch-Signature`` by default) is ``t=<unix seconds>,v1=<hex>``, where
``<hex>`` is HMAC-SHA256 with the shared secret over ``"<t>." + body``. A receiver
recomputes it over the raw body, compares in constant time and rejects a ``t`` older than
its tolerance (five minutes by default), so a captured request cannot be replayed later.

>>> header = sign(b"s3cret", b'{"a":1}', 1700000000)
>>> header.startswith("t=1700000000,v1=")
True
>>> verify(b"s3cret", header, b'{"a":1}', now=1700000010)
True
>>> verify(b"s3cret", header, b'{"a":2}', now=1700000010)
False
>>> verify(b"s3cret", header, b'{"a":1}', now=1700001000)
False
"""

from __future__ import annotations

import hashlib
import hmac

__all__ = ["DEFAULT_TOLERANCE_S", "SIGNATURE_HEADER", "sign", "signature", "verify"]

SIGNATURE_HEADER = "X-Agentwatch-Signature"
DEFAULT_TOLERANCE_S = 300.0


def signature(secret: bytes, body: bytes, timestamp: int) -> str:
    """The hex HMAC-SHA256 of ``"<timestamp>." + body``."""
    return hmac.new(secret, f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()


def sign(secret: bytes, body: bytes, timestamp: int) -> str:
    """The signature header value for ``body`` sent at ``timestamp``."""
    return f"t={timestamp},v1={signature(secret, body, timestamp)}"


def verify(
    secret: bytes,
    header: str,
    body: bytes,
    *,
    now: float,
    tolerance_s: float = DEFAULT_TOLERANCE_S,
) -> bool:
    """Whether ``header`` signs ``body`` with ``secret`` within ``tolerance_s`` of ``now``."""
    fields: dict[str, list[str]] = {}
    for part in header.split(","):
        key, sep, value = part.strip().partition("=")
        if sep:
            fields.setdefault(key, []).append(value)
    try:
        timestamp = int(fields["t"][0])
    except (KeyError, ValueError):
        return False
    if abs(now - timestamp) > tolerance_s:
        return False
    expected = signature(secret, body, timestamp)
    return any(hmac.compare_digest(expected, v) for v in fields.get("v1", []))
