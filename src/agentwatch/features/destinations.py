"""Destination features: a canonical key per destination, pure code.

Canonical keys make "first seen" mean first seen *as a place*: ``https://API.example.com/v1/x``
and ``https://api.example.com/v2/y`` are the same host; e-mail addresses and hosts compare
case-insensitively; account numbers ignore spacing.

>>> from agentwatch.schemas.events import Destination
>>> destination_key(Destination(kind="url", value="https://API.Example.com:443/a?b=1"))
('url', 'https://api.example.com')
>>> destination_key(Destination(kind="account", value="de89 3704 0044 0532 0130 00"))
('account', 'DE89370400440532013000')
"""

from __future__ import annotations

from collections.abc import Callable
from urllib.parse import urlsplit

from agentwatch.schemas.events import Destination, Event


def _url(value: str) -> str:
    try:
        parts = urlsplit(value.strip())
    except ValueError:
        return value.strip().lower()
    host = (parts.hostname or "").lower()
    if not host:
        return value.strip().lower()
    port = parts.port if parts.port not in (None, 80, 443) else None
    scheme = (parts.scheme or "http").lower()
    return f"{scheme}://{host}" + (f":{port}" if port else "")


def _host(value: str) -> str:
    return value.strip().rstrip(".").lower()


def _account(value: str) -> str:
    return "".join(value.split()).upper()


_NORMALISERS: dict[str, Callable[[str], str]] = {
    "url": _url,
    "host": _host,
    "ip": _host,
    "email": lambda v: v.strip().lower(),
    "user": lambda v: v.strip().lower(),
    "account": _account,
    "path": lambda v: v.strip(),
}


def destination_key(destination: Destination) -> tuple[str, str]:
    """``(kind, canonical value)`` of one destination."""
    return destination.kind, _NORMALISERS[destination.kind](destination.value)


def destination_keys(event: Event) -> list[tuple[str, str]]:
    """Distinct canonical destination keys of an event, in order of appearance."""
    if not event.destinations:
        return []
    seen: dict[tuple[str, str], None] = {}
    for destination in event.destinations:
        seen.setdefault(destination_key(destination), None)
    return list(seen)
