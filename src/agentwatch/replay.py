"""Replay: run the live detection engine offline over a JSONL file of events.

Exactly the worker's code path (:class:`~agentwatch.models.engine.DetectionEngine`),
in-process, in event-time order, with events of any age. The output format is fixed — one
JSON object per line::

    {"event_id", "agent_id", "session_id", "ts", "score", "severity", "detectors",
     "explanation"}

Without ``all_events`` only anomalies are written (the triggering event's id for window
anomalies); with it every input event gets a line whose score is the highest of its own
event-level score and of the tumbling window and session it belongs to.
"""

from __future__ import annotations

import gzip
import io
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import msgspec

from agentwatch.config import DetectSettings
from agentwatch.models.engine import DetectionEngine, EngineOutput, window_of
from agentwatch.schemas.anomaly import Anomaly, severity_for
from agentwatch.schemas.events import Event

_decoder = msgspec.json.Decoder(Event)
_encoder = msgspec.json.Encoder()


class ScoreLine(msgspec.Struct):
    event_id: str
    agent_id: str
    session_id: str | None
    ts: str
    score: float
    severity: str
    detectors: list[str]
    explanation: str


@dataclass
class ReplayReport:
    events: int = 0
    rejected: int = 0
    anomalies: int = 0
    lines_written: int = 0
    reject_samples: list[str] = field(default_factory=list)


def open_text(path: Path) -> IO[str]:
    if path.suffix == ".gz":
        return io.TextIOWrapper(gzip.open(path, "rb"), encoding="utf-8")
    return open(path, encoding="utf-8")


def read_events(
    path: Path, report: ReplayReport, progress: Callable[[int], None] | None = None
) -> list[Event]:
    """Every valid event of ``path``; invalid lines are counted (with a few samples)."""
    events: list[Event] = []
    with open_text(path) as fh:
        for number, line in enumerate(fh, 1):
            if progress is not None:
                progress(len(line))
            if not line.strip():
                continue
            try:
                events.append(_decoder.decode(line))
            except msgspec.DecodeError as exc:
                report.rejected += 1
                if len(report.reject_samples) < 5:
                    report.reject_samples.append(f"line {number}: {exc}")
    return events


@dataclass(slots=True)
class _EventRow:
    event: Event
    score: float
    detectors: tuple[str, ...]
    anomaly: Anomaly | None


def replay(
    events: list[Event],
    settings: DetectSettings,
    out: IO[str],
    *,
    all_events: bool = False,
    report: ReplayReport | None = None,
    progress: Callable[[int], None] | None = None,
    observe: Callable[[Event | None, EngineOutput], None] | None = None,
) -> ReplayReport:
    """Score ``events`` in event-time order and write score lines to ``out``.

    ``observe`` (for evaluation tools) is called with every event and the engine's output
    for it, then once with ``None`` and the output of the final flush.
    """
    report = report or ReplayReport()
    engine = DetectionEngine(settings)
    ordered = sorted(events, key=lambda e: e.ts)  # stable: file order among equal times
    rows: list[_EventRow] = []
    windows: dict[tuple[str, str, str], tuple[float, tuple[str, ...], Anomaly | None]] = {}
    anomalies: list[Anomaly] = []

    def collect(result: EngineOutput, row: _EventRow | None) -> None:
        for anomaly in result.anomalies:
            anomalies.append(anomaly)
            trigger = anomaly.event_ids[-1] if anomaly.event_ids else None
            if row is not None and trigger == row.event.event_id:
                row.anomaly = anomaly
        window_anomalies = {
            a.labels.get("window", ""): a for a in result.anomalies if "window" in a.labels
        }
        for w in result.windows:
            label = f"{w.kind} {w.start.isoformat()}–{w.end.isoformat()}"
            found = window_anomalies.get(label)
            windows[(w.agent_id, w.kind, w.key)] = (w.score, w.detectors, found)

    for event in ordered:
        result = engine.process(event)
        row = _EventRow(event, result.score, result.detectors, None)
        rows.append(row)
        collect(result, row)
        if observe is not None:
            observe(event, result)
        if progress is not None:
            progress(1)
    flushed = engine.flush()
    collect(flushed, None)
    if observe is not None:
        observe(None, flushed)
    report.events = len(ordered)
    report.anomalies = len(anomalies)
    if all_events:
        for row in rows:
            report.lines_written += _write(out, _all_line(row, windows, settings))
    else:
        by_id = {row.event.event_id: row.event for row in rows}
        for anomaly in sorted(anomalies, key=lambda a: a.ts):
            report.lines_written += _write(out, _anomaly_line(anomaly, by_id))
    return report


def _write(out: IO[str], line: ScoreLine) -> int:
    out.write(_encoder.encode(line).decode())
    out.write("\n")
    return 1


def _iso(event: Event) -> str:
    return event.ts.isoformat().replace("+00:00", "Z")


def _all_line(
    row: _EventRow,
    windows: dict[tuple[str, str, str], tuple[float, tuple[str, ...], Anomaly | None]],
    settings: DetectSettings,
) -> ScoreLine:
    event = row.event
    score, detectors = row.score, list(row.detectors)
    explanation = row.anomaly.explanation if row.anomaly else ""
    keys: list[tuple[str, str, str]] = [
        (event.agent_id, "window", window_of(event.ts, settings.window_s).isoformat())
    ]
    if event.session_id:
        keys.append((event.agent_id, "session", event.session_id))
    for key in keys:
        found = windows.get(key)
        if found is None:
            continue
        w_score, w_detectors, w_anomaly = found
        detectors += [d for d in w_detectors if d not in detectors]
        if w_score > score:
            score = w_score
            if w_anomaly is not None:
                explanation = w_anomaly.explanation
    return ScoreLine(
        event_id=event.event_id,
        agent_id=event.agent_id,
        session_id=event.session_id,
        ts=_iso(event),
        score=score,
        severity=severity_for(score),
        detectors=detectors,
        explanation=explanation,
    )


def _anomaly_line(anomaly: Anomaly, by_id: dict[str, Event]) -> ScoreLine:
    trigger = next((by_id[e] for e in reversed(anomaly.event_ids) if e in by_id), None)
    return ScoreLine(
        event_id=trigger.event_id if trigger else (anomaly.event_ids or [""])[-1],
        agent_id=anomaly.agent_id,
        session_id=trigger.session_id if trigger else anomaly.session_id,
        ts=_iso(trigger) if trigger else anomaly.ts.isoformat().replace("+00:00", "Z"),
        score=anomaly.score,
        severity=anomaly.severity,
        detectors=list(anomaly.detectors),
        explanation=anomaly.explanation,
    )


def iter_score_lines(path: Path) -> Iterator[dict[str, Any]]:
    """Read a scores file back (for evaluation tools)."""
    with open_text(path) as fh:
        for line in fh:
            if line.strip():
                yield msgspec.json.decode(line)
