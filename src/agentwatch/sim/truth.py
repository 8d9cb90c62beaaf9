"""Ground truth of a simulation: one record per scenario instance.

The file written beside the events (``<out stem>.truth.jsonl``) holds one JSON object per
line, in ``scenario_id`` order, with exactly these keys::

    {"scenario_id": "s0001", "scenario": "credential_theft", "attack": true,
     "agent_id": "...", "agent_type": "...", "start": "<RFC 3339 UTC>", "end": "<RFC 3339 UTC>",
     "event_ids": ["..."], "session_ids": ["..."], "description": "human-readable"}

``start``/``end`` bound the scenario's activity (every listed event lies within them);
``event_ids`` are the events the scenario emitted or altered, in emission order.

>>> from datetime import UTC, datetime
>>> t = datetime(2026, 1, 5, 9, 30, tzinfo=UTC)
>>> record = TruthRecord("s0001", "agent_silent", True, "a-01", "support-bot", t, t, [], [], "x")
>>> encode_truth(record)[:60]
b'{"scenario_id":"s0001","scenario":"agent_silent","attack":tr'
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta
from pathlib import Path

import msgspec

from agentwatch.schemas.events import Event

__all__ = ["Instance", "TruthRecord", "encode_truth", "read_truth", "truth_path", "write_truth"]

_EPOCH_MS = timedelta(milliseconds=1)


class TruthRecord(msgspec.Struct, frozen=True):
    """One scenario instance as written to the truth file (field order is the format)."""

    scenario_id: str
    scenario: str
    attack: bool
    agent_id: str
    agent_type: str
    start: datetime
    end: datetime
    event_ids: list[str]
    session_ids: list[str]
    description: str


_encoder = msgspec.json.Encoder()
_decoder = msgspec.json.Decoder(TruthRecord)


def encode_truth(record: TruthRecord) -> bytes:
    return _encoder.encode(record)


def write_truth(path: Path, records: Iterable[TruthRecord]) -> int:
    """Write ``records`` as JSON lines; returns how many."""
    n = 0
    with open(path, "wb") as fh:
        for record in records:
            fh.write(_encoder.encode(record) + b"\n")
            n += 1
    return n


def read_truth(path: Path) -> list[TruthRecord]:
    """The records of a truth file (blank lines skipped)."""
    with open(path, "rb") as fh:
        return [_decoder.decode(line) for line in fh if line.strip()]


def truth_path(out: Path) -> Path:
    """Default truth file beside an events file: ``events.jsonl.gz`` → ``events.truth.jsonl``."""
    name = out.name
    for suffix in (".gz", ".jsonl", ".json", ".ndjson"):
        name = name.removesuffix(suffix)
    return out.with_name(f"{name}.truth.jsonl")


class Instance:
    """A scenario instance being simulated: it records the events it emits or alters.

    ``window`` (start, end in epoch ms) is the instance's fixed activity interval, if it has
    one (silence, resource abuse, a rate peak, a rollout); otherwise the interval is that of
    its events. Instances that need events and emitted none are left out of the truth.
    """

    __slots__ = (
        "_ids",
        "agent_id",
        "agent_type",
        "attack",
        "description",
        "event_ids",
        "first_ms",
        "last_ms",
        "order",
        "requires_events",
        "scenario",
        "session_ids",
        "window",
    )

    def __init__(
        self,
        scenario: str,
        attack: bool,
        agent_id: str,
        agent_type: str,
        description: str,
        *,
        order: int,
        window: tuple[int, int] | None = None,
        requires_events: bool = True,
    ) -> None:
        self.scenario = scenario
        self.attack = attack
        self.agent_id = agent_id
        self.agent_type = agent_type
        self.description = description
        self.order = order
        self.window = window
        self.requires_events = requires_events
        self.event_ids: list[str] = []
        self.session_ids: list[str] = []
        self.first_ms: int | None = None
        self.last_ms: int | None = None
        self._ids: set[str] = set()

    def record(self, ms: int, event: Event) -> None:
        """Note an event of this instance, emitted at ``ms`` (duplicates are ignored)."""
        if event.event_id in self._ids:
            return
        self._ids.add(event.event_id)
        self.event_ids.append(event.event_id)
        session = event.session_id
        if session is not None and session not in self.session_ids:
            self.session_ids.append(session)
        if self.first_ms is None or ms < self.first_ms:
            self.first_ms = ms
        if self.last_ms is None or ms > self.last_ms:
            self.last_ms = ms

    def add_session(self, session_id: str | None) -> None:
        if session_id is not None and session_id not in self.session_ids:
            self.session_ids.append(session_id)

    def bounds(self, end_ms: int) -> tuple[int, int] | None:
        """(start, end) in epoch ms, the window clipped to ``end_ms`` and widened to the
        events; ``None`` if the instance has neither."""
        lo: int | None = None
        hi: int | None = None
        if self.window is not None:
            lo, hi = self.window[0], min(self.window[1], end_ms)
        if self.first_ms is not None and self.last_ms is not None:
            lo = self.first_ms if lo is None else min(lo, self.first_ms)
            hi = self.last_ms if hi is None else max(hi, self.last_ms)
        if lo is None or hi is None:
            return None
        return lo, max(lo, hi)

    def happened(self, end_ms: int) -> bool:
        """Whether the instance belongs in the truth of a run that ended at ``end_ms``."""
        if self.requires_events:
            return bool(self.event_ids)
        return self.window is not None and self.window[0] <= end_ms

    def to_record(self, scenario_id: str, epoch: datetime, end_ms: int) -> TruthRecord:
        bounds = self.bounds(end_ms)
        assert bounds is not None
        return TruthRecord(
            scenario_id=scenario_id,
            scenario=self.scenario,
            attack=self.attack,
            agent_id=self.agent_id,
            agent_type=self.agent_type,
            start=epoch + bounds[0] * _EPOCH_MS,
            end=epoch + bounds[1] * _EPOCH_MS,
            event_ids=list(self.event_ids),
            session_ids=list(self.session_ids),
            description=self.description,
        )
