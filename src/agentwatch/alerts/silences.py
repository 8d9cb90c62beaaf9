"""Silences: time-bounded label matchers with a creator and a reason.

An anomaly whose labels match every matcher of a silence that is active (``starts_at <=
now < ends_at``) is not notified. Expiring a silence sets its ``ends_at`` to now; an
expired silence matches nothing. Silences are stored in ClickHouse (``silences``) and
created through the dispatcher's API or the CLI.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from agentwatch.alerts.matchers import Matcher, parse_matcher

__all__ = ["Silence", "SilenceError", "Silencer", "new_silence"]

State = Literal["pending", "active", "expired"]
MAX_SILENCE_DAYS = 366


class SilenceError(ValueError):
    """A silence cannot be created as asked."""


@dataclass(frozen=True, slots=True)
class Silence:
    silence_id: str
    matchers: tuple[Matcher, ...]
    starts_at: datetime
    ends_at: datetime
    created_by: str
    comment: str
    created_at: datetime
    updated_at: datetime = field(default_factory=lambda: datetime.now(UTC))

    def state(self, now: datetime) -> State:
        if now >= self.ends_at:
            return "expired"
        if now < self.starts_at:
            return "pending"
        return "active"

    def active(self, now: datetime) -> bool:
        return self.starts_at <= now < self.ends_at

    def matches(self, labels: Mapping[str, str]) -> bool:
        return all(m.matches(labels) for m in self.matchers)

    def expired(self, now: datetime) -> Silence:
        """This silence ended at ``now`` (unchanged if it already ended)."""
        if self.ends_at <= now:
            return self
        starts = min(self.starts_at, now)
        return replace(self, starts_at=starts, ends_at=now, updated_at=now)

    def as_dict(self, now: datetime | None = None) -> dict[str, Any]:
        now = now or datetime.now(UTC)
        return {
            "id": self.silence_id,
            "matchers": [str(m) for m in self.matchers],
            "starts_at": self.starts_at.isoformat(),
            "ends_at": self.ends_at.isoformat(),
            "created_by": self.created_by,
            "comment": self.comment,
            "created_at": self.created_at.isoformat(),
            "state": self.state(now),
        }


def new_silence(
    matchers: Iterable[str | Matcher],
    *,
    created_by: str,
    comment: str,
    now: datetime,
    duration_s: float | None = None,
    starts_at: datetime | None = None,
    ends_at: datetime | None = None,
) -> Silence:
    """A validated silence. Needs a creator, a reason, an end in the future and at least
    one matcher that does not match every label set (no silence silences everything)."""
    parsed = tuple(m if isinstance(m, Matcher) else parse_matcher(m) for m in matchers)
    if not parsed:
        raise SilenceError("a silence needs at least one matcher")
    if all(m.matches_empty() for m in parsed):
        raise SilenceError(
            "a silence needs at least one matcher that does not match an empty label "
            "(it would silence every alert)"
        )
    if not created_by.strip():
        raise SilenceError("a silence needs its creator (created_by)")
    if not comment.strip():
        raise SilenceError("a silence needs a reason (comment)")
    start = _utc(starts_at) if starts_at else now
    if ends_at is None:
        if duration_s is None or duration_s <= 0:
            raise SilenceError("a silence needs a positive duration or an end time")
        end = start + timedelta(seconds=duration_s)
    else:
        end = _utc(ends_at)
    if end <= now or end <= start:
        raise SilenceError("a silence must end in the future and after it starts")
    if end - start > timedelta(days=MAX_SILENCE_DAYS):
        raise SilenceError(f"a silence may last at most {MAX_SILENCE_DAYS} days")
    return Silence(
        silence_id=uuid.uuid4().hex[:16],
        matchers=parsed,
        starts_at=start,
        ends_at=end,
        created_by=created_by.strip()[:200],
        comment=comment.strip()[:2000],
        created_at=now,
        updated_at=now,
    )


def _utc(dt: datetime) -> datetime:
    return dt.replace(tzinfo=UTC) if dt.tzinfo is None else dt.astimezone(UTC)


class Silencer:
    """The known silences; answers whether labels are silenced at a time."""

    def __init__(self, silences: Iterable[Silence] = ()) -> None:
        self._silences: dict[str, Silence] = {}
        for silence in silences:
            self.put(silence)

    def put(self, silence: Silence) -> None:
        """Add or replace (by id) a silence."""
        self._silences[silence.silence_id] = silence

    def get(self, silence_id: str) -> Silence | None:
        return self._silences.get(silence_id)

    def all(self) -> list[Silence]:
        return sorted(self._silences.values(), key=lambda s: s.created_at)

    def silenced_by(self, labels: Mapping[str, str], now: datetime) -> Silence | None:
        """The first active silence matching ``labels``, or ``None``."""
        for silence in self._silences.values():
            if silence.active(now) and silence.matches(labels):
                return silence
        return None

    def prune(self, now: datetime, keep: timedelta = timedelta(days=7)) -> None:
        """Forget silences that ended more than ``keep`` ago."""
        for sid in [s.silence_id for s in self._silences.values() if s.ends_at + keep < now]:
            del self._silences[sid]
