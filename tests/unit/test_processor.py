"""The worker's pure batch stage: decode, dead-letter, drop redeliveries, detect."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from agentwatch.config import DetectSettings
from agentwatch.models.base import REGISTRY, build_detectors
from agentwatch.models.engine import DetectionEngine
from agentwatch.schemas.decode import Limits
from agentwatch.schemas.events import Destination, Event, encode_event, encode_events
from agentwatch.streams.processor import BatchProcessor, InMessage, RecentIds

NOW = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)


def ev(i: int, agent: str = "a", host: str | None = None) -> Event:
    return Event(
        schema_version="1",
        event_id=f"{agent}-{i}",
        ts=NOW - timedelta(seconds=100 - i),
        agent_id=agent,
        type="network",
        destinations=[Destination(kind="host", value=host)] if host else None,
    )


def processor(dedup: int = 100) -> BatchProcessor:
    return BatchProcessor(Limits(max_age_s=86400), DetectionEngine(DetectSettings()), dedup)


def msg(value: bytes | None, key: str = "a", offset: int = 0) -> InMessage:
    return InMessage(value=value, key=key.encode(), topic="t", partition=0, offset=offset)


def test_valid_invalid_and_batches_split() -> None:
    out = processor().process(
        [
            msg(encode_event(ev(1))),
            msg(b"{broken", offset=1),
            msg(encode_events([ev(2), ev(3)]), offset=2),
            msg(None, offset=3),
        ],
        NOW,
    )
    assert [e.event_id for e in out.events] == ["a-1", "a-2", "a-3"]
    assert [(d.reject.reason, d.source.offset) for d in out.dead_letters] == [
        ("bad_json", 1),
        ("not_an_event", 3),
    ]


def test_redelivered_event_ids_dropped_and_counted() -> None:
    p = processor()
    first = p.process([msg(encode_events([ev(1), ev(2)]))], NOW)
    again = p.process([msg(encode_events([ev(2), ev(3)]))], NOW)
    assert len(first.events) == 2
    assert [e.event_id for e in again.events] == ["a-3"]
    assert again.duplicates == 1


def test_recent_ids_bounded() -> None:
    recent = RecentIds(2)
    assert not recent.seen_before("x")
    assert not recent.seen_before("y")
    assert not recent.seen_before("z")  # evicts x
    assert recent.seen_before("z")
    assert not recent.seen_before("x")
    assert not RecentIds(0).seen_before("x")
    assert not RecentIds(0).seen_before("x")


def test_registry_has_the_detector_and_rejects_unknown_names() -> None:
    build_detectors(DetectSettings())
    assert "new_destination" in REGISTRY
    with pytest.raises(ValueError, match="nope"):
        build_detectors(DetectSettings(), ["nope"])
